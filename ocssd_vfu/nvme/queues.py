"""Submission and completion queues in guest memory (NVMe 1.4 4.1).

A queue of N entries is full when tail + 1 == head (mod N). The controller
owns an SQ's head and a CQ's tail; the host owns the others and moves them
through doorbells. Each CQE carries a phase tag that flips on every wrap so
the host can tell new entries from old ones.

Each queue keeps a view of its whole ring, taken at its first use and again
after any change of the guest memory map (GuestMemory.generation): a ring that
is not mapped, or a CQ ring mapped read-only, is a DmaError there.

The host reads a CQE as soon as its phase tag matches, possibly while the
controller is still writing it: a CQE is stored dword by dword with the tag's
dword (DW3) last, so no moment shows the new tag over old or zeroed fields.
(struct.pack_into zeroes its target before filling it in, which on every
second pass of the ring showed the host an all-zero entry with the expected
phase: "invalid id 0 completed", then a lost completion and a timeout.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Protocol

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.spec.nvme import CQE_SIZE, SQE_FORMAT, SQE_SIZE

# CQ rings are viewed as native unsigned ints, and NVMe structures are little-endian.
assert sys.byteorder == "little", "ocssd_vfu runs on little-endian hosts only"
CQE_DWORDS = CQE_SIZE // 4


class Dwords(Protocol):
    def __setitem__(self, index: int, value: int, /) -> None: ...


def store_cqe(ring: Dwords, index: int, dw0: int, dw1: int, dw2: int,
              dw3: int) -> None:
    """Store one CQE at dword `index` of `ring`: each dword once, in order, DW3 (command
    id, status and phase tag) last."""
    ring[index] = dw0
    ring[index + 1] = dw1
    ring[index + 2] = dw2
    ring[index + 3] = dw3


@dataclass(eq=False)  # a queue is itself: identity, not field equality
class CompletionQueue:
    qid: int
    base: int
    size: int
    vector: int
    interrupts_enabled: bool
    tail: int = 0
    head: int = 0
    phase: int = 1
    # SQs posting here: the CQ may not be deleted while any is left.
    sqs: list[SubmissionQueue] = field(default_factory=list)
    ring: memoryview | None = field(default=None, repr=False)
    generation: int = -1  # GuestMemory.generation when `ring` was taken

    def full(self) -> bool:
        return (self.tail + 1) % self.size == self.head

    def post(self, memory: GuestMemory, dw0: int, dw1: int, sqhd: int, sqid: int, cid: int,
             status: int) -> None:
        ring = self.ring
        if self.generation != memory.generation or ring is None:
            ring = self.ring = memory.view(self.base, self.size * CQE_SIZE,
                                           write=True).cast("I")
            self.generation = memory.generation
        store_cqe(ring, self.tail * CQE_DWORDS, dw0, dw1, sqhd | sqid << 16,
                  cid | ((status << 1) | self.phase) << 16)
        self.tail += 1
        if self.tail == self.size:
            self.tail = 0
            self.phase ^= 1


@dataclass(eq=False)
class SubmissionQueue:
    qid: int
    base: int
    size: int
    cq: CompletionQueue
    head: int = 0
    tail: int = 0
    ring: memoryview | None = field(default=None, repr=False)
    generation: int = -1  # GuestMemory.generation when `ring` was taken

    @classmethod
    def bound_to(cls, cq: CompletionQueue, qid: int, base: int, size: int) -> SubmissionQueue:
        sq = cls(qid, base, size, cq)
        cq.sqs.append(sq)
        return sq

    def unbind(self) -> None:
        self.cq.sqs.remove(self)

    def empty(self) -> bool:
        return self.head == self.tail

    def fetch(self, memory: GuestMemory) -> tuple[int, ...]:
        """The SQE at head, decoded with the hot-path format; advances head."""
        ring = self.ring
        if self.generation != memory.generation or ring is None:
            ring = self.ring = memory.view(self.base, self.size * SQE_SIZE)
            self.generation = memory.generation
        entry = SQE_FORMAT.unpack_from(ring, self.head * SQE_SIZE)
        self.head = (self.head + 1) % self.size
        return entry
