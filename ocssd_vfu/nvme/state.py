"""The controller's state: what the command handlers (admin.py, io.py, features.py,
trace.py) read and change. controller.py adds the register and queue machinery on
top; the handlers import this module, never the controller, so that the core has
no import circle.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.nvme.capabilities import MAX_IO_QUEUES
from ocssd_vfu.nvme.command import SyncRequest, Tracer
from ocssd_vfu.nvme.doorbells import ShadowDoorbells
from ocssd_vfu.nvme.due import DueQueue
from ocssd_vfu.nvme.feature_values import Features
from ocssd_vfu.nvme.health import Health
from ocssd_vfu.nvme.interrupts import Coalescing
from ocssd_vfu.nvme.kind import AdminCommand, FastPath, LogPage, Namespace, NamespaceKind
from ocssd_vfu.nvme.native_doorbells import NativeDoorbells
from ocssd_vfu.nvme.polling import DEFAULT_IDLE_US, Backoff
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.spec.nvme import Csts, IoOpcode

log = logging.getLogger("ocssd_vfu.nvme")


class TimedMedia(Protocol):
    def flush(self, now_ns: int) -> int: ...


def timing_of(namespace: Namespace) -> TimedMedia | None:
    """A timed namespace's model (kind.py: Time), or None."""
    timing: TimedMedia | None = getattr(namespace, "timing", None)
    return timing


@dataclass
class ControllerConfig:
    vid: int = 0x1B36
    ssvid: int = 0x1AF4
    serial: str = "ocssd-vfu-0"
    model: str = "ocssd_vfu NVMe Ctrl"
    firmware: str = "0.1"
    mdts: int = 7              # 2^7 minimum pages: 512 KiB at 4 KiB pages
    msix_vectors: int = MAX_IO_QUEUES + 1
    io_queue_pairs: int = MAX_IO_QUEUES
    sgl: bool = True               # SGLs for I/O commands (Identify SGLS)
    shadow_doorbells: bool = True  # Doorbell Buffer Config (OACS bit 8)
    fast_path: bool = True         # plain Reads and Writes in C (fastpath.py)
    native_doorbells: bool = True  # I/O doorbells that only bring such commands, in C too
    poll_idle_us: int = DEFAULT_IDLE_US  # polling mode's back-off (polling.py)


@dataclass
class Registers:
    cc: int = 0
    csts: int = 0
    aqa: int = 0
    asq: int = 0
    acq: int = 0
    intms: int = 0


LOGGED_PER_CATEGORY = 10  # then every 1000th: a hostile guest cannot flood the log


