"""The flash timing model through the controller, on a fake clock (serve --timing).

OCSSD 2.0 geometry: 2 groups x 2 PUs x 12 chunks x 32 sectors of 4096 bytes, ws_opt 8
(LBA = sec | chk << 5 | pu << 9 | grp << 10). Times: tRD 500 µs, tPROG 1 ms, tBERS 3 ms,
channels of 800 MB/s: one 4096-byte sector crosses in 5,120 ns, a ws_opt unit in 40,960 ns.
Write buffer: 16 sectors (two units) per PU. Commands arrive at T0 = 10 ms.
Expected times are worked out by hand from timing/model.py's rules.
"""

from __future__ import annotations

import io
import json
import struct

import pytest

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media.ocssd_image import fresh_chunk_log
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.nvme import Register
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.timing.geometries import model_12, model_20
from tests.unit.fakehost import DATA, FakeHost

T0 = 10_000_000
MULTIPLE_RESETS = 0x2  # MCCAP bit 1: a free chunk may be reset
GEOMETRY = OcssdGeometry(num_grp=2, num_pu=2, num_chk=12, num_sec=32, mw_cunits=8,
                         mccap=MULTIPLE_RESETS, trdt=500_000, twrt=1_000_000, tcrst=3_000_000)
LISTS, PRP_LISTS = DATA + 0x100000, DATA + 0x200000  # plus 4 KiB x cid
VECTOR_RESET, VECTOR_WRITE, VECTOR_READ, FLUSH = 0x90, 0x91, 0x92, 0x00


def lba(grp: int, pu: int, chk: int, sec: int = 0) -> int:
    return sec | chk << 5 | pu << 9 | grp << 10


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class TimedDevice:
    def __init__(self, namespace: object, queue_size: int = 16) -> None:
        self.clock = Clock()
        self.host = FakeHost(namespace=namespace, queue_size=queue_size)  # type: ignore[arg-type]
        self.host.ctrl.clock_ns = self.clock
        self.host.enable()
        self.host.create_io_queues()
        self.cid = 0

    def submit(self, opc: int, addresses: list[int], cdw12: int = 0) -> int:
        """Queue a vector command (data at DATA); its cid."""
        self.cid += 1
        lbal = LISTS + self.cid * 0x1000  # each command its own list: several are queued
        if len(addresses) > 1:
            self.host.ram_write(lbal, struct.pack(f"<{len(addresses)}Q", *addresses))
        else:
            lbal = addresses[0]
        self.host.submit(1, opc, cid=self.cid, nsid=1, prp1=DATA, prp2=self._prp2(len(addresses)),
                         cdw10=lbal & 0xFFFFFFFF, cdw11=lbal >> 32,
                         cdw12=(len(addresses) - 1) | cdw12 << 16)
        return self.cid

    def _prp2(self, count: int) -> int:
        if count <= 2:
            return DATA + 0x1000
        prp_list = PRP_LISTS + self.cid * 0x1000
        self.host.ram_write(prp_list, struct.pack(f"<{count - 1}Q",
                                                  *(DATA + 0x1000 * i for i in range(1, count))))
        return prp_list

    def process(self) -> list[tuple[int, int]]:
        self.host.ctrl.process()
        return self.done()

    def at(self, now: int) -> list[tuple[int, int]]:
        """Let the fake clock reach `now`; (cid, status) of what was posted."""
        self.clock.now = now
        self.host.ctrl.complete_due(now)
        return self.done()

    def done(self) -> list[tuple[int, int]]:
        return [(entry[4], entry[5]) for entry in self.host.completions(1)]


def ocssd20(geometry: OcssdGeometry = GEOMETRY, buffer_sectors: int | None = None,
            queue_size: int = 16) -> TimedDevice:
    g = geometry
    ns = OcssdNamespace(1, g, memoryview(bytearray(fresh_chunk_log(g))),
                        memoryview(bytearray(g.sectors * g.sec_size)),
                        memoryview(bytearray(g.sectors * g.md_size)),
                        timing=model_20(g, buffer_sectors=buffer_sectors))
    return TimedDevice(ns, queue_size)


