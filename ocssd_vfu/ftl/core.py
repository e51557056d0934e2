"""The device-side FTL: a sector-level map over chunked flash, sans I/O.

The shell (a namespace kind, a bench, a test) calls read / write / deallocate /
write_zeroes / flush / shutdown for host commands and background_step when idle;
everything reaches the flash through the Flash interface (ocssd_vfu.ftl.flash).

Crash guarantee: when write, deallocate or write_zeroes returns, its effect is
durable: every sector is programmed or staged in the power-loss-protected write
buffer, every trim is in the journal (or a checkpoint). `recovery.open_ftl` after a crash
at any point rebuilds a map in which each logical block holds the data of its
newest completed write (docs/ftl.md, "Crash guarantee").

GC: background_step reclaims one chunk while fewer than gc_threshold chunks are
free; a host write that needs a new chunk while only min_free_chunks are left runs
GC in the foreground first (ocssd_vfu.ftl.capacity).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ocssd_vfu.ftl import checkpoint
from ocssd_vfu.ftl.capacity import DEFAULT_OP_PERCENT, FtlPlan
from ocssd_vfu.ftl.chunks import ChunkBook, Role
from ocssd_vfu.ftl.flash import Flash
from ocssd_vfu.ftl.gc import GcPolicy, choose_victim
from ocssd_vfu.ftl.mapping import Mapping
from ocssd_vfu.ftl.services import CheckpointState
from ocssd_vfu.ftl.stream import WriteStream
from ocssd_vfu.ftl.trace import MediaOp, OpKind, Purpose
from ocssd_vfu.spec.ftl import UNMAPPED, Counters
from ocssd_vfu.spec.ocssd import ChunkState

COUNTER_NAMES = tuple(sub.name for sub in Counters.subcons)


@dataclass(frozen=True)
class FtlOptions:
    op_percent: int = DEFAULT_OP_PERCENT    # used when formatting; an image keeps its own
    gc_threshold: int | None = None         # free chunks; None: FtlPlan.default_gc_threshold
    gc_policy: GcPolicy = GcPolicy.GREEDY
    checkpoint_interval: int | None = None  # placed sectors; None: a quarter of the capacity


class Ftl:
    def __init__(self, flash: Flash, plan: FtlPlan, options: FtlOptions, book: ChunkBook,
                 superblock_chunk: int) -> None:
        self.flash = flash
        self.layout = flash.layout
        self.plan = plan
        self.options = options
        self.chunks = book
        self.superblock_chunk = superblock_chunk
        self.logical_blocks = plan.logical_blocks
        self.mapping = Mapping(plan.logical_blocks, self.layout.chunks, self.layout.clba)
        self.gc_threshold = (options.gc_threshold if options.gc_threshold is not None
                             else plan.default_gc_threshold())
        self.checkpoint_interval = (options.checkpoint_interval
                                    or max(1, plan.logical_blocks // 4))
        self.seq = 1
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.trace: list[MediaOp] | None = None
        self.checkpoint = CheckpointState()
        self.host = WriteStream(self, Purpose.HOST)
        self.gc = WriteStream(self, Purpose.GC)
        self.collecting = False

    # -- formatting and opening --------------------------------------------------------------
    @classmethod
    def format(cls, flash: Flash, options: FtlOptions | None = None) -> Ftl:
        """Erase every chunk and make an empty FTL: superblock and first checkpoint."""
        options = options or FtlOptions()
        for chunk in range(flash.layout.chunks):
            if flash.chunk_info(chunk).state not in (ChunkState.FREE, ChunkState.OFFLINE):
                flash.reset(chunk)
        book = ChunkBook.from_media(flash)
        plan = FtlPlan(flash.layout, flash.layout.chunks - book.count(Role.OFFLINE),
                       options.op_percent)
        plan.check()
        ftl = cls(flash, plan, options, book, -1)
        ftl.superblock_chunk = checkpoint.write_superblock(ftl)
        checkpoint.write_checkpoint(ftl)
        return ftl

    # -- host commands ------------------------------------------------------------------------
    def read(self, lba: int, count: int) -> bytes:
        """`count` blocks from `lba`; blocks never written or deallocated read zeroes."""
        self._check_range(lba, count)
        size, clba = self.layout.sec_size, self.layout.clba
        forward, programmed = self.mapping.forward, self.chunks.programmed
        out = bytearray(count * size)
        index = 0
        while index < count:
            phys = forward[lba + index]
            if phys == UNMAPPED:
                index += 1
                continue
            buffered = self.host.buffered(phys)
            if buffered is None:
                buffered = self.gc.buffered(phys)
            if buffered is not None:
                out[index * size:(index + 1) * size] = buffered
                index += 1
                continue
            chunk, sector = divmod(phys, clba)
            run = 1
            while (index + run < count and forward[lba + index + run] == phys + run
                   and sector + run < programmed[chunk]):
                run += 1
            data, _ = self.flash.read(chunk, sector, run)
            out[index * size:(index + run) * size] = data
            self.record(OpKind.READ, Purpose.HOST, chunk, sector, run)
            index += run
        return bytes(out)

    def write(self, lba: int, data: bytes | memoryview) -> None:
        """Write whole blocks from `lba`; durable when this returns."""
        size = self.layout.sec_size
        count = len(data) // size
        assert len(data) == count * size, "write of a partial block"
        self._check_range(lba, count)
        view = memoryview(data)
        for index in range(count):
            self.host.place(lba + index, bytes(view[index * size:(index + 1) * size]))
        self._settle()

    def deallocate(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Forget the blocks of each (slba, nlb) range: they read zeroes from now on."""
        ranges = list(ranges)
        for slba, nlb in ranges:
            self._check_range(slba, nlb)
        unmapped = False
        for slba, nlb in ranges:
            unmapped |= self.mapping.unmap_range(slba, nlb)
        if unmapped:
            checkpoint.record_trims(self, [(s, n) for s, n in ranges if n])
        self._settle()

    def write_zeroes(self, lba: int, count: int) -> None:
        """Deallocated blocks read zeroes, so writing zeroes deallocates."""
        self.deallocate([(lba, count)])

    def flush(self) -> None:
        """Program the partial write units (padded); checkpoint if one is due."""
        self.host.pad()
        self.gc.pad()
        if self.checkpoint.placed_since >= self.checkpoint_interval:
            checkpoint.write_checkpoint(self)

    def shutdown(self) -> None:
        """Leave the media clean: partial units programmed, a checkpoint of everything."""
        self.host.pad()
        self.gc.pad()
        checkpoint.write_checkpoint(self)

    def background_step(self) -> bool:
        """One piece of idle-time work; False when there is nothing to do."""
        victim = choose_victim(self.chunks, self.mapping.valid, self.seq, self.options.gc_policy)
        if victim is not None and (self.chunks.role[victim] == Role.RETIRED
                                   or self.chunks.free_count < self.gc_threshold):
            self.collect(victim)
            return True
        if self.checkpoint.placed_since >= self.checkpoint_interval:
            checkpoint.write_checkpoint(self)
            return True
        return False

    # -- services for the streams, GC and checkpoints -----------------------------------------
    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def allocate(self, pu: int, purpose: Purpose) -> int | None:
        """A fresh chunk on `pu` for a stream; a host stream first makes GC keep
        min_free_chunks free."""
        if purpose == Purpose.HOST and not self.collecting:
            self.collect_until(self.plan.min_free_chunks + 1)
            if self.chunks.free_count <= self.plan.min_free_chunks:
                return None
        return self.chunks.take(pu)

    def collect_until(self, free: int) -> None:
        """Foreground GC: reclaim chunks until `free` are free or no victim is left."""
        while self.chunks.free_count < free:
            victim = choose_victim(self.chunks, self.mapping.valid, self.seq,
                                   self.options.gc_policy)
            if victim is None:
                return
            self.collect(victim)

    def collect(self, victim: int) -> None:
        """Move the victim's valid sectors to the GC stream, then erase it (a RETIRED
        victim is only emptied)."""
        self.collecting = True
        try:
            moves = self.mapping.valid_in(victim)
            if moves:
                data, _ = self.flash.read(victim, 0, self.chunks.programmed[victim])
                self.record(OpKind.READ, Purpose.GC, victim, 0, self.chunks.programmed[victim])
                size = self.layout.sec_size
                for sector, lba in moves:
                    self.gc.place(lba, bytes(data[sector * size:(sector + 1) * size]))
                self.gc.sync()
            self.counters["gc_runs"] += 1
            if self.chunks.role[victim] == Role.DATA:
                self.erase(victim)
        finally:
            self.collecting = False

    def erase(self, chunk: int) -> bool:
        if self.flash.reset(chunk):
            self.chunks.erased(chunk)
            self.counters["chunks_erased"] += 1
            self.record(OpKind.RESET, Purpose.GC, chunk, 0, 0)
            return True
        self.chunks.set_role(chunk, Role.OFFLINE)
        self.record(OpKind.RESET_FAILED, Purpose.GC, chunk, 0, 0)
        return False

    def retire(self, chunk: int) -> None:
        self.chunks.set_role(chunk, Role.RETIRED)

    def count_placed(self, purpose: Purpose, count: int) -> None:
        self.checkpoint.placed_since += count
        if purpose == Purpose.HOST:
            self.counters["host_sectors"] += count
        elif purpose == Purpose.PAD:
            self.counters["pad_sectors"] += count
        else:
            self.counters["gc_sectors"] += count

    def count_programmed(self, count: int, meta: bool = False) -> None:
        self.counters["media_sectors"] += count
        if meta:
            self.counters["meta_sectors"] += count

    def record(self, kind: OpKind, purpose: Purpose, chunk: int, sector: int,
               count: int) -> None:
        if self.trace is not None:
            grp, pu, chk = self.layout.position(chunk)
            self.trace.append(MediaOp(kind, purpose, chunk, grp, pu, chk, sector, count))

    # -- internals --------------------------------------------------------------------------
    def _settle(self) -> None:
        """The end of a host command: everything placed is durable."""
        self.host.sync()
        self.gc.sync()
        if self.checkpoint.placed_since >= 2 * self.checkpoint_interval:
            checkpoint.write_checkpoint(self)

    def _check_range(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self.logical_blocks:
            raise ValueError(f"blocks {lba}+{count} outside 0..{self.logical_blocks}")
