"""The OCSSD 2.0 kind's fast path: native/fastpath.c runs an I/O queue's vector
Reads and Writes from SQE to CQE for the common case (fastpath.h says which
commands); the controller falls back to the Python path (namespace.py) for the
first command it leaves at the head, then tries again, as with the plain kind's
fast path (plain/fastpath.py, which says when the controller uses one).

The chunk table is shared through the image's chunk log: the C side reads each
chunk's state and WP there and a write stores the new WP and state there, as
ChunkTable.written does; the chunk of each run it wrote comes back in `touched`,
and `ChunkTable.written_natively` brings the table's Python copy (and the readable
limit, which only Python keeps) up to date. C adds each run, read or written, to
`pu_operations` (the per-PU counts the control socket reports), folded into the
namespace's. Writes stay in Python while a write
failure is injected (--write-fail). `arm`, `fold` and `release` serve the C doorbell path
(nvme/native_doorbells.py): there `touched` collects the chunks written until Python
folds them in.
"""

from __future__ import annotations

from typing import Any

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.kind import FastPathContext
from ocssd_vfu.nvme.native_run import Exports, arm_limits, count_runs, load_rings, take_run
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.nvme import IoOpcode
from ocssd_vfu.spec.ocssd import MAX_VECTOR_LBAS

_BYTES = ffi.typeof("uint8_t[]")
# Chunks written before Python takes the list (a run stops before more): one call, or
# the C doorbell path's runs until Python folds them.
TOUCHED_CAPACITY = 64 * MAX_VECTOR_LBAS
OPCODES = (IoOpcode.VECTOR_CHUNK_READ, IoOpcode.VECTOR_CHUNK_WRITE)


class FastPath:
    def __init__(self, namespace: OcssdNamespace) -> None:
        self.namespace = namespace
        g, a = namespace.geometry, namespace.address
        self.touched = ffi.new("uint32_t[]", TOUCHED_CAPACITY)
        v: Any = ffi.new("struct ocssd_vector_io *")
        v.queue.nsid, v.queue.lba_shift = namespace.nsid, g.sec_size.bit_length() - 1
        v.md_size = g.md_size
        v.num_grp, v.num_pu, v.num_chk, v.num_sec = g.num_grp, g.num_pu, g.num_chk, g.num_sec
        v.chk_shift, v.pu_shift, v.grp_shift = a.chk_shift, a.pu_shift, a.grp_shift
        v.sec_mask, v.chk_mask, v.pu_mask = a.sec_mask, a.chk_mask, a.pu_mask
        v.ws_min, v.mw_cunits = g.ws_min, g.mw_cunits
        v.touched, v.touched_cap = self.touched, TOUCHED_CAPACITY
        self.pu_operations = ffi.new("uint64_t[]", len(namespace.pu_operations))
        v.pu_operations = self.pu_operations
        self.v = v
        self.io: Any = ffi.addressof(v, "queue")  # the queue part, as C's pointer
        self.exports = Exports(self)  # image areas, while the C doorbell path may run

    def _writes(self) -> int:
        """What C may write (fastpath.h's `writes`). Opening a chunk reserves its space
        in the image (a full disk is a status): the Python path's work, so with a
        reserver C writes only to OPEN chunks."""
        ns = self.namespace
        return 0 if ns.faults.has("write") else 1 if ns.reserve is not None else 2

    def run(self, ctrl: FastPathContext, sq: SubmissionQueue) -> int:
        """Commands completed from the head of `sq` (0: the head is for Python)."""
        ns, v = self.namespace, self.v
        io, memory = self.io, ctrl.memory
        load_rings(io, ctrl, sq)
        v.writes = self._writes()
        v.touched_len = 0
        # Exported for the call only: the image's mmap must stay closable.
        data = ffi.from_buffer(_BYTES, ns.data, True)
        oob = ffi.from_buffer(_BYTES, ns.oob, True)
        log = ffi.from_buffer(_BYTES, ns.chunks.log, True)
        try:
            io.data, v.oob, v.log = data, oob, log
            table, scratch = memory.dma_table, memory.dma_scratch
            done: int = lib.ocssd_vector_io_run(table, len(table), v, scratch, len(scratch))
        finally:
            ffi.release(data)
            ffi.release(oob)
            ffi.release(log)
        self._take_touched()
        return take_run(io, ctrl, sq, done, OPCODES)

    def _take_touched(self) -> None:
        """The chunks written and the runs per PU, into the namespace (before the run's
        counters are taken: with no command run there is nothing per PU to fold)."""
        ns, v, counted = self.namespace, self.v, self.pu_operations
        for chunk in self.touched[0:v.touched_len]:
            ns.chunks.written_natively(chunk)
        v.touched_len = 0
        if not (self.io.reads or self.io.writes):
            return
        for pu, runs in enumerate(counted):
            if runs:
                ns.pu_operations[pu] += runs
                counted[pu] = 0

    def arm(self, ctrl: FastPathContext) -> tuple[int, Any] | None:
        """The runner and io struct for the C doorbell path, with the image exported
        until `release`."""
        ns, v = self.namespace, self.v
        arm_limits(self.io, ctrl)
        v.writes = self._writes()
        v.touched_len = 0
        v.queue.data, v.oob, v.log = self.exports.of(ns.data, ns.oob, ns.chunks.log)
        return (lib.OCSSD_RUNNER_VECTOR, v)

    def fold(self, ctrl: FastPathContext) -> None:
        """What the C doorbell path ran since `arm`, counted (chunk table, per-PU and
        SMART counts)."""
        self._take_touched()
        count_runs(self.io, ctrl, OPCODES)

    def release(self) -> None:
        """The image's exports released."""
        v = self.v
        v.queue.data = v.oob = v.log = ffi.NULL
        self.exports.release()