@dataclass
class ControllerState:
    """Everything a controller holds, and the two things every part of it may do:
    count a guest error, and fall back from shadow doorbells to MMIO."""

    memory: GuestMemory
    namespaces: dict[int, Namespace]
    interrupt: Callable[[int], None]
    config: ControllerConfig = field(default_factory=ControllerConfig)
    clock: Callable[[], float] = time.monotonic  # seconds: coalescing, power-on hours
    clock_ns: Callable[[], int] = time.monotonic_ns  # held completions (kind.py: Time)

    def __post_init__(self) -> None:
        self.regs = Registers()
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self.pending: set[int] = set()
        self.sync_requests: list[SyncRequest] = []
        self.features = Features()
        self.health = Health(self.clock)
        self.aer_cids: list[int] = []
        # Asynchronous events waiting for an AER to carry them (DW0 values, each once:
        # a guest that stops re-arming cannot make the list grow).
        self.async_events: list[int] = []
        self.epoch = 0  # controller resets so far: tags deferred work (SyncRequest)
        self.guest_errors: Counter[str] = Counter()
        # Told of every guest error (category, message): the control socket's events.
        self.guest_error_listener: Callable[[str, str], None] | None = None
        # Commands run by the Python path, by (admin?, opcode): the control socket's
        # statistics (the fast path's reads and writes are in the SMART counters).
        self.opcode_counts: Counter[tuple[bool, int]] = Counter()
        self._tracer: Tracer | None = None
        self.shadow: ShadowDoorbells | None = None
        self.coalescing = self._new_coalescing()
        self.python_doorbell_writes = 0  # MMIO doorbell writes Python took (doorbell_writes)
        # Polling mode (serve --poll; polling.py): the shell polls, EventIdx does not ring.
        self.polling = False
        self.backoff = Backoff(self.config.poll_idle_us * 1000)
        # What the namespaces' kinds register (nvme/kind.py), gathered once: the
        # namespaces of a controller do not change while it lives.
        self.kinds: list[NamespaceKind] = list(dict.fromkeys(
            type(ns).kind for ns in self.namespaces.values()))
        self.io_opcodes = frozenset({IoOpcode.FLUSH}.union(
            *(kind.io_commands for kind in self.kinds)))
        # Admin opcodes the kinds add; where two add one, the first kind's entry (its
        # handler checks the namespace's kind itself).
        self.kind_admin: dict[int, AdminCommand] = {}
        for kind in self.kinds:
            for opc, entry in kind.admin_commands.items():
                self.kind_admin.setdefault(opc, entry)
        self.kind_log_pages: dict[int, LogPage] = {}
        for kind in self.kinds:
            self.kind_log_pages.update(kind.log_pages)
        self.decoded: Any = None  # the last I/O command as its kind decoded it (trace.py)
        # Completions held until a modelled time (kind.py: Time); the shell's
        # CompletionScheduler wakes at held.next_due().
        self.held = DueQueue()
        self.now_ns = 0                   # when the running command was fetched
        self.hold_due: int | None = None  # what its handler asked (hold_until)
        self.trace_times: tuple[int, int, int] = (0, 0, 0)  # (arrival, modelled, completed)
        self.held_touched: set[CompletionQueue] = set()  # CQs posted to by held completions
        self.fast_path = self._fast_path()
        # I/O doorbells handled in C (native_doorbells.py); paused whenever Python runs.
        self.native = NativeDoorbells(self.fast_path) \
            if self.fast_path is not None and self.config.native_doorbells else None
        self.media_failure: str | None = None  # why the image cannot take I/O any more
        self.internal_errors = 0  # commands a handler failed by raising (_execute_guarded)
        self.io_queues_created = False  # since the last reset: Number of Queues is fixed
        self._set_page_size(0)

    def _fast_path(self) -> FastPath | None:
        """The kind's native path, for a controller whose only namespace is NSID 1."""
        namespace = self.namespaces.get(1)
        if (not self.config.fast_path or namespace is None or len(self.namespaces) != 1
                or timing_of(namespace) is not None):  # the fast path completes at once
            return None
        make = type(namespace).kind.fast_path
        return make(namespace) if make is not None else None

    def hold_until(self, due_ns: int) -> None:
        if self.hold_due is None or due_ns > self.hold_due:
            self.hold_due = due_ns

    def buffers_programmed_ns(self, now_ns: int) -> int:
        """When every timed namespace's write buffer is programmed (Flush, shutdown)."""
        due = now_ns
        for ns in self.namespaces.values():
            timing = timing_of(ns)
            if timing is not None:
                due = max(due, timing.flush(now_ns))
        return due
    def post_async_event(self, dw0: int) -> None:
        """An asynchronous event waits here for an AER (the Controller completes an
        outstanding one at once); an event already waiting is not queued twice."""
        if dw0 not in self.async_events:
            self.async_events.append(dw0)

    def guest_error(self, category: str, message: str) -> None:
        """The one place where guest misbehaviour is counted and logged (by category, as
        QEMU's pci_nvme_ub_*), rate-limited so a hostile guest cannot flood the log."""
        self.guest_errors[category] += 1
        count = self.guest_errors[category]
        if count <= LOGGED_PER_CATEGORY or count % 1000 == 0:
            log.warning("guest error %s (#%d): %s", category, count, message)
        if self.guest_error_listener is not None:
            self.guest_error_listener(category, message)

    def fatal(self, category: str, message: str) -> None:
        """Guest misbehaviour the controller cannot go on after: Controller Fatal Status
        until the host resets it."""
        self.pause_native()
        self.guest_error(category, message)
        self.regs.csts |= Csts.mask("cfs")

    @property
    def tracer(self) -> Tracer | None:
        """Told of every command (a trace): while one is set, every command runs in Python."""
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: Tracer | None) -> None:
        self.pause_native()  # C traces nothing: it stays off until process() sees this
        self._tracer = tracer

    @property
    def doorbell_writes(self) -> int:
        """MMIO doorbell writes (each one a message under vfio-user), C's included."""
        native = self.native
        return self.python_doorbell_writes + (native.table.doorbell_writes if native else 0)

    def pause_native(self) -> None:
        """Before Python does anything to the controller: the C doorbell path off and
        what it did folded in (native_doorbells.py); process() turns it on again."""
        if self.native is not None:
            self.native.pause(self)

    def release_native(self) -> None:
        """pause_native, and the image's exports to C released: before the image closes."""
        if self.native is not None:
            self.native.release(self)

    def fail_media(self, reason: str) -> None:
        """The image went away under the server (media/watch.py): every later I/O command
        fails with a media error (with DNR); said once."""
        self.release_native()
        if self.media_failure is None:
            log.error("%s", reason)
            self.media_failure = reason

    # -- registers -------------------------------------------------------------------------
    def _set_page_size(self, mps: int) -> None:
        self.page_size = 1 << (12 + mps)
        self.max_transfer = self.page_size << self.config.mdts  # bytes per I/O command (MDTS)

    def _new_coalescing(self) -> Coalescing:
        # Late-bound: the shell wires `interrupt` after the controller exists.
        return Coalescing(lambda vector: self.interrupt(vector), self.config.msix_vectors)

    def lose_shadow_doorbells(self) -> None:
        self.guest_error("shadow_unmapped", "shadow doorbell or EventIdx page unmapped: "
                         "back to MMIO doorbells")
        self.shadow = None

