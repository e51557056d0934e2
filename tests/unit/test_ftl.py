"""The device-side FTL on MemoryFlash: capacity, mapping, striping, the write buffer,
deallocate, GC victims and moves, program and reset failures, figures.

Layout unless a test says otherwise: 2 groups x 2 PUs x 16 chunks x 32 sectors of
4096 + 16 bytes, ws_min 4; op_percent 20. Chunk c is on PU c // 16 (PU = group * 2 +
pu), so PU 0 holds chunks 0-15, PU 1 (group 0, pu 1) 16-31, PU 2 (group 1, pu 0)
32-47, PU 3 48-63; units stripe over PUs 0, 2, 1, 3 (groups fastest). Physical
sector = chunk * 32 + sector.

Format: the superblock takes chunk 0 (the first), the checkpoint the least-worn
free chunk of any PU, chunk 1; the host stream then opens chunks 2, 32, 16, 48.
Capacity: 64 usable - 3 reserved = 61 data chunks; 61 * 32 * 80 / 100 = 1561 blocks.
Hand-worked expectations are literals.
"""

from __future__ import annotations

from ocssd_vfu.ftl.capacity import FtlPlan
from ocssd_vfu.ftl.chunks import ChunkBook, Role
from ocssd_vfu.ftl.core import Ftl, FtlOptions
from ocssd_vfu.ftl.flash import FlashLayout
from ocssd_vfu.ftl.gc import GcPolicy, choose_victim
from ocssd_vfu.ftl.memory_flash import MemoryFaults, MemoryFlash
from ocssd_vfu.ftl.recovery import open_ftl
from ocssd_vfu.ftl.stats import collect, write_amplification
from ocssd_vfu.ftl.trace import MediaOp, OpKind, Purpose
from ocssd_vfu.spec.ftl import UNMAPPED
from ocssd_vfu.spec.ocssd import ChunkState

LAYOUT = FlashLayout(num_grp=2, num_pu=2, num_chk=16, clba=32, ws_min=4, ws_opt=8,
                     sec_size=4096, oob_size=16)
OPTIONS = FtlOptions(op_percent=20)
ZERO = bytes(4096)


def block(n: int) -> bytes:
    """A recognisable block: byte n % 251 + 1, never zero."""
    return bytes([n % 251 + 1]) * 4096


def blocks(first: int, count: int) -> bytes:
    return b"".join(block(n) for n in range(first, first + count))


def fresh(faults: MemoryFaults | None = None) -> tuple[MemoryFlash, Ftl]:
    flash = MemoryFlash(LAYOUT, faults)
    return flash, Ftl.format(flash, OPTIONS)


def op(kind: OpKind, purpose: Purpose, chunk: int, sector: int, count: int) -> MediaOp:
    grp, pu, chk = LAYOUT.position(chunk)
    return MediaOp(kind, purpose, chunk, grp, pu, chk, sector, count)


# -- capacity ------------------------------------------------------------------------------------
def test_capacity_of_the_test_layout() -> None:
    _, ftl = fresh()
    assert (ftl.plan.checkpoint_chunks, ftl.plan.reserved_chunks, ftl.plan.data_chunks,
            ftl.logical_blocks) == (1, 3, 61, 1561)


def test_capacity_of_the_default_images() -> None:
    # 2.0 default (2 x 8 x 60 x 4096): map 3840 sectors + records 4 + header = 1 chunk;
    # 960 - 3 = 957 data chunks; 957 * 4096 * 93 / 100 = 3645480.96.
    plan20 = FtlPlan(FlashLayout(2, 8, 60, 4096, 4, 8, 4096, 16), 960, 7)
    assert (plan20.checkpoint_chunks, plan20.logical_blocks) == (1, 3645480)
    # 1.2 default (8 x 4 x 32 blocks of 128 pages x 2 planes x 4 sectors): 1029 + 32
    # sectors need 2 chunks of 1024; 1024 - 5 = 1019; 1019 * 1024 * 93 / 100 = 970414.08.
    plan12 = FtlPlan(FlashLayout(8, 4, 32, 1024, 8, 8, 4096, 16), 1024, 7)
    assert (plan12.checkpoint_chunks, plan12.logical_blocks) == (2, 970414)


