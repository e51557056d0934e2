"""A submission queue entry, decoded on the hot path with struct (see spec.nvme)."""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    opc: int
    flags: int
    cid: int
    nsid: int
    cdw2: int
    cdw3: int
    mptr: int
    prp1: int
    prp2: int
    cdw10: int
    cdw11: int
    cdw12: int
    cdw13: int
    cdw14: int
    cdw15: int

    @property
    def psdt(self) -> int:
        return self.flags >> 6

    @property
    def fuse(self) -> int:
        return self.flags & 0x3
