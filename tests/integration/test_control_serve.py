"""The control socket of a real `ocssd-vfu serve` (started through the Python API), spoken
to by qemu.qmp's client, with a vfio-user host on the device side for the AER: no VM."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ocssd_vfu.api import ServedDevice, served_device
from ocssd_vfu.control.client import ControlError
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media import ocssd12_image
from ocssd_vfu.media.ocssd_image import create_image
from tests.integration.nvme_host import PAGE, AdminQueues, GuestRam
from tests.vfio_user_client import Region, VfioUserClient

pytestmark = pytest.mark.timeout(120)

GEOMETRY = OcssdGeometry(num_grp=1, num_pu=2, num_chk=4, num_sec=16, ws_min=4, ws_opt=8,
                         mw_cunits=4)
QUEUES_IOVA, DATA_IOVA = 0x4000_0000, 0x8000_0000
AER, GET_LOG_PAGE = 0x0C, 0x02


@pytest.fixture
def device(tmp_path: Path) -> Iterator[ServedDevice]:
    image = tmp_path / "small.img"
    create_image(image, GEOMETRY)
    with served_device(image, pe_cycles=3) as served:
        yield served


@pytest.fixture
def qmp(device: ServedDevice) -> Iterator[QEMUMonitorProtocol]:
    assert device.control_socket is not None
    client = QEMUMonitorProtocol(str(device.control_socket))
    client.connect()
    client.settimeout(10)
    try:
        yield client
    finally:
        with contextlib.suppress(EOFError, OSError):   # after `quit` the server is gone
            client.close()


def error(client: QEMUMonitorProtocol, name: str, **arguments: Any) -> tuple[str, str]:
    with pytest.raises(ExecuteError) as caught:
        client.cmd(name, **arguments)
    return caught.value.error_class, str(caught.value)


def event(qmp: QEMUMonitorProtocol, name: str, **where: Any) -> dict[str, Any]:
    """The next `name` event whose data has the `where` items."""
    while True:
        got = qmp.pull_event(wait=10.0)
        assert got is not None, f"no {name} event"
        if got["event"] == name and where.items() <= got["data"].items():
            return got["data"]


def chunk(pu: int, chk: int, state: str = "FREE", wp: int = 0, wli: int = 0,
          erases: int = 0) -> dict[str, Any]:
    return {"grp": 0, "pu": pu, "chk": chk, "state": state, "type": "W_SEQ", "wp": wp,
            "wli": wli, "cnlb": 16, "erases": erases}


def test_query_device_names_the_kind_geometry_and_options(qmp: QEMUMonitorProtocol,
                                                          device: ServedDevice) -> None:
    reply: Any = qmp.cmd("query-device")
    assert (reply["kind"], reply["spec"], reply["namespaces"]) == ("OCSSD 2.0", "2.0", 1)
    assert reply["geometry"] == {"num_grp": 1, "num_pu": 2, "num_chk": 4, "clba": 16,
                                 "sec_size": 4096, "md_size": 16, "ws_min": 4, "ws_opt": 8,
                                 "mw_cunits": 4}
    assert (reply["options"]["pe_cycles"], reply["options"]["control"]) == (
        3, str(device.control_socket))


def test_query_chunks_filters(qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("query-chunks", pu=1) == [chunk(1, 0), chunk(1, 1), chunk(1, 2),
                                             chunk(1, 3)]
    assert qmp.cmd("query-chunks", state="OFFLINE") == []
    assert error(qmp, "query-chunks", grp=1) == (
        "GenericError", "Parameter 'grp' out of range: 1 is not in 0..0")
    assert error(qmp, "query-chunks", state="BROKEN") == (
        "GenericError", "Parameter 'state' does not accept value 'BROKEN'")
    assert qmp.cmd("query-chunks", nsid=1, pu=0, state="FREE")[0] == chunk(0, 0)
    assert error(qmp, "query-chunks", nsid=2) == (
        "GenericError", "Parameter 'nsid': there is no namespace 2 (namespaces: 1)")


def test_faults_are_injected_listed_and_cleared(qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("inject-fault", op="write", grp=0, pu=1, chk=2, sec=5, count=1) == {
        "op": "write", "grp": 0, "pu": 1, "chk": 2, "sec": 5, "probability": 100, "count": 1}
    assert qmp.cmd("inject-fault", op="reset", grp=0, pu=0, chk=3, probability=50) == {
        "op": "reset", "grp": 0, "pu": 0, "chk": 3, "probability": 50}
    assert qmp.cmd("query-faults") == [
        {"op": "write", "grp": 0, "pu": 1, "chk": 2, "sec": 5, "probability": 100, "count": 1},
        {"op": "reset", "grp": 0, "pu": 0, "chk": 3, "probability": 50}]
    assert error(qmp, "inject-fault", op="reset", grp=0, pu=0, chk=4) == (
        "GenericError", "Parameter 'chk' out of range: 4 is not in 0..3")
    assert error(qmp, "inject-fault", op="reset", grp=0, pu=0, chk=0, sec=1) == (
        "GenericError", "Parameter 'sec' is unexpected for op 'reset'")
    assert qmp.cmd("clear-faults", op="write") == {"cleared": 1}
    assert qmp.cmd("clear-faults") == {"cleared": 1}
    assert qmp.cmd("query-faults") == []


def test_stats_start_at_zero(qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("query-stats") == {
        "commands": {}, "read_bytes": 0, "written_bytes": 0, "guest_errors": {},
        "doorbell_writes": 0,
        "smart": {"host_read_commands": 0, "host_write_commands": 0, "power_cycles": 0,
                  "unsafe_shutdowns": 0},
        "async_events_waiting": 0,
        "pus": [{"grp": 0, "pu": 0, "operations": 0}, {"grp": 0, "pu": 1, "operations": 0}],
        "notifications": 0}


def test_a_chunk_taken_offline_is_announced_to_both_sides(qmp: QEMUMonitorProtocol,
                                                          device: ServedDevice) -> None:
    ram = GuestRam(0x20000)
    host = VfioUserClient.connect(device.socket)
    try:
        host.negotiate()
        ram.map(host, QUEUES_IOVA, 0, 0x10000)
        ram.map(host, DATA_IOVA, 0x10000, 0x10000)
        admin = AdminQueues(host, ram, QUEUES_IOVA, QUEUES_IOVA + PAGE)
        admin.enable()
        assert event(qmp, "CLIENT_ATTACHED", client="vfio-user") == {"client": "vfio-user",
                                                 "socket": str(device.socket)}
        aer = admin.submit(AER)
        assert qmp.cmd("set-chunk-state", grp=0, pu=1, chk=3, state="OFFLINE") == {}
        assert admin.wait(aer).dw0 == 0x00D00007     # vendor specific, log page D0h
        # LBA: pu 1 << 6 | chk 3 << 4; state 8: unrecoverable error rate; mask 2: a chunk
        assert event(qmp, "CHUNK_NOTIFICATION") == {"nsid": 1, "nc": 1, "lba": 0x70,
                                                    "state": 8, "mask": 2}
        assert event(qmp, "CHUNK_OFFLINE") == {"grp": 0, "pu": 1, "chk": 3,
                                               "reason": "set-chunk-state"}
        log = admin.wait(admin.submit(GET_LOG_PAGE, nsid=1, prp1=DATA_IOVA,
                                      cdw10=0xD0 | 15 << 16))
        assert log.status == 0
        assert ram.read(DATA_IOVA, 24) == bytes.fromhex(
            "0100000000000000" "7000000000000000" "01000000" "0800" "02" "00")
        assert qmp.cmd("notify-chunk", grp=0, pu=0, chk=0, state="REFRESHED") == {"nc": 2}
        assert qmp.cmd("query-chunks", state="OFFLINE") == [
            chunk(1, 3, "OFFLINE", 0xFFFF)]
    finally:
        host.close()
        ram.close()
    assert event(qmp, "CLIENT_DETACHED", client="vfio-user") == {"client": "vfio-user",
                                             "socket": str(device.socket)}


def test_trace_sync_and_quit(qmp: QEMUMonitorProtocol, device: ServedDevice,
                             tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    assert qmp.cmd("trace-start", file=str(trace), format="json") == {}
    assert qmp.cmd("trace-stop") == {}
    assert error(qmp, "trace-stop") == ("GenericError", "no trace is running")
    assert error(qmp, "trace-start", file="/nonexistent/dir/t") == (
        "GenericError", "cannot open /nonexistent/dir/t: No such file or directory")
    assert qmp.cmd("sync") == {}
    assert qmp.cmd("quit") == {}
    assert device.process.wait(10) == 0
    assert not device.socket.exists() and not os.path.exists(str(device.control_socket))


def test_a_plain_device_has_no_media_faults(tmp_path: Path) -> None:
    image = tmp_path / "plain.raw"
    image.write_bytes(bytes(1 << 20))
    with served_device(image) as device:
        assert device.control is not None
        described = device.control.execute("query-device")
        assert (described["kind"], described["spec"], described["geometry"]) == (
            "plain NVMe", None, {"nlbas": 256, "lba_size": 4096})
        assert "query-chunks" not in {c["name"] for c in device.control.execute(
            "query-commands")}
        with pytest.raises(ControlError, match="Parameter 'op': this device has no media "
                           "operations to fail"):
            device.control.execute("inject-fault", op="write")
        assert device.control.execute("query-faults") == []


def test_a_12_device_lists_its_blocks(tmp_path: Path) -> None:
    image = tmp_path / "ocssd12.img"
    ocssd12_image.create_image(image, Ocssd12Geometry(num_ch=1, num_lun=2, num_pln=2,
                                                      num_blk=4, num_pg=4, fpg_sz=8192))
    with served_device(image, pe_cycles=2) as device:
        assert device.control is not None
        assert device.control.execute("query-blocks", lun=1) == [
            {"ch": 0, "lun": 1, "blk": blk, "state": "FREE", "pages": 0, "bbt": 0, "erases": 0}
            for blk in range(4)]
        assert device.control.execute("inject-fault", op="read", ch=0, lun=1, blk=2, pg=3,
                                      status="HIGH_ECC") == {
            "op": "read", "ch": 0, "lun": 1, "blk": 2, "pg": 3, "probability": 100,
            "status": "HIGH_ECC"}
        assert "set-chunk-state" not in {c["name"] for c in device.control.execute(
            "query-commands")}


def test_guest_errors_become_events(qmp: QEMUMonitorProtocol, device: ServedDevice) -> None:
    host = VfioUserClient.connect(device.socket)
    try:
        host.negotiate()
        host.write32(Region.BAR0, 0x1000 + 8 * 5, 1, posted=False)   # SQ 5 does not exist
        assert event(qmp, "GUEST_ERROR") == {"name": "doorbell", "detail":
                                             "doorbell write at 0x1028 while disabled or "
                                             "misaligned"}
        assert qmp.cmd("query-stats")["guest_errors"] == {"doorbell": 1}
    finally:
        host.close()


def test_a_refused_control_path_stops_serve_before_the_image_is_touched(
        tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    create_image(image, GEOMETRY)
    before = image.read_bytes()
    taken = tmp_path / "notes.txt"
    taken.write_text("not a socket")
    done = subprocess.run([sys.executable, "-m", "ocssd_vfu", "serve", "--socket",
                           str(tmp_path / "vfu.sock"), "--image", str(image), "--control",
                           str(taken)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert (done.returncode, done.stderr) == (
        1, f"ocssd-vfu serve: {taken} exists and is not a socket: refusing to replace it\n")
    assert image.read_bytes() == before          # not even extended
    assert taken.read_text() == "not a socket"