def test_offline_chunks_are_not_usable_media() -> None:
    flash = MemoryFlash(LAYOUT)
    flash.set_offline(5)
    ftl = Ftl.format(flash, OPTIONS)
    assert ftl.logical_blocks == 1536     # (63 - 3) * 32 * 80 / 100
    assert ftl.chunks.role[5] == Role.OFFLINE


def test_too_little_over_provisioning_is_refused() -> None:
    # op 10: 61 * 32 * 0.9 = 1756 blocks = 55 chunks, 6 spare; GC needs 2 * 4 + 2 + 1 = 11.
    try:
        Ftl.format(MemoryFlash(LAYOUT), FtlOptions(op_percent=10))
    except ValueError as exc:
        assert "leaves 6 spare chunks; GC needs 11" in str(exc)
    else:
        raise AssertionError("op_percent=10 was accepted")


# -- mapping, striping, the write buffer ---------------------------------------------------------
def test_writes_stripe_units_over_groups_then_pus() -> None:
    _, ftl = fresh()
    ftl.trace = []
    ftl.write(0, blocks(0, 16))
    assert ftl.trace == [op(OpKind.PROGRAM, Purpose.HOST, 2, 0, 4),
                         op(OpKind.PROGRAM, Purpose.HOST, 32, 0, 4),
                         op(OpKind.PROGRAM, Purpose.HOST, 16, 0, 4),
                         op(OpKind.PROGRAM, Purpose.HOST, 48, 0, 4)]
    assert [ftl.mapping.lookup(lba) for lba in (0, 3, 4, 8, 12, 15)] == \
        [64, 67, 1024, 512, 1536, 1539]
    ftl.write(16, blocks(16, 4))
    assert ftl.mapping.lookup(16) == 68     # back on PU 0, chunk 2 sector 4
    assert ftl.read(0, 20) == blocks(0, 20)


def test_a_partial_unit_is_staged_and_read_from_the_buffer() -> None:
    flash, ftl = fresh()
    ftl.trace = []
    ftl.write(100, block(1))
    assert ftl.trace == [op(OpKind.STAGE, Purpose.HOST, 2, 0, 1)]
    assert flash.wp[2] == 0
    assert bytes(flash.data[64 * 4096:65 * 4096]) == block(1)   # durable, not programmed
    assert ftl.read(100, 1) == block(1)
    ftl.trace = []
    ftl.write(101, blocks(2, 3))
    assert ftl.trace == [op(OpKind.PROGRAM, Purpose.HOST, 2, 0, 4)]
    assert flash.wp[2] == 4


def test_flush_pads_the_partial_unit() -> None:
    flash, ftl = fresh()
    ftl.write(7, block(7))
    ftl.trace = []
    ftl.flush()
    assert ftl.trace == [op(OpKind.PROGRAM, Purpose.PAD, 2, 0, 4)]
    assert (flash.wp[2], collect(ftl).pad_sectors) == (4, 3)
    assert ftl.read(7, 1) == block(7)


def test_an_overwrite_moves_the_mapping() -> None:
    _, ftl = fresh()
    ftl.write(5, block(1))
    ftl.write(5, block(2))
    assert ftl.mapping.lookup(5) == 65
    assert ftl.mapping.holds(64) == UNMAPPED
    assert (ftl.mapping.valid[2], ftl.mapping.mapped) == (1, 1)
    assert ftl.read(5, 1) == block(2)


def test_unwritten_and_deallocated_blocks_read_zeroes() -> None:
    _, ftl = fresh()
    assert ftl.read(1000, 2) == ZERO * 2
    ftl.write(0, blocks(0, 8))
    ftl.trace = []
    ftl.deallocate([(2, 3)])
    assert ftl.trace == [op(OpKind.PROGRAM, Purpose.JOURNAL, 1, 4, 4)]  # after the body
    assert ftl.read(0, 8) == blocks(0, 2) + ZERO * 3 + blocks(5, 3)
    assert (ftl.mapping.mapped, ftl.mapping.valid[2], ftl.mapping.valid[32]) == (5, 2, 3)
    ftl.write_zeroes(5, 1)
    assert ftl.read(5, 1) == ZERO


