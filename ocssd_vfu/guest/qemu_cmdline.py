"""The QEMU command line of a guest run, composed from qemu-configs/*.json so
that the README's lines and the runner's cannot drift apart."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocssd_vfu.guest.provision import REPO

CONFIGS = REPO / "qemu-configs"


def _fill(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return string.Template(value).substitute(variables)
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    return value


def config_args(name: str, **variables: str) -> list[str]:
    """The arguments of qemu-configs/NAME.json with its ${variables} filled in."""
    spec = json.loads((CONFIGS / f"{name}.json").read_text())
    args: list[str] = []
    for option, value in spec["args"]:
        filled = _fill(value, variables)
        args += [option, filled if isinstance(filled, str) else json.dumps(filled)]
    return args


@dataclass
class GuestMachine:
    qemu: Path
    kernel: Path
    initrd: Path
    console_append: str = ""
    accel: str = "tcg"
    memory_mib: int = 1024
    cpus: int = 2
    reboot_allowed: bool = False
    vfio_user_sockets: list[Path] = field(default_factory=list)
    qemu_nvme_images: list[Path] = field(default_factory=list)
    control_socket: Path | None = None
    qmp_socket: Path | None = None
    extra_args: list[str] = field(default_factory=list)

    def kernel_command_line(self) -> str:
        # trust_cpu: nvme-cli 1.12 rejects numeric options until the RNG is ready.
        base = "console=ttyS0 panic=-1 quiet random.trust_cpu=on"
        return f"{base} {self.console_append}".strip()

    def argv(self) -> list[str]:
        cpu = "max" if self.accel == "tcg" else "host"
        args = [str(self.qemu), "-nodefaults", "-display", "none", "-no-user-config",
                "-accel", self.accel, "-cpu", cpu, "-smp", str(self.cpus),
                *config_args("guest-ram-memfd", memory=str(self.memory_mib)),
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.kernel_command_line(),
                "-serial", "stdio"]
        if self.control_socket is not None:
            args += ["-chardev", f"socket,id=ctl,path={self.control_socket}",
                     "-serial", "chardev:ctl"]
        if self.qmp_socket is not None:
            args += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        if not self.reboot_allowed:
            args.append("-no-reboot")
        for index, sock in enumerate(self.vfio_user_sockets):
            args += config_args("vfio-user-pci", socket=str(sock), id=f"ocssd{index}")
        for index, image in enumerate(self.qemu_nvme_images):
            args += config_args("qemu-nvme", image=str(image), id=f"qnvme{index}")
        return args + self.extra_args
