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
`arm`, `fold` and `release` serve the C doorbell path (nvme/native_doorbells.py), which runs
the same C function from the BAR0 callback.
"""

from __future__ import annotations

from typing import Any

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.kind import FastPathContext
from ocssd_vfu.nvme.native_run import Exports, arm_limits, count_runs, load_rings, take_run
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import IoOpcode

_BYTES = ffi.typeof("uint8_t[]")


class FastPath:
    def __init__(self, namespace: PlainNamespace) -> None:
        self.namespace = namespace
        self.io: Any = ffi.new("struct ocssd_fast_io *")
        self.io.nsid = namespace.nsid
        self.exports = Exports(self)  # the image, while the C doorbell path may run

    def _servable(self, ctrl: FastPathContext) -> bool:
        ns = self.namespace
        return not (ns.md_size or ns.uncorrectable or ctrl.features.dulbe)

    def run(self, ctrl: FastPathContext, sq: SubmissionQueue) -> int:
        """Commands completed from the head of `sq` (0: the head is for Python)."""
        ns = self.namespace
        if not self._servable(ctrl):
            return 0
        io, memory = self.io, ctrl.memory
        io.nlbas, io.lba_shift = ns.nlbas, ns.lba_shift
        load_rings(io, ctrl, sq)
        # Exported for the call only: the image's mmap must stay closable.
        data = ffi.from_buffer(_BYTES, ns.storage, True)
        try:
            io.data = data
            table, scratch = memory.dma_table, memory.dma_scratch
            done: int = lib.ocssd_fast_io_run(table, len(table), io, scratch, len(scratch))
        finally:
            ffi.release(data)
        return take_run(io, ctrl, sq, done, (IoOpcode.READ, IoOpcode.WRITE))


    def arm(self, ctrl: FastPathContext) -> tuple[int, Any] | None:
        """The runner and io struct for the C doorbell path, with the image exported
        until `release`; None while the namespace has what only Python knows of."""
        if not self._servable(ctrl):
            return None
        ns, io = self.namespace, self.io
        io.nlbas, io.lba_shift = ns.nlbas, ns.lba_shift  # a Format NVM may change them
        arm_limits(io, ctrl)
        io.data, = self.exports.of(ns.storage)
        return (lib.OCSSD_RUNNER_PLAIN, io)

    def fold(self, ctrl: FastPathContext) -> None:
        """What the C doorbell path ran since `arm`, counted."""
        count_runs(self.io, ctrl, (IoOpcode.READ, IoOpcode.WRITE))

    def release(self) -> None:
        """The image's export released."""
        self.io.data = ffi.NULL
        self.exports.release()
