"""Opening an FTL after a clean shutdown or a crash: superblock, checkpoints (whole,
torn, none), the scan of what came after, trims, and power cuts at random points.

A "crash" drops the Ftl object and opens a new one on the same MemoryFlash (which
keeps whatever reached it, as an image keeps what reached its mmap). Layouts and
the expected placements are those of test_ftl.py.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ocssd_vfu.ftl.core import Ftl, FtlOptions
from ocssd_vfu.ftl.flash import FlashLayout
from ocssd_vfu.ftl.gc import GcPolicy
from ocssd_vfu.ftl.memory_flash import MemoryFaults, MemoryFlash, PowerCut
from ocssd_vfu.ftl.recovery import (
    Contents,
    NotFormatted,
    contents,
    find_superblock,
    open_ftl,
)
from ocssd_vfu.ftl.stats import collect
from tests.unit.test_ftl import (
    LAYOUT,
    OPTIONS,
    ZERO,
    block,
    blocks,
    fill_chunk_2_then_overwrite,
    fresh,
)

# Sectors of 512 bytes make the checkpoint longer than a unit: header, 12 map sectors
# (1416 blocks x 4 bytes), 2 record sectors = 15 sectors in 4 units over 2 chunks
# (op_percent 25: 59 data chunks x 32 x 75 / 100 = 1416 blocks).
SMALL_SECTORS = FlashLayout(num_grp=2, num_pu=2, num_chk=16, clba=32, ws_min=4, ws_opt=8,
                            sec_size=512, oob_size=16)


def crash(flash: MemoryFlash) -> Ftl:
    return open_ftl(flash, OPTIONS)


def test_the_superblock_says_what_the_flash_holds() -> None:
    flash = MemoryFlash(LAYOUT)
    assert find_superblock(flash) is None
    with pytest.raises(NotFormatted, match="no FTL superblock"):
        open_ftl(flash)
    Ftl.format(flash, OPTIONS)
    chunk, superblock = find_superblock(flash)
    assert (chunk, superblock.op_percent, superblock.logical_blocks,
            superblock.checkpoint_chunks) == (0, 20, 1561, 1)


def test_what_the_flash_holds() -> None:
    flash = MemoryFlash(LAYOUT)
    flash.set_offline(0)
    assert contents(flash) == Contents.EMPTY
    foreign = bytes(4096 * 4)
    flash.write(3, foreign, bytes(64))
    assert contents(flash) == Contents.OTHER
    smeta = bytes(4) + bytes.fromhex("6b6c6270") + bytes(4088)   # crc, PBLK_MAGIC "pblk"
    flash.write(40, smeta + bytes(4096 * 3), bytes(64))
    assert contents(flash) == Contents.PBLK
    Ftl.format(flash, OPTIONS)
    assert contents(flash) == Contents.FTL


def test_recovery_from_the_format_checkpoint_and_the_oob() -> None:
    flash, ftl = fresh()
    ftl.write(0, blocks(0, 16))
    ftl.write(3, block(99))            # staged only, in chunk 2's second unit
    ftl.deallocate([(8, 2)])           # journal record after the checkpoint
    recovered = crash(flash)
    assert recovered.checkpoint.seq == 5        # the one format wrote
    assert recovered.read(0, 16) == blocks(0, 3) + block(99) + blocks(4, 4) + ZERO * 2 + \
        blocks(10, 6)
    assert recovered.mapping.mapped == 14
    # Sequence numbers: format used 1-5, the writes 6-22, the journal record 23 and
    # its unit's padding 24-26; the recovery pads chunk 2's staged unit with 27-29.
    assert (ftl.seq, recovered.seq) == (27, 30)


def test_recovery_programs_the_staged_unit_in_place() -> None:
    flash, ftl = fresh()
    ftl.write(0, blocks(0, 6))         # chunk 2: one unit; chunk 32: 2 staged sectors
    assert (flash.wp[32], ftl.mapping.lookup(5)) == (0, 1025)
    recovered = crash(flash)
    assert flash.wp[32] == 4           # padded and programmed where it was staged
    assert recovered.mapping.lookup(5) == 1025
    assert recovered.read(0, 6) == blocks(0, 6)


def test_recovery_after_shutdown_and_later_writes() -> None:
    flash, ftl = fresh()
    ftl.write(0, blocks(0, 64))
    ftl.shutdown()
    checkpoint_seq = ftl.checkpoint.seq
    ftl.write(10, blocks(500, 20))
    ftl.deallocate([(40, 4)])
    recovered = crash(flash)
    assert recovered.checkpoint.seq == checkpoint_seq
    assert recovered.read(0, 64) == blocks(0, 10) + blocks(500, 20) + blocks(30, 10) + \
        ZERO * 4 + blocks(44, 20)
    assert collect(recovered).host_sectors == 64   # counters as of the checkpoint


def test_a_torn_checkpoint_falls_back_to_the_previous_one() -> None:
    flash = MemoryFlash(SMALL_SECTORS)
    ftl = Ftl.format(flash, FtlOptions(op_percent=25))
    assert (ftl.logical_blocks, ftl.plan.checkpoint_chunks, ftl.checkpoint.seq) == (1416, 2, 5)
    data = bytes(range(256)) * 2 * 40
    ftl.write(100, data)
    flash.power_budget = 2             # units 1 and 2 of the next checkpoint land, 3 tears
    with pytest.raises(PowerCut):
        ftl.shutdown()
    recovered = crash(flash)
    assert recovered.checkpoint.seq == 5
    assert recovered.read(100, 40) == data


def test_without_a_readable_checkpoint_a_full_scan_rebuilds_the_map() -> None:
    flash, ftl = fresh()
    ftl.write(0, blocks(0, 40))
    ftl.shutdown()
    ftl.write(0, blocks(200, 4))
    for chunk in ftl.checkpoint.chunks:   # the map sector of the checkpoint goes bad
        flash.data[(chunk * 32 + 1) * 4096] ^= 0xFF
    recovered = crash(flash)
    assert recovered.checkpoint.seq == 0
    assert recovered.read(0, 40) == blocks(200, 4) + blocks(4, 36)


def test_a_trim_survives_the_erase_of_the_data_it_removed() -> None:
    flash, ftl = fresh()
    ftl.write(0, blocks(0, 128))       # chunks 2, 32, 16, 48 full
    ftl.deallocate([(0, 128)])
    ftl.collect(2)                     # nothing valid: erased at once
    ftl.write(500, block(1))           # PU 0 opens chunk 3: chunk 2 is more worn now
    recovered = crash(flash)
    assert recovered.read(0, 128) == ZERO * 128
    assert recovered.read(500, 1) == block(1)


def test_a_failed_program_of_staged_sectors_keeps_them() -> None:
    # Chunk 2's first unit holds 2 staged sectors when its program fails; the crash
    # comes before anything else: recovery moves them out of the closed chunk.
    flash, ftl = fresh(MemoryFaults(write_fail={(2, 0): 100}))
    ftl.write(0, blocks(0, 2))
    flash.power_budget = 1             # the failed program, then the relocation's tears
    with pytest.raises(PowerCut):
        ftl.write(2, blocks(2, 2))
    recovered = crash(flash)
    assert recovered.read(0, 2) == blocks(0, 2)


@pytest.mark.parametrize("budget", range(12))
def test_a_power_cut_anywhere_in_gc_loses_nothing(budget: int) -> None:
    # Chunk 2 keeps 22 valid sectors (test_ftl's fill, and blocks 32-33 written again):
    # GC programs 5 units, stages 2 sectors, erases chunk 2; a host write follows.
    flash, ftl = fresh()
    fill_chunk_2_then_overwrite(ftl)
    ftl.write(32, blocks(2032, 2))
    flash.power_budget = budget
    with contextlib.suppress(PowerCut):
        ftl.collect(2)
        ftl.write(900, block(5))
    flash.power_budget = None
    recovered = crash(flash)
    assert recovered.read(0, 128) == blocks(1000, 4) + blocks(4, 12) + blocks(1016, 4) + \
        blocks(20, 12) + blocks(2032, 2) + blocks(34, 94)
    assert recovered.read(900, 1) in (ZERO, block(5))


# -- power cuts at random points ---------------------------------------------------------------
Write = tuple[str, int, int, int]
operations = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 63), st.integers(1, 9), st.integers(0, 250)),
    st.tuples(st.just("trim"), st.integers(0, 63), st.integers(1, 9), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("idle"), st.just(0), st.just(0), st.just(0)),
), min_size=1, max_size=120)


def run(ftl: Ftl, acked: dict[int, bytes], ops: list[Write],
        inflight: dict[int, bytes]) -> None:
    """Apply `ops`, recording each one's effect in `acked` once it returns."""
    for name, lba, count, fill in ops:
        lba = lba * 7 % (ftl.logical_blocks - count)
        if name == "write":
            data = [bytes([fill + 1]) * 4096 for _ in range(count)]
            inflight.update(zip(range(lba, lba + count), data, strict=True))
            ftl.write(lba, b"".join(data))
        elif name == "trim":
            inflight.update(dict.fromkeys(range(lba, lba + count), ZERO))
            ftl.deallocate([(lba, count)])
        elif name == "flush":
            ftl.flush()
        else:
            ftl.background_step()
        acked.update(inflight)
        inflight.clear()