def test_reads_on_one_pu_queue_behind_each_other() -> None:
    dev = ocssd20()
    first, second = dev.submit(VECTOR_READ, [lba(0, 0, 0)]), dev.submit(VECTOR_READ, [lba(0, 0, 1)])
    assert dev.process() == []
    assert dev.at(T0 + 505_119) == []
    assert dev.at(T0 + 505_120) == [(first, Status.SUCCESS)]     # tRD + one sector
    assert dev.at(T0 + 1_010_239) == []
    assert dev.at(T0 + 1_010_240) == [(second, Status.SUCCESS)]  # then the second


def test_reads_on_pus_of_different_groups_overlap() -> None:
    dev = ocssd20()
    first, second = dev.submit(VECTOR_READ, [lba(0, 0, 0)]), dev.submit(VECTOR_READ, [lba(1, 0, 0)])
    dev.process()
    assert dev.at(T0 + 505_120) == [(first, Status.SUCCESS), (second, Status.SUCCESS)]


def test_reads_on_pus_of_one_group_share_its_channel() -> None:
    dev = ocssd20()
    # A whole ws_opt unit from each PU of group 0: both sense at once, then 40,960 ns each
    # on the one channel.
    cid = dev.submit(VECTOR_READ, [lba(0, 0, 0, s) for s in range(8)]
                     + [lba(0, 1, 0, s) for s in range(8)])
    dev.process()
    assert dev.at(T0 + 581_919) == []
    assert dev.at(T0 + 581_920) == [(cid, Status.SUCCESS)]  # 500,000 + 2 x 40,960


def test_a_write_completes_once_buffered_and_a_read_of_it_costs_nothing() -> None:
    dev = ocssd20()
    write = dev.submit(VECTOR_WRITE, [lba(0, 0, 0, s) for s in range(8)])
    assert dev.process() == [(write, Status.SUCCESS)]      # in the buffer at T0
    read = dev.submit(VECTOR_READ, [lba(0, 0, 0, 3)])
    assert dev.process() == [(read, Status.SUCCESS)]       # served from the buffer
    # Once programmed (40,960 + 1 ms) the page must be sensed again.
    dev.clock.now = T0 + 1_040_960
    read = dev.submit(VECTOR_READ, [lba(0, 0, 0, 3)])
    assert dev.process() == []
    assert dev.at(T0 + 1_040_960 + 505_120) == [(read, Status.SUCCESS)]


def test_a_write_into_a_full_buffer_waits_for_a_program_to_end() -> None:
    dev = ocssd20()
    cids = [dev.submit(VECTOR_WRITE, [lba(0, 0, 0, s) for s in range(u * 8, u * 8 + 8)])
            for u in range(3)]
    # Units 1 and 2 fill the 16-sector buffer at T0; unit 1's program ends at 1,040,960
    # (transfer, then tPROG), and only then does unit 3 get in.
    assert dev.process() == [(cids[0], Status.SUCCESS), (cids[1], Status.SUCCESS)]
    assert dev.at(T0 + 1_040_959) == []
    assert dev.at(T0 + 1_040_960) == [(cids[2], Status.SUCCESS)]


def test_a_reset_takes_tcrst_and_a_refused_command_completes_at_once() -> None:
    dev = ocssd20()
    reset = dev.submit(VECTOR_RESET, [lba(1, 1, 5)])
    bad = dev.submit(VECTOR_READ, [lba(0, 0, 13)])  # no chunk 13
    assert dev.process() == [(bad, Status.LBA_OUT_OF_RANGE | DNR)]
    assert dev.at(T0 + 2_999_999) == []
    assert dev.at(T0 + 3_000_000) == [(reset, Status.SUCCESS)]


def test_flush_waits_until_the_write_buffer_is_programmed() -> None:
    dev = ocssd20()
    write = dev.submit(VECTOR_WRITE, [lba(0, 1, 0, s) for s in range(4)])  # half a unit
    assert dev.process() == [(write, Status.SUCCESS)]
    dev.host.submit(1, FLUSH, cid=99, nsid=1)
    dev.host.ctrl.process()
    [request] = dev.host.ctrl.take_sync_requests()
    dev.host.ctrl.complete_deferred(request, Status.SUCCESS)  # the image synced at T0
    assert dev.done() == []
    # The half-filled unit is programmed padded: 40,960 + 1 ms.
    assert dev.at(T0 + 1_040_959) == []
    assert dev.at(T0 + 1_040_960) == [(99, Status.SUCCESS)]