def test_deallocating_nothing_mapped_writes_no_journal() -> None:
    _, ftl = fresh()
    ftl.trace = []
    ftl.deallocate([(0, 1561)])
    assert ftl.trace == []


# -- GC ------------------------------------------------------------------------------------------
def victims_book() -> tuple[ChunkBook, list[int]]:
    book = ChunkBook(LAYOUT)
    valid = [0] * LAYOUT.chunks
    for chunk, role, count, newest in ((10, Role.DATA, 8, 900), (11, Role.DATA, 16, 100),
                                       (12, Role.DATA, 32, 50), (13, Role.OPEN, 0, 990),
                                       (14, Role.DATA, 8, 950)):
        book.set_role(chunk, role)
        valid[chunk], book.newest_seq[chunk] = count, newest
    return book, valid


def test_greedy_takes_the_fewest_valid_sectors() -> None:
    book, valid = victims_book()
    # 10 and 14 both hold 8: the lower index; 12 is full, 13 open.
    assert choose_victim(book, valid, 1000, GcPolicy.GREEDY) == 10


def test_cost_benefit_weighs_age() -> None:
    book, valid = victims_book()
    # (32 - v) * age / (32 + v): 10: 24 * 100 / 40 = 60; 11: 16 * 900 / 48 = 300;
    # 14: 24 * 50 / 40 = 30.
    assert choose_victim(book, valid, 1000, GcPolicy.COST_BENEFIT) == 11


def test_a_retired_chunk_with_data_goes_first() -> None:
    book, valid = victims_book()
    book.set_role(20, Role.RETIRED)
    valid[20] = 31
    assert choose_victim(book, valid, 1000, GcPolicy.GREEDY) == 20
    assert choose_victim(book, valid, 1000, GcPolicy.COST_BENEFIT) == 20


def fill_chunk_2_then_overwrite(ftl: Ftl) -> None:
    """Chunk 2 (PU 0) takes units 0, 4, 8, ...: blocks 0-3, 16-19, ..., 112-115; then
    blocks 0-3 and 16-19 are written again elsewhere, so chunk 2 has 24 valid."""
    ftl.write(0, blocks(0, 128))
    ftl.write(0, blocks(1000, 4))
    ftl.write(16, blocks(1016, 4))


def test_gc_moves_valid_data_to_its_own_stream_and_erases() -> None:
    flash, ftl = fresh()
    fill_chunk_2_then_overwrite(ftl)
    assert (ftl.chunks.role[2], ftl.mapping.valid[2]) == (Role.DATA, 24)
    assert ftl.host.open == {0: 3, 2: 33}     # chunks 2, 32, 16, 48 are full
    ftl.trace = []
    ftl.collect(2)
    # 24 sectors = 6 units: GC opens chunks 4 (PU 0), 34 (PU 2), 17 (PU 1), 49 (PU 3).
    assert ftl.trace[0] == op(OpKind.READ, Purpose.GC, 2, 0, 32)
    assert ftl.trace[1:7] == [op(OpKind.PROGRAM, Purpose.GC, c, s, 4)
                              for c, s in ((4, 0), (34, 0), (17, 0), (49, 0), (4, 4), (34, 4))]
    assert ftl.trace[7] == op(OpKind.RESET, Purpose.GC, 2, 0, 0)
    assert ftl.gc.open == {0: 4, 2: 34, 1: 17, 3: 49}
    assert ftl.mapping.lookup(32) == 128 and ftl.mapping.lookup(48) == 1088
    assert (flash.state[2], flash.wear[2], ftl.chunks.role[2]) == (ChunkState.FREE, 1, Role.FREE)
    s = collect(ftl)
    assert (s.gc_runs, s.chunks_erased, s.gc_sectors) == (1, 1, 24)
    assert ftl.read(0, 128) == blocks(1000, 4) + blocks(4, 12) + blocks(1016, 4) + \
        blocks(20, 108)


