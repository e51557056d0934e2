"""What every kind's native fast path hands to and takes back from the C side
(native/fastpath.h's `struct ocssd_fast_io`): the queue pair's rings before a run,
the new head, tail and phase after it, and the SMART / Health counts of what it ran
(`count_runs`: after one run, or after the C doorbell path's runs, which the
struct accumulates until Python folds them: native_doorbells.py).
"""

from __future__ import annotations

import weakref
from typing import Any

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.kind import FastPathContext
from ocssd_vfu.nvme.queues import SubmissionQueue


def load_rings(io: Any, ctx: FastPathContext, sq: SubmissionQueue) -> None:
    """The queue pair and transfer limits as the C side reads them; counters zeroed."""
    arm_limits(io, ctx)
    lib.ocssd_fast_io_load(io, sq.state, sq.cq.state)


def take_run(io: Any, ctx: FastPathContext, sq: SubmissionQueue, done: int,
             opcodes: tuple[int, int]) -> int:
    """The commands a run completed (0: none, the head is for Python), with the queue
    pair moved on and counted in SMART and per opcode (`opcodes`: the kind's read and
    write) as the Python path counts them."""
    if done <= 0:
        return 0
    lib.ocssd_fast_io_store(io, sq.state, sq.cq.state)
    count_runs(io, ctx, opcodes)
    return done


def arm_limits(io: Any, ctx: FastPathContext) -> None:
    """The transfer limits for the C doorbell path's runs; counters zeroed."""
    io.page_size, io.max_transfer = ctx.page_size, ctx.max_transfer
    io.reads = io.writes = io.blocks_read = io.blocks_written = 0


def count_runs(io: Any, ctx: FastPathContext, opcodes: tuple[int, int]) -> None:
    """What the runs counted, into SMART and per opcode (`opcodes`: the kind's read and
    write) as the Python path counts them; the counters zeroed."""
    health = ctx.health
    health.commands[HOST_READ] += io.reads
    health.commands[HOST_WRITE] += io.writes
    health.transferred[HOST_READ] += io.blocks_read << io.lba_shift
    health.transferred[HOST_WRITE] += io.blocks_written << io.lba_shift
    read, write = opcodes
    ctx.opcode_counts[(False, read)] += io.reads
    ctx.opcode_counts[(False, write)] += io.writes
    io.reads = io.writes = io.blocks_read = io.blocks_written = 0


class Exports:
    """Image buffers exported to C (cffi from_buffer) for the C doorbell path, from the
    first `of` until `release` (the image's mmap is closable only then). If their owner
    is collected first, they are released then: a garbage cycle must never free a
    buffer that still has an export (a crash in the collector)."""

    def __init__(self, owner: object) -> None:
        self.held: list[Any] = []
        weakref.finalize(owner, _release_all, self.held)

    def of(self, *buffers: Any) -> list[Any]:
        """Pointers to `buffers` (always the same ones until `release`)."""
        if not self.held:
            self.held.extend(ffi.from_buffer("uint8_t[]", buffer, True) for buffer in buffers)
        return self.held

    def release(self) -> None:
        _release_all(self.held)


def _release_all(held: list[Any]) -> None:
    for pointer in held:
        ffi.release(pointer)
    held.clear()