def test_shutdown_completes_once_the_write_buffer_is_programmed() -> None:
    dev = ocssd20()
    dev.submit(VECTOR_WRITE, [lba(1, 0, 0, s) for s in range(4)])
    dev.process()
    ctrl = dev.host.ctrl
    ctrl.mmio_write(Register.CC, 4, ctrl.regs.cc | 1 << 14)  # CC.SHN = 01b: normal shutdown
    [request] = ctrl.take_sync_requests()
    ctrl.complete_deferred(request, Status.SUCCESS)
    shst = lambda: ctrl.mmio_read(Register.CSTS, 4) >> 2 & 3  # noqa: E731
    assert shst() == 1                                           # occurring
    dev.at(T0 + 1_040_959)
    assert shst() == 1
    dev.at(T0 + 1_040_960)
    assert shst() == 2                                           # complete


def test_held_completions_reserve_their_cq_slots() -> None:
    dev = ocssd20(queue_size=4)  # 3 CQ slots
    cids = [dev.submit(VECTOR_READ, [address])
            for address in (lba(0, 0, 0), lba(0, 1, 0), lba(1, 0, 0))]
    assert dev.process() == []
    assert dev.host.ctrl.sqs[1].head == 3
    fourth = dev.submit(VECTOR_READ, [lba(1, 1, 0)])
    assert dev.process() == []
    assert dev.host.ctrl.sqs[1].head == 3  # no slot for a 4th until one is posted
    # group 0: PU 0 at 505,120, PU 1 behind it on the channel; group 1 PU 0 at 505,120
    assert dev.at(T0 + 505_120) == [(cids[0], Status.SUCCESS), (cids[2], Status.SUCCESS)]
    assert dev.host.ctrl.sqs[1].head == 3  # 2 posted + 1 reserved: still full
    assert dev.process() == []             # the host took them: the 4th gets in at 505,120
    assert dev.host.ctrl.sqs[1].head == 0
    assert dev.at(T0 + 510_240) == [(cids[1], Status.SUCCESS)]
    assert dev.at(T0 + 1_010_239) == []
    assert dev.at(T0 + 1_010_240) == [(fourth, Status.SUCCESS)]


def test_a_controller_reset_drops_held_completions() -> None:
    dev = ocssd20()
    dev.submit(VECTOR_READ, [lba(0, 0, 0)])
    dev.process()
    cq_before = dev.host.ram_read(0x103000, 64)  # fakehost's IOCQ
    dev.host.ctrl.mmio_write(Register.CC, 4, 0)
    assert len(dev.host.ctrl.held) == 0
    dev.host.ctrl.complete_due(T0 + 10_000_000)
    assert dev.host.ram_read(0x103000, 64) == cq_before


def test_delete_sq_drops_its_held_completions_and_their_reservations() -> None:
    dev = ocssd20()
    dev.submit(VECTOR_READ, [lba(0, 0, 0)])
    dev.process()
    cq = dev.host.ctrl.cqs[1]
    assert cq.reserved == 1
    assert dev.host.command(0, 0x00, cdw10=1)[5] == Status.SUCCESS  # Delete I/O SQ 1
    assert cq.reserved == 0
    assert dev.at(T0 + 505_120) == []
    assert cq.tail == 0


def test_the_json_trace_has_arrival_modelled_and_actual_completion() -> None:
    dev = ocssd20()
    out = io.StringIO()
    dev.host.ctrl.tracer = make_tracer(dev.host.ctrl, out, "json")
    dev.submit(VECTOR_READ, [lba(0, 0, 0)])
    dev.process()
    assert out.getvalue() == ""  # traced when posted
    dev.at(T0 + 505_200)       # the shell woke 80 ns late
    record = json.loads(out.getvalue())
    assert (record["arrival_ns"], record["modelled_ns"], record["completed_ns"]) == \
        (T0, T0 + 505_120, T0 + 505_200)


# -- OCSSD 1.2: 2 channels x 2 LUNs x 12 blocks x 4 pages x 2 planes, two 4096-byte sectors
# per page (PPA = sec | pl << 1 | pg << 2 | blk << 4 | lun << 8 | ch << 9); tRD 500 µs,
# tPROG 1 ms, tBERS 3 ms; no write buffer.
GEOMETRY_12 = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=12, num_pg=4,
                              fpg_sz=8192, trdt=500_000, tprt=1_000_000, tbet=3_000_000)
SINGLE, DUAL = 0, 1


