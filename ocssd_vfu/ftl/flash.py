"""The flash the FTL runs on: a small interface over chunks of sectors with OOB.

A chunk is the unit of erase: an OCSSD 2.0 chunk, or an OCSSD 1.2 block on all its
planes (the order Linux and the 1.2 image keep a block's sectors in). Chunks are
numbered in chunk-log order: ((group * num_pu) + pu) * num_chk + chk.

Rules the FTL relies on (MemoryFlash checks them):
- `write` programs whole write units (a multiple of ws_min sectors) at the chunk's
  write pointer. True: programmed and durable, the WP moved, the chunk is OPEN or,
  when full, CLOSED. False: a program failure; the chunk takes no more writes
  (OCSSD 2.0 closes it at the old WP), its sectors below the WP still read.
- `stage` keeps less than a write unit at the WP durable without programming it:
  the device's power-loss-protected write buffer. On an image it is the sectors'
  own place beyond the WP, which no Open-Channel read reaches; a later `write` of
  the unit programs the same bytes there again. It never changes the WP or state.
- `read` returns sectors below the WP, and up to one write unit beyond it (what
  `stage` left there, or stale bytes of an earlier life of the chunk, or zeroes).
- `reset` erases: True, the chunk is FREE with WP 0 and its wear one higher;
  False, the chunk is OFFLINE for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ocssd_vfu.spec.ocssd import ChunkState


@dataclass(frozen=True)
class FlashLayout:
    """The geometry the FTL needs (OCSSD 2.0 names; 1.2: group = channel, PU = LUN,
    chunk = block, clba = pages x planes x sectors per page, ws_min = one page on
    every plane)."""

    num_grp: int
    num_pu: int
    num_chk: int
    clba: int
    ws_min: int
    ws_opt: int
    sec_size: int
    oob_size: int

    @property
    def chunks(self) -> int:
        return self.num_grp * self.num_pu * self.num_chk

    @property
    def parallel_units(self) -> int:
        return self.num_grp * self.num_pu

    @property
    def sectors(self) -> int:
        return self.chunks * self.clba

    def parallel_unit(self, chunk: int) -> int:
        """The PU of `chunk`, numbered group * num_pu + pu."""
        return chunk // self.num_chk

    def position(self, chunk: int) -> tuple[int, int, int]:
        """(group, pu, chk) of `chunk`."""
        pu_index, chk = divmod(chunk, self.num_chk)
        grp, pu = divmod(pu_index, self.num_pu)
        return grp, pu, chk

    def stripe_order(self) -> list[int]:
        """Parallel units in the order consecutive write units visit them: groups
        fastest (they are the independent channels), then PUs."""
        return [grp * self.num_pu + pu for pu in range(self.num_pu)
                for grp in range(self.num_grp)]


class ChunkInfo(NamedTuple):
    state: ChunkState
    wp: int      # sectors programmed
    wear: int    # erases so far (2.0: WLI; 1.2: erase count)


class Flash(Protocol):
    layout: FlashLayout

    def chunk_info(self, chunk: int) -> ChunkInfo: ...

    def write(self, chunk: int, data: bytes, oob: bytes) -> bool: ...

    def stage(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None: ...

    def read(self, chunk: int, sector: int, count: int) -> tuple[memoryview, memoryview]: ...

    def reset(self, chunk: int) -> bool: ...