def check(ftl: Ftl, acked: dict[int, bytes], inflight: dict[int, bytes]) -> None:
    for lba in range(ftl.logical_blocks):
        got = ftl.read(lba, 1)
        allowed = {acked.get(lba, ZERO), inflight.get(lba, acked.get(lba, ZERO))}
        assert got in allowed, f"block {lba}: {got[:1]!r} not in {[a[:1] for a in allowed]}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A program failure while few chunks were free: placing the unit again ran GC, which
# took the just-retired chunk's unprogrammed sectors for valid data.
@example(churn=241, warmup=[("flush", 0, 0, 0)], ops=[("flush", 0, 0, 0)], cut=0,
         fails={(63, 0)}, reset_fails=set(), policy=GcPolicy.GREEDY, seed=117)
@given(churn=st.integers(0, 500), warmup=operations, ops=operations, cut=st.integers(0, 400),
       fails=st.sets(st.tuples(st.integers(0, 63), st.integers(0, 31)), max_size=3),
       reset_fails=st.sets(st.integers(0, 63), max_size=2),
       policy=st.sampled_from(GcPolicy), seed=st.integers(0, 1000))
def test_every_completed_write_survives_a_power_cut(churn: int, warmup: list[Write],
                                                    ops: list[Write], cut: int,
                                                    fails: set[tuple[int, int]],
                                                    reset_fails: set[int], policy: GcPolicy,
                                                    seed: int) -> None:
    faults = MemoryFaults(write_fail=dict.fromkeys(fails, 50),
                          reset_fail=dict.fromkeys(reset_fails, 50))
    flash = MemoryFlash(LAYOUT, faults)
    flash.rng.seed(seed)
    ftl = Ftl.format(flash, FtlOptions(op_percent=20, gc_threshold=8, gc_policy=policy,
                                       checkpoint_interval=300))
    acked: dict[int, bytes] = {}
    inflight: dict[int, bytes] = {}
    # Churn (up to 4000 blocks over 400) so that GC, checkpoints and the journal all run.
    run(ftl, acked, [("write", n * 37 % 57, 8, n % 250) for n in range(churn)], inflight)
    run(ftl, acked, warmup, inflight)
    flash.power_budget = cut
    try:
        run(ftl, acked, ops * 4, inflight)
        flash.power_budget = None
        crashed = False
    except PowerCut:
        crashed = True
    recovered = open_ftl(flash)
    check(recovered, acked, inflight if crashed else {})
    # The recovered FTL goes on working, and opens again.
    acked.update({lba: (recovered.read(lba, 1)) for lba in inflight})
    inflight.clear()
    run(recovered, acked, ops, inflight)
    check(open_ftl(flash), acked, {})
