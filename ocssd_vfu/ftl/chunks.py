"""What the FTL uses each chunk for, and its free lists.

Roles: FREE (erased, in its PU's free list); OPEN (a write stream's current chunk on
its PU); DATA (written, no longer open: a GC candidate); META (superblock,
checkpoint and trim journal); RETIRED (a program failed: its valid data is moved
out and it is never written or erased again); OFFLINE (the media says so).
Allocation takes the free chunk with the lowest wear (ties: the lowest index).
"""

from __future__ import annotations

import enum

from ocssd_vfu.ftl.flash import Flash, FlashLayout
from ocssd_vfu.spec.ocssd import ChunkState


class Role(enum.Enum):
    FREE = "free"
    OPEN = "open"
    DATA = "data"
    META = "meta"
    RETIRED = "retired"
    OFFLINE = "offline"


class ChunkBook:
    def __init__(self, layout: FlashLayout) -> None:
        self.layout = layout
        self.role = [Role.FREE] * layout.chunks
        self.programmed = [0] * layout.chunks
        self.wear = [0] * layout.chunks
        self.newest_seq = [0] * layout.chunks
        self.free: list[set[int]] = [set() for _ in range(layout.parallel_units)]

    @classmethod
    def from_media(cls, flash: Flash) -> ChunkBook:
        """Every chunk FREE or OFFLINE as the media says, its WP and wear read; the
        roles of written chunks are for the caller to set."""
        book = cls(flash.layout)
        for chunk in range(flash.layout.chunks):
            state, wp, wear = flash.chunk_info(chunk)
            book.programmed[chunk], book.wear[chunk] = wp, wear
            if state == ChunkState.OFFLINE:
                book.role[chunk] = Role.OFFLINE
            elif state == ChunkState.FREE:
                book.free[flash.layout.parallel_unit(chunk)].add(chunk)
            else:
                book.role[chunk] = Role.DATA
        return book

    @property
    def free_count(self) -> int:
        return sum(len(chunks) for chunks in self.free)

    def count(self, role: Role) -> int:
        return self.role.count(role)

    def take(self, pu: int, role: Role = Role.OPEN) -> int | None:
        """The least-worn free chunk of `pu`, now in `role`; None if the PU has none."""
        free = self.free[pu]
        if not free:
            return None
        chunk = min(free, key=lambda c: (self.wear[c], c))
        free.remove(chunk)
        self.role[chunk] = role
        return chunk

    def take_least_worn(self, role: Role) -> int | None:
        """The least-worn free chunk of any PU."""
        candidates = [min(free, key=lambda c: (self.wear[c], c)) for free in self.free if free]
        if not candidates:
            return None
        chunk = min(candidates, key=lambda c: (self.wear[c], c))
        return self.take(self.layout.parallel_unit(chunk), role)

    def close(self, chunk: int) -> None:
        self.role[chunk] = Role.DATA

    def erased(self, chunk: int) -> None:
        self.role[chunk] = Role.FREE
        self.programmed[chunk] = 0
        self.wear[chunk] += 1
        self.free[self.layout.parallel_unit(chunk)].add(chunk)

    def set_role(self, chunk: int, role: Role) -> None:
        if self.role[chunk] == Role.FREE:
            self.free[self.layout.parallel_unit(chunk)].discard(chunk)
        self.role[chunk] = role