def ppa(ch: int, lun: int, blk: int, pg: int, pl: int = 0, sec: int = 0) -> int:
    return sec | pl << 1 | pg << 2 | blk << 4 | lun << 8 | ch << 9


def ocssd12() -> TimedDevice:
    g = GEOMETRY_12
    ns = Ocssd12Namespace(1, g, memoryview(bytearray(g.plane_blocks)),
                          memoryview(bytearray(g.plane_blocks * 4)),
                          memoryview(bytearray(g.sectors * g.sec_size)),
                          memoryview(bytearray(g.sectors * g.md_size)),
                          timing=model_12(g, buffer_sectors=0))
    return TimedDevice(ns)


def both_planes(pg: int) -> list[int]:
    return [ppa(0, 0, 1, pg, pl, sec) for pl in (0, 1) for sec in (0, 1)]


def test_1_2_multi_plane_program_and_erase_take_one_tprog_and_one_tbers() -> None:
    dev = ocssd12()
    write = dev.submit(VECTOR_WRITE, both_planes(0), DUAL)
    dev.process()
    # 4 sectors cross (20,480 ns), then one tPROG for both planes
    assert dev.at(T0 + 1_020_479) == []
    assert dev.at(T0 + 1_020_480) == [(write, Status.SUCCESS)]
    erase = dev.submit(VECTOR_RESET, [ppa(0, 0, 1, 0)], DUAL)
    dev.process()
    assert dev.at(T0 + 1_020_480 + 3_000_000) == [(erase, Status.SUCCESS)]


def test_1_2_single_plane_erases_of_both_planes_take_two_tbers() -> None:
    dev = ocssd12()
    erase = dev.submit(VECTOR_RESET, [ppa(0, 0, 1, 0, 0), ppa(0, 0, 1, 0, 1)], SINGLE)
    dev.process()
    assert dev.at(T0 + 5_999_999) == []
    assert dev.at(T0 + 6_000_000) == [(erase, Status.SUCCESS)]


def test_1_2_multi_plane_read_senses_both_planes_at_once() -> None:
    dev = ocssd12()
    dev.submit(VECTOR_WRITE, both_planes(0), DUAL)
    dev.process()
    dev.at(T0 + 1_020_480)
    dual = dev.submit(VECTOR_READ, both_planes(0), DUAL)
    dev.process()
    assert dev.at(T0 + 1_020_480 + 520_480) == [(dual, Status.SUCCESS)]  # tRD + 4 sectors
    now = T0 + 1_020_480 + 520_480
    single = dev.submit(VECTOR_READ, both_planes(0), SINGLE)
    dev.process()
    # one tRD + 2 sectors per plane, in turn
    assert dev.at(now + 1_020_479) == []
    assert dev.at(now + 1_020_480) == [(single, Status.SUCCESS)]


def test_held_completions_are_coalesced_like_any_other() -> None:
    """Interrupt Coalescing (THR 1: two entries; TIME 10: 1 ms) over completions held until
    their modelled time: the pair posted together gives one interrupt, a lone one waits for
    the deadline, which counts from its posting, not from its command's arrival."""
    dev = ocssd20()
    seconds = Clock()
    dev.host.ctrl.clock = lambda: seconds.now / 1e9
    assert dev.host.command(0, 0x09, cdw10=0x08, cdw11=0x0A01)[5] == Status.SUCCESS
    dev.host.interrupts.clear()
    dev.submit(VECTOR_READ, [lba(0, 0, 0)])
    dev.submit(VECTOR_READ, [lba(1, 0, 0)])
    assert dev.process() == []
    seconds.now = T0 + 505_120
    assert dev.at(T0 + 505_120) == [(1, Status.SUCCESS), (2, Status.SUCCESS)]
    assert dev.host.interrupts == [1]
    lone = dev.submit(VECTOR_READ, [lba(0, 1, 0)])
    dev.process()
    seconds.now = T0 + 1_010_240
    assert dev.at(T0 + 1_010_240) == [(lone, Status.SUCCESS)]
    assert dev.host.interrupts == [1]
    assert dev.host.ctrl.interrupt_deadline() == pytest.approx((T0 + 2_010_240) / 1e9)
    seconds.now = T0 + 2_010_240
    dev.host.ctrl.expire_interrupts()
    assert dev.host.interrupts == [1, 1]
