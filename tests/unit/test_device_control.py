"""The control socket's view of a served device (controlled.py) over the fake host: what
query-stats and the chunk commands report once commands ran. Times are worked out by hand
as in test_timing_controller.py (tRD 500 µs, tBERS 3 ms, one sector crosses in 5,120 ns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocssd_vfu.app import assemble
from ocssd_vfu.control.device import ChunkStateChange, CommandError
from ocssd_vfu.controlled import DeviceControl
from ocssd_vfu.devices import FTL20, OCSSD20, ServeOptions
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media.ocssd_image import create_image, fresh_chunk_log
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.ocssd import ChunkNotification
from ocssd_vfu.spec.status import Status
from tests.unit.fakehost import DATA, FakeHost
from tests.unit.test_timing_controller import (
    GEOMETRY,
    T0,
    VECTOR_READ,
    VECTOR_RESET,
    TimedDevice,
    lba,
    ocssd20,
)

OPTIONS = ServeOptions(socket=Path("unused.sock"), image=Path("unused.img"), timing=True)


def control(host: FakeHost) -> DeviceControl:
    return DeviceControl(OCSSD20, OPTIONS, host.ctrl, sync=lambda: None, stop=lambda: None)


def busy(device: DeviceControl) -> list[int]:
    return [pu["busy_ns"] for pu in device.query_stats()["pus"]]


def test_query_stats_gives_each_pus_modelled_busy_time() -> None:
    dev: TimedDevice = ocssd20()
    device = control(dev.host)
    assert busy(device) == [0, 0, 0, 0]
    dev.submit(VECTOR_READ, [lba(0, 0, 0)])
    dev.submit(VECTOR_READ, [lba(0, 0, 1)])
    reset = dev.submit(VECTOR_RESET, [lba(1, 1, 0)])   # a free chunk (MCCAP allows it)
    dev.process()
    assert dev.at(T0 + 3_000_000) == [(1, Status.SUCCESS), (2, Status.SUCCESS),
                                      (reset, Status.SUCCESS)]
    # PU (0,0): two reads of tRD + one sector each; PU (1,1): one erase.
    assert busy(device) == [1_010_240, 0, 0, 3_000_000]
    assert [pu["operations"] for pu in device.query_stats()["pus"]] == [2, 0, 0, 1]


def untimed_namespaces(count: int) -> dict[int, OcssdNamespace]:
    g = GEOMETRY
    return {nsid: OcssdNamespace(nsid, g, memoryview(bytearray(fresh_chunk_log(g))),
                                 memoryview(bytearray(g.sectors * g.sec_size)),
                                 memoryview(bytearray(g.sectors * g.md_size)))
            for nsid in range(1, count + 1)}


def test_untimed_stats_have_no_busy_time() -> None:
    host = FakeHost(namespace=untimed_namespaces(1)[1])  # type: ignore[arg-type]
    assert control(host).query_stats()["pus"][0] == {"grp": 0, "pu": 0, "operations": 0}


def test_chunk_commands_take_the_namespace() -> None:
    namespaces = untimed_namespaces(2)
    host = FakeHost(namespace=namespaces[1])  # type: ignore[arg-type]
    host.ctrl.namespaces[2] = namespaces[2]
    device = control(host)
    device.set_chunk_state(ChunkStateChange(grp=1, pu=0, chk=5, state="CLOSED", type="W_SEQ",
                                            wp=32, wi=0, nsid=2))
    assert device.query_chunks({"grp": 1, "pu": 0, "state": "CLOSED", "nsid": 2}) == [
        {"grp": 1, "pu": 0, "chk": 5, "state": "CLOSED", "type": "W_SEQ", "wp": 32,
         "wli": 0, "cnlb": 32, "erases": 0}]
    assert device.query_chunks({"state": "CLOSED", "nsid": 1}) == []
    assert device.query_chunks({"state": "CLOSED"}) == []   # namespace 1 by default
    assert device.notify_chunk((1, 0, 5), "ERROR_RATE_HIGH", nsid=2) == {"nc": 1}
    entry = ChunkNotification.parse(namespaces[2].notifications.entries[0])
    assert (entry.nsid, entry.lba, entry.state) == (2, 1184, 4)   # chunk (1,0,5)'s SLBA
    assert namespaces[1].notifications.entries == []
    with pytest.raises(CommandError, match=r"^Parameter 'nsid': there is no namespace 3 "
                                           r"\(namespaces: 1, 2\)$"):
        device.query_chunks({"nsid": 3})


def test_query_stats_of_an_ftl_has_its_counters(tmp_path: Path) -> None:
    image = tmp_path / "ftl.img"
    create_image(image, OcssdGeometry(num_grp=1, num_pu=2, num_chk=16, num_sec=64, ws_min=4,
                                      ws_opt=8, mw_cunits=0))
    options = ServeOptions(socket=tmp_path / "unused.sock", image=image, mode="ftl",
                           op_percent=25)
    assembled = assemble(options)
    try:
        host = FakeHost(namespace=assembled.namespaces[1])  # type: ignore[arg-type]
        host.enable()
        host.create_io_queues()
        assert host.command(1, 0x01, nsid=1, prp1=DATA, prp2=DATA + 0x1000, cdw12=1)[5] == 0
        ftl = DeviceControl(FTL20, options, host.ctrl, sync=lambda: None,
                            stop=lambda: None).query_stats()["ftl"]
    finally:
        assembled.close()
    assert (ftl["host_sectors"], ftl["mapped_blocks"], ftl["gc_runs"]) == (2, 2, 0)
    assert sorted(ftl) == [
        "chunks_erased", "data_chunks", "free_chunks", "gc_runs", "gc_sectors",
        "host_sectors", "logical_blocks", "mapped_blocks", "media_sectors", "meta_sectors",
        "offline_chunks", "pad_sectors", "retired_chunks", "valid_histogram", "waf",
        "wear_max", "wear_mean", "wear_min"]