def test_allocation_takes_the_least_worn_free_chunk() -> None:
    flash, ftl = fresh()
    for chunk in range(2, 6):
        flash.wear[chunk] = ftl.chunks.wear[chunk] = 5 - chunk    # 3, 2, 1, 0
    assert ftl.chunks.take(0) == 5


def test_background_gc_runs_below_the_threshold_only() -> None:
    flash = MemoryFlash(LAYOUT)
    ftl = Ftl.format(flash, FtlOptions(op_percent=20, gc_threshold=10))
    fill_chunk_2_then_overwrite(ftl)
    # 64 - superblock - checkpoint - 4 full - 2 open = 56 free: nothing to do
    assert ftl.chunks.free_count == 56
    assert not ftl.background_step()
    ftl.gc_threshold = 57
    assert ftl.background_step()
    assert collect(ftl).gc_runs == 1


def test_foreground_gc_keeps_writes_going_past_the_capacity() -> None:
    _, ftl = fresh()
    for round_ in range(4):    # 4 x 1561 blocks into 61 data chunks of 32
        ftl.write(0, blocks(round_ * 7, 1561))
    s = collect(ftl)
    assert s.gc_runs > 0 and s.free_chunks >= ftl.plan.min_free_chunks
    assert ftl.read(0, 1561) == blocks(21, 1561)


# -- failures ------------------------------------------------------------------------------------
def test_a_program_failure_retires_the_chunk_and_rewrites_the_unit() -> None:
    flash, ftl = fresh(MemoryFaults(write_fail={(2, 4): 100}))
    ftl.write(0, blocks(0, 16))
    ftl.trace = []
    ftl.write(16, blocks(16, 4))       # PU 0's second unit: chunk 2 sectors 4-7 fail
    assert ftl.trace == [op(OpKind.PROGRAM_FAILED, Purpose.HOST, 2, 4, 4),
                         op(OpKind.PROGRAM, Purpose.HOST, 32, 4, 4)]
    assert ftl.chunks.role[2] == Role.RETIRED and flash.state[2] == ChunkState.CLOSED
    assert ftl.mapping.lookup(16) == 1028
    assert ftl.read(0, 20) == blocks(0, 20)
    # Idle time empties the retired chunk; it is not erased.
    assert ftl.background_step()
    assert (ftl.mapping.valid[2], flash.wear[2], ftl.chunks.role[2]) == (0, 0, Role.RETIRED)
    assert ftl.read(0, 20) == blocks(0, 20)
    assert open_ftl(flash).chunks.role[2] == Role.RETIRED


def test_a_reset_failure_takes_the_chunk_offline() -> None:
    flash, ftl = fresh(MemoryFaults(reset_fail={2: 100}))
    fill_chunk_2_then_overwrite(ftl)
    ftl.collect(2)
    assert (flash.state[2], ftl.chunks.role[2]) == (ChunkState.OFFLINE, Role.OFFLINE)
    assert collect(ftl).offline_chunks == 1


# -- figures -------------------------------------------------------------------------------------
def test_write_amplification_arithmetic() -> None:
    assert write_amplification(0, 8) == 0.0
    assert write_amplification(1000, 1250) == 1.25


def test_counters_after_format_and_a_write() -> None:
    _, ftl = fresh()
    # format: superblock unit (4) and the checkpoint (header, 2 map, 1 record sector)
    ftl.write(0, blocks(0, 16))
    s = collect(ftl)
    assert (s.host_sectors, s.media_sectors, s.meta_sectors, s.mapped_blocks) == (16, 24, 8, 16)
    assert s.waf == 1.5
    # data chunks 2, 32, 16, 48 with 4 valid of 32: the (0, 10 %] ... bucket 2 (12.5 %)
    assert s.valid_histogram == (0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0)
