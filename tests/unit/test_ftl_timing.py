"""The device-side FTL through the flash timing model (serve --mode ftl --timing), via the
controller on a fake clock.

OCSSD 2.0 geometry: 2 groups x 1 PU x 16 chunks x 32 sectors of 4096 bytes, ws_min =
ws_opt = 8, so PU p is group p on channel p. Times: tRD 500 µs, tPROG 1 ms, tBERS 3 ms;
channels of 800 MB/s: one sector crosses in 5,120 ns, a unit of 8 in 40,960 ns. Write
buffer: MW_CUNITS 8 + one unit = 16 sectors per PU. Commands arrive at T0 = 10 ms.
Expected times are worked out by hand from timing/model.py's rules.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.ftl.core import Ftl, FtlOptions
from ocssd_vfu.ftl.media import Ocssd20Flash
from ocssd_vfu.ftl.trace import OpKind, Purpose
from ocssd_vfu.ftlns.namespace import FtlNamespace
from ocssd_vfu.ftlns.timed import FtlTiming
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media import ocssd12_image, ocssd_image
from ocssd_vfu.media.ocssd_image import fresh_chunk_log
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.spec.status import Status
from ocssd_vfu.timing.geometries import model_20
from tests.unit.fakehost import DATA, FakeHost, prp_list
from tests.unit.test_timing_controller import T0, Clock

MULTIPLE_RESETS = 0x2
GEOMETRY = OcssdGeometry(num_grp=2, num_pu=1, num_chk=16, num_sec=32, ws_min=8, ws_opt=8,
                         mw_cunits=8, mccap=MULTIPLE_RESETS, trdt=500_000, twrt=1_000_000,
                         tcrst=3_000_000)
WRITE, READ = 0x01, 0x02
PRP_LIST = DATA + 0x100000


class TimedFtl:
    def __init__(self, prepare_writes: int = 0) -> None:
        g = GEOMETRY
        flash = Ocssd20Flash(g, memoryview(bytearray(fresh_chunk_log(g))),
                             memoryview(bytearray(g.sectors * g.sec_size)),
                             memoryview(bytearray(g.sectors * g.md_size)))
        ftl = Ftl.format(flash, FtlOptions(op_percent=40, checkpoint_interval=10**6))
        self.ns = FtlNamespace(1, ftl)
        # untimed history: the whole space once, then random unit overwrites (seed 1)
        rng = random.Random(1)
        for i in range(prepare_writes):
            ftl.write(i * 8 if i < 64 else rng.randrange(64) * 8, bytes(8 * 4096))
        self.clock = Clock()
        self.ns.timing = FtlTiming(model_20(g), ftl.layout, self.clock)
        self.host = FakeHost(namespace=self.ns)
        self.host.ctrl.clock_ns = self.clock
        self.host.enable()
        self.host.create_io_queues()
        self.cid = 0

    def submit(self, opc: int, slba: int, nlb: int) -> int:
        self.cid += 1
        prp2 = DATA + 0x1000
        if nlb > 2:
            self.host.ram_write(PRP_LIST, prp_list([DATA + 0x1000 * p for p in range(1, nlb)]))
            prp2 = PRP_LIST
        self.host.submit(1, opc, cid=self.cid, nsid=1, prp1=DATA, prp2=prp2, cdw10=slba,
                         cdw12=nlb - 1)
        self.host.ctrl.process()
        return self.cid

    def at(self, now: int) -> list[tuple[int, int]]:
        self.clock.now = now
        self.host.ctrl.complete_due(now)
        return [(entry[4], entry[5]) for entry in self.host.completions(1)]


def test_writes_complete_when_buffered_and_wait_for_space() -> None:
    dev = TimedFtl()
    # Units go PU 0, PU 1, PU 0, ...: PU 0 gets units 1, 3, 5 of this 40-sector write.
    # Units 1 and 3 fill its 16-sector buffer at T0 (unit 1 is programmed until
    # T0 + 40,960 + 1,000,000); unit 5 gets in when unit 1's program ends.
    write = dev.submit(WRITE, 0, 40)
    assert dev.at(T0 + 1_040_959) == []
    assert dev.at(T0 + 1_040_960) == [(write, Status.SUCCESS)]


def test_a_read_costs_trd_and_a_sector_unless_still_buffered() -> None:
    dev = TimedFtl()
    dev.submit(WRITE, 0, 12)   # one unit on PU 0 (programmed by T0 + 1,040,960), 4 buffered
    assert len(dev.at(T0)) == 1
    buffered = dev.submit(READ, 8, 1)
    assert dev.at(T0) == [(buffered, Status.SUCCESS)]    # from the FTL's write buffer
    dev.clock.now = T0 + 2_000_000
    programmed = dev.submit(READ, 0, 1)
    assert dev.at(T0 + 2_505_119) == []
    assert dev.at(T0 + 2_505_120) == [(programmed, Status.SUCCESS)]  # tRD + one sector
    unmapped = dev.submit(READ, 100, 1)
    assert dev.at(T0 + 2_505_120) == [(unmapped, Status.SUCCESS)]    # no media work


def test_a_write_that_runs_foreground_gc_waits_for_its_reads_programs_and_erase() -> None:
    dev = TimedFtl(prepare_writes=105)
    write = dev.submit(WRITE, 8 * random_unit_after(105), 8)
    # GC reads victim chk 6 on PU 1 (4 pages: done T0 + 2,163,840), programs 8 of its
    # sectors on PU 1 (T0 + 3,204,800), erases it (T0 + 6,204,800); victim chk 3 on PU 0
    # likewise; its other 16 sectors go to PU 1 (programmed until T0 + 7,245,760 and
    # T0 + 8,286,720) and fill PU 1's buffer, so the host unit, also for PU 1, gets in
    # when the first of those programs ends.
    assert [(op.kind, op.purpose, op.chunk) for op in dev.ns.media_ops] == [
        (OpKind.READ, Purpose.GC, 22), (OpKind.PROGRAM, Purpose.GC, 29),
        (OpKind.RESET, Purpose.GC, 22), (OpKind.READ, Purpose.GC, 3),
        (OpKind.PROGRAM, Purpose.GC, 29), (OpKind.PROGRAM, Purpose.GC, 29),
        (OpKind.RESET, Purpose.GC, 3), (OpKind.PROGRAM, Purpose.HOST, 30)]
    assert dev.at(T0 + 7_245_759) == []
    assert dev.at(T0 + 7_245_760) == [(write, Status.SUCCESS)]


def random_unit_after(writes: int) -> int:
    """The unit the prepared history (seed 1) would overwrite next."""
    rng = random.Random(1)
    for _ in range(writes - 64):
        rng.randrange(64)
    return rng.randrange(64)


def test_serve_mode_ftl_takes_timing_and_the_2_0_overrides(tmp_path: Path) -> None:
    path = tmp_path / "ftl.img"
    ocssd_image.create_image(path, OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=32,
                                                 mw_cunits=8))
    assembled = assemble(ServeOptions(socket=tmp_path / "s", image=path, mode="ftl",
                                      op_percent=20, timing=True, twrt=2_000_000,
                                      write_buffer_sectors=24))
    try:
        ns = assembled.namespaces[1]
        assert isinstance(ns, FtlNamespace) and ns.timing is not None
        parameters = ns.timing.model.parameters
        assert (parameters.read_ns, parameters.program_ns, parameters.erase_ns,
                parameters.buffer_sectors_per_pu) == (70_000, 2_000_000, 3_000_000, 24)
    finally:
        assembled.close()
    with pytest.raises(ImageError, match="--tprt and --tbet are for OCSSD 1.2"):
        assemble(ServeOptions(socket=tmp_path / "s", image=path, mode="ftl", timing=True,
                              tprt=1))


def test_flush_waits_until_the_padded_unit_is_programmed() -> None:
    dev = TimedFtl()
    dev.submit(WRITE, 0, 4)                      # half a unit on PU 0, staged
    assert len(dev.at(T0)) == 1
    dev.cid += 1
    dev.host.submit(1, 0x00, cid=dev.cid, nsid=1)  # Flush: pads and programs the unit
    dev.host.ctrl.process()
    [request] = dev.host.ctrl.take_sync_requests()
    dev.host.ctrl.complete_deferred(request, Status.SUCCESS)  # the image synced at T0
    assert dev.at(T0 + 1_040_959) == []
    assert dev.at(T0 + 1_040_960) == [(dev.cid, Status.SUCCESS)]


def test_a_background_gc_step_keeps_its_pu_busy_for_the_reads_after_it() -> None:
    dev = TimedFtl()
    ftl = dev.ns.ftl
    ftl.write(0, bytes(64 * 4096))      # untimed: 4 units per PU close a chunk on each
    ftl.deallocate([(0, 64)])           # ... that then holds nothing valid
    ftl.write(100, bytes(8 * 4096))     # a unit on PU 0
    ftl.gc_threshold = ftl.chunks.free_count + 1
    dev.clock.now = T0 + 2_000_000
    assert dev.ns.background_step()     # erases chunk 3 (PU 0; 0-2 hold metadata): 3 ms
    assert [(op.kind, op.chunk) for op in dev.ns.media_ops] == [(OpKind.RESET, 3)]
    read = dev.submit(READ, 100, 1)     # PU 0 after the erase: tRD + one sector
    assert dev.at(T0 + 5_505_119) == []
    assert dev.at(T0 + 5_505_120) == [(read, Status.SUCCESS)]


def test_on_ocssd_1_2_a_unit_is_one_page_of_every_plane(tmp_path: Path) -> None:
    """2 channels x 2 LUNs, 2 planes x 2 sectors a page: a write unit is 4 sectors, one
    multi-plane program (20,480 ns on the bus + tPRT 1.9 ms); reading it back senses both
    planes in one tRDT (70 µs) + 4 sectors."""
    path = tmp_path / "ftl12.img"
    ocssd12_image.create_image(path, Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2,
                                                     num_blk=16, num_pg=4, fpg_sz=8192))
    assembled = assemble(ServeOptions(socket=tmp_path / "s", image=path, mode="ftl",
                                      op_percent=30, timing=True))
    try:
        clock = Clock()
        host = FakeHost(namespace=assembled.namespaces[1])
        host.ctrl.clock_ns = clock
        host.enable()
        host.create_io_queues()
        host.ram_write(PRP_LIST, prp_list([DATA + 0x1000 * p for p in range(1, 4)]))
        host.submit(1, WRITE, cid=1, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw12=3)
        host.ctrl.process()
        host.ctrl.complete_due(T0)
        assert [(entry[4], entry[5]) for entry in host.completions(1)] == [(1, Status.SUCCESS)]
        clock.now = T0 + 3_000_000
        host.submit(1, READ, cid=2, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw12=3)
        host.ctrl.process()
        host.ctrl.complete_due(T0 + 3_090_479)
        assert host.completions(1) == []
        host.ctrl.complete_due(T0 + 3_090_480)
        assert [(entry[4], entry[5]) for entry in host.completions(1)] == [(2, Status.SUCCESS)]
    finally:
        assembled.close()
