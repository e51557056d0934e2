"""I/O queue doorbells handled in C (native/doorbell.h): the table C reads, and the
rules that keep what C does equal to what the Python path would do.

The C side takes a doorbell write of an I/O queue (from the libvfio-user BAR0
callback, or the unit tests' fake host) and runs the kind's fast path on it, with
no Python at all, while the table is `enabled`. Eligibility is Python's, kept
here, never re-checked per write:
- Whenever Python runs for the controller (a BAR0 write C did not take, a DMA
  map or unmap, a reset, `process()`, a control-socket command, held
  completions, a media failure), `pause()` comes first: C disabled (one store),
  what C counted folded into Python's counters (SMART, opcode_counts,
  doorbell_writes, an OCSSD namespace's chunk table and per-PU counts;
  undelivered interrupts as `irq_fd` guest errors), and the SQs C left at a
  command it does not serve put in `pending`. Every reader of those counters runs
  after a pause. The image stays exported to C until `release` (teardown, a
  media failure): only then is its mmap closable.
- At the end of `process()`, `arm()` enables C again only if the kind's fast path
  may run (fast path present, no tracer, no media failure, no held completions,
  the controller ready and not failed, the namespace's own conditions: the kind's
  FastPath.arm) and for each I/O SQ only if its CQ is its alone, has no reserved
  slots and no coalescing on its vector.
- With shadow doorbells the EventIdx is armed at the end of the wake-up (`finish`,
  from Controller.after_wake_up), not at each write: the host's submissions
  meanwhile ring nothing, as while Python's processing waited for that moment.
- Queue positions are shared (queues.py), the DMA table is read through
  GuestMemory.dma_map, and the shadow doorbell pages are resolved per write: a
  map change cannot leave C a stale pointer.
`ControllerConfig.native_doorbells` (off with --no-fast-path, or alone in tests)
leaves every doorbell to Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.nvme.doorbells import ShadowDoorbells
from ocssd_vfu.nvme.interrupts import Coalescing
from ocssd_vfu.nvme.kind import FastPath, FastPathContext
from ocssd_vfu.nvme.queues import SubmissionQueue


class DoorbellOwner(FastPathContext, Protocol):
    """What the table needs of its controller (ControllerState has it all)."""

    sqs: dict[int, SubmissionQueue]
    pending: set[int]
    python_doorbell_writes: int

    @property
    def interrupt(self) -> Callable[[int], None]: ...
    coalescing: Coalescing
    shadow: ShadowDoorbells | None

    def guest_error(self, category: str, message: str) -> None: ...

SCRATCH_RANGES = 1024  # PRP ranges of one transfer (MDTS 512 KiB at 4 KiB: 129)
VECTORS = 65           # interrupts one `finish` may ask for: one per CQ at most


class NativeDoorbells:
    def __init__(self, fast_path: FastPath) -> None:
        self.fast_path = fast_path
        self.table: Any = ffi.new("struct ocssd_doorbell_table *")
        self.scratch = ffi.new("struct ocssd_dma_range[]", SCRATCH_RANGES)
        self.table.scratch, self.table.scratch_len = self.scratch, SCRATCH_RANGES
        self.vectors = ffi.new("uint32_t[]", VECTORS)
        self.armed = False  # exports held, counters to fold
        # The SQs in the table (each with its CQ); holding them keeps their structs alive.
        self.listed: list[tuple[int, SubmissionQueue]] = []
        table = self.table
        self.arrays = (table.sqs, table.cqs, table.cq_of_sq, table.sq_of_cq)
        # For the BAR0 callback (another cffi module): the handler and its table.
        self.handler = int(ffi.cast("uintptr_t", ffi.addressof(lib, "ocssd_doorbell_write")))
        self.address = int(ffi.cast("uintptr_t", self.table))

    @property
    def enabled(self) -> bool:
        return bool(self.table.enabled)

    def write(self, offset: int, value: int) -> int:
        """A doorbell write through C: lib.OCSSD_DOORBELL_PYTHON (not taken),
        lib.OCSSD_DOORBELL_QUIET, or the vector to interrupt."""
        result: int = lib.ocssd_doorbell_write(self.table, offset, value)
        return result

    def finish(self, ctrl: DoorbellOwner) -> None:
        """Once a wake-up's messages are handled and C took them all: with shadow
        doorbells, what the host submitted meanwhile run and the EventIdx armed
        (native/doorbell.h), the interrupts that asks for raised through `ctrl.interrupt`."""
        if not self.table.rearm:
            return
        vectors = self.vectors
        for i in range(lib.ocssd_doorbell_finish(self.table, vectors, VECTORS)):
            ctrl.interrupt(vectors[i])

    def pause(self, ctrl: DoorbellOwner) -> None:
        """C off, its work folded into Python's state (module docstring)."""
        table = self.table
        table.enabled = 0
        if not self.armed:
            return
        self.armed = False
        if not table.doorbell_writes and not table.irq_errors:
            return  # C took no write since `arm`: nothing ran, nothing to fold
        ctrl.python_doorbell_writes += table.doorbell_writes
        table.doorbell_writes = 0
        errors, table.irq_errors = table.irq_errors, 0
        for _ in range(errors):
            ctrl.guest_error("irq_fd", "interrupt not delivered: "
                             f"{os.strerror(table.irq_errno)}")
        self.fast_path.fold(ctrl)
        for qid, sq in ctrl.sqs.items():
            if sq.state.python:
                sq.state.python = 0
                ctrl.pending.add(qid)

    def release(self, ctrl: DoorbellOwner) -> None:
        """Paused, and the image's exports released (teardown, a media failure)."""
        self.pause(ctrl)
        self.fast_path.release()

    def arm(self, ctrl: DoorbellOwner, allowed: bool) -> None:
        """C on again, if `allowed` (the controller's conditions: module docstring) and
        it may serve any I/O SQ."""
        table = self.table
        table.enabled = table.rearm = 0  # process() armed every EventIdx itself
        if self.armed or not allowed:
            return
        coalescing = ctrl.coalescing
        eligible = [(qid, sq) for qid, sq in ctrl.sqs.items()
                    if qid and len(sq.cq.sqs) == 1 and not sq.held
                    and not sq.cq.reserved
                    and not (coalescing.time and coalescing.applies(sq.cq.qid, sq.cq.vector))]
        if not eligible:
            return
        runner = self.fast_path.arm(ctrl)
        if runner is None:
            return
        table.runner, io = runner
        if table.runner == lib.OCSSD_RUNNER_VECTOR:
            table.vector_io = io
        else:
            table.fast_io = io
        if eligible != self.listed:  # the queues themselves (identity), kept alive here
            self._list(eligible)
        shadow = ctrl.shadow
        if shadow is None:
            table.shadow = table.eventidx = table.shadow_entries = 0
        else:
            table.shadow, table.eventidx = shadow.shadow, shadow.eventidx
            table.shadow_entries = shadow.size // 4
        table.map = ctrl.memory.dma_map
        self.armed = True
        table.enabled = 1

    def _list(self, eligible: list[tuple[int, SubmissionQueue]]) -> None:
        sqs, cqs, cq_of_sq, sq_of_cq = self.arrays
        for qid, sq in self.listed:
            sqs[qid] = cqs[sq.cq.qid] = ffi.NULL
        for qid, sq in eligible:
            cq = sq.cq
            sqs[qid], cqs[cq.qid] = sq.state, cq.state
            cq_of_sq[qid], sq_of_cq[cq.qid] = cq.qid, qid
        self.listed = eligible
