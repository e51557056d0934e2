"""The I/O fast path: native/fastpath.c runs an I/O queue's plain Reads and
Writes from SQE to CQE (fastpath.h says which commands, and why it completes
successful commands only); the controller falls back to the Python path
(io.py) for the first command it leaves at the head, then tries again.

Used for a plain namespace (nsid 1) when no tracer is set (a trace needs every
command in Python) and the namespace has nothing the C side does not know of:
no metadata, no uncorrectable blocks, DULBE off. The commands it ran count in
the SMART / Health log as io.dispatch counts them. `ControllerConfig.fast_path`
(serve --no-fast-path) turns it off, for comparisons and for the tests that run
every command test both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.io import DULBE
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.queues import SubmissionQueue

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

_BYTES = ffi.typeof("uint8_t[]")


class FastPath:
    def __init__(self, namespace: PlainNamespace) -> None:
        self.namespace = namespace
        self.io: Any = ffi.new("struct ocssd_fast_io *")
        self.io.nsid = namespace.nsid

    def run(self, ctrl: Controller, sq: SubmissionQueue) -> int:
        """Commands completed from the head of `sq` (0: the head is for Python)."""
        ns = self.namespace
        if ns.md_size or ns.uncorrectable or ctrl.features.error_recovery & DULBE:
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


def fast_path_for(ctrl: Controller) -> FastPath | None:
    namespace = ctrl.namespaces.get(1)
    if ctrl.config.fast_path and isinstance(namespace, PlainNamespace) \
            and len(ctrl.namespaces) == 1:
        return FastPath(namespace)
    return None
