"""The 1.2 block table: per block of each plane, its bad-block value and how many
of its pages are programmed (ocssd-spec §3.3, §3.4).

Both live in the image (the bad-block bytes in table order, a 4-byte record per
plane block) and are updated in place, with a Python copy for the per-command
checks. Rules:
- A page is programmed whole (all its sectors in one command) and only as the
  next page of its plane block; it reads back until the block is erased.
  Pages at or above the programmed count are erased: reads get Empty Page.
- Erase sets the count to 0 and adds one to the erase count.
- What each bad-block value allows is the table of block_states.py.
- A failed program (an injected one) leaves the page erased; the block's later
  programs fail, and its next erase fails and marks it grown bad (the 2.0
  device's early close and failing reset: pblk recovers the data below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.ocssd12.block_states import UNUSABLE, after_failed_erase
from ocssd_vfu.spec.ocssd12 import BLOCK_RECORD_FORMAT, BLOCK_RECORD_SIZE, BlockValue

MAX_ERASES = 0xFFFF
VALUES = frozenset(int(value) for value in BlockValue)


@dataclass
class BlockTable:
    bbt: memoryview          # one byte per plane block
    records: memoryview      # BLOCK_RECORD_SIZE bytes per plane block
    geometry: Ocssd12Geometry
    pages: list[int] = field(init=False)
    erases: list[int] = field(init=False)

    def __post_init__(self) -> None:
        rows = list(BLOCK_RECORD_FORMAT.iter_unpack(self.records))
        self.pages = [pages for pages, _ in rows]
        self.erases = [erases for _, erases in rows]

    def value(self, plane_block: int) -> int:
        return self.bbt[plane_block]

    def unusable(self, plane_block: int) -> bool:
        return bool(self.bbt[plane_block] & UNUSABLE)

    def store(self, plane_block: int) -> None:
        BLOCK_RECORD_FORMAT.pack_into(self.records, plane_block * BLOCK_RECORD_SIZE,
                                      self.pages[plane_block], self.erases[plane_block])

    def programmed(self, plane_block: int, page: int) -> None:
        """`page` now holds data (already in the image): count it."""
        self.pages[plane_block] = max(self.pages[plane_block], page + 1)
        self.store(plane_block)

    def erase(self, plane_block: int) -> None:
        self.pages[plane_block] = 0
        self.erases[plane_block] = min(self.erases[plane_block] + 1, MAX_ERASES)
        self.store(plane_block)

    def mark(self, plane_block: int, value: int) -> None:
        self.bbt[plane_block] = value

    def erase_failed(self, plane_block: int) -> None:
        """The block is retired (block_states.py)."""
        self.bbt[plane_block] = after_failed_erase(self.bbt[plane_block])

    def lun_table(self, lun_index: int) -> bytes:
        """The bad-block bytes of one LUN (block-major, then plane)."""
        size = self.geometry.num_blk * self.geometry.num_pln
        return bytes(self.bbt[lun_index * size:(lun_index + 1) * size])
