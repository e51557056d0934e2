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

Where a queue stands (head, tail, phase; base, size, and a CQ's vector, interrupt
enable and reserved slots) lives in a small C struct the queue owns
(native/doorbell.h's `struct ocssd_queue`), read and written through properties:
the C doorbell path (native_doorbells.py) moves the same fields, so the Python
and C paths never disagree on where a queue stands. A queue needs nothing else
to exist (tests build them alone).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.dma.native import ffi
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


def _field(name: str, doc: str) -> Any:
    """A property over the queue's C struct field `name`."""
    def get(queue: Any) -> int:
        value: int = getattr(queue.state, name)
        return value

    def put(queue: Any, value: int) -> None:
        setattr(queue.state, name, value)
    return property(get, put, doc=doc)


class _Queue:
    """What both queues share: the C struct and the ring view. What never changes after
    creation is also a plain attribute (read on every command); only the positions are
    read through the struct."""

    def __init__(self, qid: int, base: int, size: int) -> None:
        self.qid, self.base, self.size = qid, base, size
        self.state: Any = ffi.new("struct ocssd_queue *")
        self.state.qid, self.state.base, self.state.size = qid, base, size
        self.ring: memoryview | None = None
        self.generation = -1  # GuestMemory.generation when `ring` was taken

    head = _field("head", "next entry to consume")
    tail = _field("tail", "next entry to fill")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(qid={self.qid}, base={self.base:#x}, size={self.size}, "
                f"head={self.head}, tail={self.tail})")


class CompletionQueue(_Queue):
    def __init__(self, qid: int, base: int, size: int, vector: int,
                 interrupts_enabled: bool) -> None:
        super().__init__(qid, base, size)
        self.vector, self.interrupts_enabled = vector, interrupts_enabled
        self.state.phase, self.state.vector = 1, vector
        self.state.interrupts_enabled = interrupts_enabled
        # SQs posting here: the CQ may not be deleted while any is left.
        self.sqs: list[SubmissionQueue] = []
        # Slots promised to completions held until a modelled time: counted as taken, so a
        # held completion always finds its slot when it is posted (C never serves such a CQ).
        self.reserved = 0

    phase = _field("phase", "the phase tag of the next entry")

    def full(self) -> bool:
        state = self.state
        return (state.tail - state.head) % self.size + self.reserved >= self.size - 1

    def post(self, memory: GuestMemory, dw0: int, dw1: int, sqhd: int, sqid: int, cid: int,
             status: int) -> None:
        ring = self.ring
        if self.generation != memory.generation or ring is None:
            ring = self.ring = memory.view(self.base, self.size * CQE_SIZE,
                                           write=True).cast("I")
            self.generation = memory.generation
        state = self.state
        tail = state.tail
        store_cqe(ring, tail * CQE_DWORDS, dw0, dw1, sqhd | sqid << 16,
                  cid | ((status << 1) | state.phase) << 16)
        tail += 1
        if tail == self.size:
            tail = 0
            state.phase ^= 1
        state.tail = tail


class SubmissionQueue(_Queue):
    def __init__(self, qid: int, base: int, size: int, cq: CompletionQueue) -> None:
        super().__init__(qid, base, size)
        self.cq = cq
        self.held = 0  # of its commands, completions held (each one reserved in its CQ)

    @classmethod
    def bound_to(cls, cq: CompletionQueue, qid: int, base: int, size: int) -> SubmissionQueue:
        sq = cls(qid, base, size, cq)
        cq.sqs.append(sq)
        return sq

    def unbind(self) -> None:
        self.cq.sqs.remove(self)

    def empty(self) -> bool:
        state = self.state
        return bool(state.head == state.tail)

    def fetch(self, memory: GuestMemory) -> tuple[int, ...]:
        """The SQE at head, decoded with the hot-path format; advances head."""
        ring = self.ring
        if self.generation != memory.generation or ring is None:
            ring = self.ring = memory.view(self.base, self.size * SQE_SIZE)
            self.generation = memory.generation
        state = self.state
        head = state.head
        entry = SQE_FORMAT.unpack_from(ring, head * SQE_SIZE)
        state.head = (head + 1) % state.size
        return entry
