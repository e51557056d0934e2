"""The I/O fast path: native/fastpath.c runs an I/O queue's plain Reads and
Writes from SQE to CQE (fastpath.h says which commands, and why it completes
successful commands only); the controller falls back to the Python path
(io.py) for the first command it leaves at the head, then tries again.

The plain kind's `fast_path` (nvme/kind.py): the controller uses it when the
plain namespace is its only one and no tracer is set (a trace needs every
command in Python); it runs while the namespace has nothing the C side does not
know of: no metadata, no uncorrectable blocks, DULBE off. The commands it ran
count in the SMART / Health log as io.dispatch counts them. The C side is the
dma layer's module. Worth keeping: it completes successful commands only (every
error status comes from the one Python path), and every command test runs on
both paths (tests/unit/conftest.py's both_io_paths). `ControllerConfig.fast_path`
(serve --no-fast-path) turns it off, for comparisons and for those tests.
"""

from __future__ import annotations

from typing import Any

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.kind import FastPathContext
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.plain.namespace import PlainNamespace

_BYTES = ffi.typeof("uint8_t[]")


class FastPath:
    def __init__(self, namespace: PlainNamespace) -> None:
        self.namespace = namespace
        self.io: Any = ffi.new("struct ocssd_fast_io *")
        self.io.nsid = namespace.nsid

    def run(self, ctrl: FastPathContext, sq: SubmissionQueue) -> int:
        """Commands completed from the head of `sq` (0: the head is for Python)."""
        ns = self.namespace
        if ns.md_size or ns.uncorrectable or ctrl.features.dulbe:
            return 0
        io, cq, memory = self.io, sq.cq, ctrl.memory
        io.nlbas, io.lba_shift = ns.nlbas, ns.lba_shift
        io.page_size, io.max_transfer = ctrl.page_size, ctrl.max_transfer
        io.sq_base, io.sq_size, io.sqid, io.sq_head, io.sq_tail = \
            sq.base, sq.size, sq.qid, sq.head, sq.tail
        io.cq_base, io.cq_size, io.cq_head, io.cq_tail, io.cq_phase = \
            cq.base, cq.size, cq.head, cq.tail, cq.phase
        io.reads = io.writes = io.blocks_read = io.blocks_written = 0
        # Exported for the call only: the image's mmap must stay closable.
        data = ffi.from_buffer(_BYTES, ns.storage, True)
        try:
            io.data = data
            table, scratch = memory.dma_table, memory.dma_scratch
            done: int = lib.ocssd_fast_io_run(table, len(table), io, scratch, len(scratch))
        finally:
            ffi.release(data)
        if done <= 0:
            return 0
        sq.head, cq.tail, cq.phase = io.sq_head, io.cq_tail, io.cq_phase
        health = ctrl.health
        health.commands[HOST_READ] += io.reads
        health.commands[HOST_WRITE] += io.writes
        health.transferred[HOST_READ] += io.blocks_read << io.lba_shift
        health.transferred[HOST_WRITE] += io.blocks_written << io.lba_shift
        return done

