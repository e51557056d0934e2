"""The logical-to-physical map, its reverse, and valid sectors per chunk.

A physical sector is chunk * clba + sector (chunk-log order); logical blocks are
the media's sectors, one to one. Both directions are u32 arrays with UNMAPPED
for "nothing", so the map of a 15 GiB image takes 15 MiB each way and a
checkpoint stores the forward array as it is in memory (little-endian).
"""

from __future__ import annotations

import sys
from array import array

from ocssd_vfu.spec.ftl import UNMAPPED

assert sys.byteorder == "little"  # checkpoints store the arrays' bytes as they are


def unmapped_array(length: int) -> array[int]:
    table = array("I", [UNMAPPED])
    table *= length
    return table


class Mapping:
    def __init__(self, logical_blocks: int, chunks: int, clba: int) -> None:
        self.clba = clba
        self.forward = unmapped_array(logical_blocks)
        self.reverse = unmapped_array(chunks * clba)
        self.valid = [0] * chunks
        self.mapped = 0

    def lookup(self, lba: int) -> int:
        return self.forward[lba]

    def place(self, lba: int, phys: int) -> None:
        """`lba`'s newest data is now at `phys`; the old place becomes invalid."""
        self.unmap(lba)
        self.forward[lba] = phys
        self.reverse[phys] = lba
        self.valid[phys // self.clba] += 1
        self.mapped += 1

    def unmap(self, lba: int) -> bool:
        """Forget `lba` (deallocated, or about to be placed again); False if it had no data."""
        old = self.forward[lba]
        if old == UNMAPPED:
            return False
        self.reverse[old] = UNMAPPED
        self.valid[old // self.clba] -= 1
        self.forward[lba] = UNMAPPED
        self.mapped -= 1
        return True

    def unmap_range(self, slba: int, nlb: int) -> bool:
        """Forget blocks slba..slba+nlb-1; False if none had data (checked at C speed:
        a whole-device discard of an empty map costs nothing)."""
        if self.forward[slba:slba + nlb].count(UNMAPPED) == nlb:
            return False
        for lba in range(slba, slba + nlb):
            self.unmap(lba)
        return True

    def holds(self, phys: int) -> int:
        """The logical block whose newest data is at `phys`, or UNMAPPED."""
        return self.reverse[phys]

    def valid_in(self, chunk: int) -> list[tuple[int, int]]:
        """(sector in chunk, logical block) of every valid sector of `chunk`."""
        base = chunk * self.clba
        return [(sector, lba) for sector, lba in enumerate(self.reverse[base:base + self.clba])
                if lba != UNMAPPED]

    def load(self, forward: array[int]) -> None:
        """Take `forward` as the map (a checkpoint's, or one rebuilt by a scan) and derive
        the reverse map and valid counts from it."""
        self.forward = forward
        self.reverse = unmapped_array(len(self.reverse))
        self.valid = [0] * len(self.valid)
        self.mapped = 0
        reverse, valid, clba = self.reverse, self.valid, self.clba
        for lba, phys in enumerate(forward):
            if phys != UNMAPPED:
                reverse[phys] = lba
                valid[phys // clba] += 1
                self.mapped += 1
