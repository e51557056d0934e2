"""How the FTL divides the media: reserved chunks, logical capacity, GC limits.

    usable      = chunks not OFFLINE when the image is formatted
    map_sectors = ceil(usable * clba * 4 / sec_size)       (a u32 per block, at most)
    body        = 1 + map_sectors + ceil(chunks * 16 / sec_size)   (header, map, chunk records)
    checkpoint_chunks = ceil((body + JOURNAL_UNITS * ws_min) / clba)
    reserved    = 1 + 2 * checkpoint_chunks      (superblock; a checkpoint and the next)
    data_chunks = usable - reserved
    logical_blocks = floor(data_chunks * clba * (100 - op_percent) / 100)

The over-provisioning left (data_chunks * clba - logical_blocks sectors) must hold at
least `min_spare_chunks` whole chunks: an open chunk per PU for each of the two write
streams, the chunks a checkpoint is written to, and one more so GC always has a victim
with an invalid sector; a smaller op_percent is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocssd_vfu.ftl.flash import FlashLayout
from ocssd_vfu.spec.ftl import (
    CHUNK_RECORD_SIZE,
    MAX_LOGICAL_BLOCKS,
    SECTOR_OOB_SIZE,
)

DEFAULT_OP_PERCENT = 7
JOURNAL_UNITS = 4         # trim records a checkpoint's chunks hold at least
MAP_ENTRY_SIZE = 4


class CapacityError(ValueError):
    """The media cannot hold an FTL with these options; the message says why."""


def ceil_div(value: int, unit: int) -> int:
    return -(-value // unit)


@dataclass(frozen=True)
class FtlPlan:
    layout: FlashLayout
    usable_chunks: int
    op_percent: int

    @property
    def map_sectors(self) -> int:
        return ceil_div(self.usable_chunks * self.layout.clba * MAP_ENTRY_SIZE,
                        self.layout.sec_size)

    @property
    def record_sectors(self) -> int:
        return ceil_div(self.layout.chunks * CHUNK_RECORD_SIZE, self.layout.sec_size)

    @property
    def body_sectors(self) -> int:
        return 1 + self.map_sectors + self.record_sectors

    @property
    def checkpoint_chunks(self) -> int:
        g = self.layout
        return ceil_div(self.body_sectors + JOURNAL_UNITS * g.ws_min, g.clba)

    @property
    def reserved_chunks(self) -> int:
        return 1 + 2 * self.checkpoint_chunks

    @property
    def data_chunks(self) -> int:
        return self.usable_chunks - self.reserved_chunks

    @property
    def logical_blocks(self) -> int:
        return self.data_chunks * self.layout.clba * (100 - self.op_percent) // 100

    @property
    def spare_chunks(self) -> int:
        """Whole chunks of over-provisioning."""
        return self.data_chunks - ceil_div(self.logical_blocks, self.layout.clba)

    @property
    def min_free_chunks(self) -> int:
        """Free chunks the host stream leaves to GC and checkpoints (foreground GC
        runs when opening a host chunk would go below)."""
        return self.checkpoint_chunks + 1

    @property
    def min_spare_chunks(self) -> int:
        return 2 * self.layout.parallel_units + self.min_free_chunks + 1

    def default_gc_threshold(self) -> int:
        """Background GC keeps this many chunks free: the foreground limit plus a chunk
        per PU, or 5 % of the data chunks if that is more."""
        return max(self.min_free_chunks + self.layout.parallel_units,
                   self.data_chunks * 5 // 100)

    def check(self) -> None:
        g = self.layout
        if g.oob_size < SECTOR_OOB_SIZE:
            raise CapacityError(f"OOB of {g.oob_size} bytes per sector: the FTL needs "
                                f"{SECTOR_OOB_SIZE} (logical block, sequence, CRC)")
        if g.clba % g.ws_min:
            raise CapacityError(f"ws_min={g.ws_min} does not divide a chunk's {g.clba} sectors")
        if not 0 <= self.op_percent < 100:
            raise CapacityError(f"op_percent={self.op_percent}: must be 0..99")
        if g.sectors > MAX_LOGICAL_BLOCKS:
            raise CapacityError(f"{g.sectors} sectors: the map holds at most "
                                f"{MAX_LOGICAL_BLOCKS}")
        if self.data_chunks <= 0 or self.logical_blocks == 0:
            raise CapacityError(f"{self.usable_chunks} usable chunks: the FTL reserves "
                                f"{self.reserved_chunks} and needs data chunks beyond them")
        if self.spare_chunks < self.min_spare_chunks:
            raise CapacityError(
                f"op_percent={self.op_percent} leaves {self.spare_chunks} spare chunks; "
                f"GC needs {self.min_spare_chunks} (2 per PU, {self.min_free_chunks} "
                "for checkpoints and GC, 1 more): raise --op-percent")
