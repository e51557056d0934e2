"""The QEMU command line is built from qemu-configs/, in the JSON form vfio-user-pci needs."""

from __future__ import annotations

import json
from pathlib import Path

from ocssd_vfu.guest.qemu_cmdline import GuestMachine, config_args


def test_vfio_user_device_is_json_with_nested_socket() -> None:
    args = config_args("vfio-user-pci", socket="/tmp/x/ocssd0.sock", id="ocssd0")
    assert args[0] == "-device"
    assert json.loads(args[1]) == {"driver": "vfio-user-pci", "id": "ocssd0",
                                   "socket": {"type": "unix", "path": "/tmp/x/ocssd0.sock"}}


def test_qemu_nvme_baseline_args() -> None:
    args = config_args("qemu-nvme", image="/data/disk.raw", id="qnvme0")
    assert args[0::2] == ["-blockdev", "-device"]
    blockdev, device = json.loads(args[1]), json.loads(args[3])
    assert blockdev["file"]["filename"] == "/data/disk.raw"
    assert device == {"driver": "nvme", "drive": "qnvme0-disk", "serial": "qnvme0", "id": "qnvme0"}


def _machine(**overrides: object) -> GuestMachine:
    base = dict(qemu=Path("/q"), kernel=Path("/k"), initrd=Path("/i"))
    return GuestMachine(**{**base, **overrides})  # type: ignore[arg-type]


def test_guest_ram_is_a_shared_memfd() -> None:
    argv = _machine(memory_mib=2048).argv()
    assert "memory-backend-memfd,id=mem0,size=2048M,share=on" in argv
    assert argv[argv.index("-machine") + 1] == "q35,memory-backend=mem0"


def test_reboots_only_when_allowed() -> None:
    assert "-no-reboot" in _machine().argv()
    assert "-no-reboot" not in _machine(reboot_allowed=True).argv()


def test_tcg_by_default_kvm_on_request() -> None:
    argv = _machine().argv()
    assert argv[argv.index("-accel") + 1] == "tcg"
    argv = _machine(accel="kvm").argv()
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"


def test_console_then_control_serial_ports() -> None:
    argv = _machine(control_socket=Path("/t/ctl.sock"), console_append="foo=1").argv()
    serials = [argv[i + 1] for i, a in enumerate(argv) if a == "-serial"]
    assert serials == ["stdio", "chardev:ctl"]
    assert argv[argv.index("-append") + 1].endswith(" foo=1")
    assert "socket,id=ctl,path=/t/ctl.sock" in argv


def test_one_device_per_socket() -> None:
    argv = _machine(vfio_user_sockets=[Path("/a.sock"), Path("/b.sock")]).argv()
    devices = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-device"]
    assert [d["id"] for d in devices] == ["ocssd0", "ocssd1"]
    assert [d["socket"]["path"] for d in devices] == ["/a.sock", "/b.sock"]
