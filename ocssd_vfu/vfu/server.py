"""`ocssd-vfu serve`: the trio run loop around one VfuDevice.

One wake-up = every pending vfio-user message handled (vfu_run_ctx until it
returns 0), then one `controller.process()` that drains every rung SQ and
raises one interrupt per CQ (`after_wake_up`: only C's end of the wake-up when
the C doorbell path took every message of it whole; the image and memory checks
and the syncs still run); or, with Interrupt Coalescing on, the controller's
interrupt deadline passing (`expire_interrupts`); or a completion held until a
modelled time (serve --timing) coming due: the CompletionScheduler's timerfd wakes
its task, which posts them (`controller.held`) without any busy-wait; or, for a
device with idle-time work (the FTL's background GC), IDLE_AFTER seconds without a
client message: then one step of that work runs, and the next after IDLE_STEP_GAP
if no message came in between (a step is short, so a new command waits at most one
step). Image syncs
(Flush, shutdown) run in worker threads: a register read blocks the guest's vCPU,
so the trio thread never waits on the disk.

With --poll (nvme/polling.py), a wake-up by a message starts polling: the loop then
runs pass after pass without sleeping, each one handling the messages there are
(without blocking) and one `controller.poll()`, then yielding the core (sched_yield)
and to the other tasks (trio's checkpoint, which also looks at every file descriptor
without waiting),
until the controller says it went idle; then it sleeps as above. Idle-time work
starts IDLE_AFTER after that.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from ocssd_vfu.media.watch import Monitor
from ocssd_vfu.nvme.command import SyncRequest
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.spec.status import Status
from ocssd_vfu.timing.scheduler import CompletionScheduler
from ocssd_vfu.vfu.binding import ffi, lib
from ocssd_vfu.vfu.device import VfuDevice

log = logging.getLogger("ocssd_vfu.server")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
ATTACH_TIMEOUT = 2.0  # seconds a new client has to send VERSION (QEMU sends it at once)
IDLE_AFTER = 0.05     # seconds without a client message before idle-time work starts
IDLE_STEP_GAP = 0.001  # seconds between idle-time steps, to see a message in between
WATCH_INTERVAL = 1.0  # seconds between looks at the image file (truncated, replaced)


class ServeError(Exception):
    """The server cannot start; the message says why."""


def claim_socket_path(path: Path) -> None:
    """Refuse a non-socket path or a live server's socket; remove a stale socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise ServeError(f"cannot create socket {path}: {path.parent} is not a "
                             "directory") from None
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServeError(f"{path} exists and is not a socket: refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink()
        return
    finally:
        probe.close()
    raise ServeError(f"a server is already listening on {path}")


class AttachDeadline:
    """Interrupts the calling (main) thread's blocking call after `seconds`.

    vfu_attach_ctx accepts a client and reads its VERSION with a blocking recv on the
    trio thread; a client that never sends it would keep every other one out. A timer
    thread sends SIGALRM to the main thread only (a process-wide alarm may land in a
    worker thread), the recv fails with EINTR, and libvfio-user drops the connection.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire, (threading.get_ident(),))

    def _expire(self, thread: int) -> None:
        self.expired = True
        signal.pthread_kill(thread, signal.SIGALRM)

    def __enter__(self) -> AttachDeadline:
        # A Python-level handler (a no-op: the point is the EINTR) instead of SIGALRM's
        # default action, which would end the process.
        signal.signal(signal.SIGALRM, lambda signum, frame: None)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass
class Companions:
    """What runs beside the device loop (the control socket): tasks started in the same
    nursery (each gets a task_status and calls started() once ready), and who is told
    when a vfio-user client comes and goes."""

    tasks: Sequence[Callable[..., Awaitable[None]]] = ()
    attached: Callable[[], None] = lambda: None
    detached: Callable[[], None] = lambda: None


class Server:
    def __init__(self, device: VfuDevice, controller: Controller, sync: Callable[[], None],
                 once: bool, sync_interval: float, scheduler: CompletionScheduler,
                 idle: Callable[[], bool] | None = None,
                 companions: Companions | None = None, poll: bool = False) -> None:
        self.device = device
        self.controller = controller
        self.sync = sync
        self.once = once
        self.sync_interval = sync_interval
        self.idle = idle
        self.idle_work_left = idle is not None   # until a step says none is left
        self.idle_stepping = False               # a step ran since the last message
        # Wakes the loop when a held completion is due (its queue: controller.held).
        self.scheduler = scheduler
        self.companions = companions or Companions()
        self.poll = poll          # serve --poll (nvme/polling.py)
        self.hung_up = False      # the connection was shut down from this side
        self._scope: trio.CancelScope | None = None
        self.monitor = Monitor()

    def stop(self) -> None:
        """Shut down as a signal does (the control socket's `quit`)."""
        if self._scope is not None:
            self._scope.cancel()

    async def serve(self) -> None:
        attached = False
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                await nursery.start(self._stop_on_signals, nursery.cancel_scope)
                nursery.start_soon(self.scheduler.run, lambda: self._after_held(nursery))
                for task in self.companions.tasks:
                    await nursery.start(task)
                if self.sync_interval > 0:
                    nursery.start_soon(self._sync_periodically)
                nursery.start_soon(self._watch_image_periodically)
                while True:
                    await self._attach()
                    attached = True
                    log.info("client attached")
                    self.companions.attached()
                    await self._run_connection(nursery)
                    log.info("client gone%s", "; exiting (--once)" if self.once else "")
                    self.companions.detached()
                    await self._sync_quietly()
                    self._log_totals()
                    attached = False
                    if self.once:
                        nursery.cancel_scope.cancel()
                        return
        finally:
            if attached:  # stopped by a signal while a client was attached
                self._log_totals()

    def _log_totals(self) -> None:
        controller = self.controller
        controller.pause_native()  # C's counts folded in
        log.info("doorbell writes so far: %d", controller.doorbell_writes)
        if controller.guest_errors:
            log.info("guest errors so far: %s", ", ".join(
                f"{name} {count}" for name, count in sorted(controller.guest_errors.items())))

    async def _stop_on_signals(self, scope: trio.CancelScope,
                               task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                               ) -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            # serve() blocked them until now: one that came while the server started up
            # (its socket already there) is delivered here, and shuts it down cleanly.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            task_status.started()
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                scope.cancel()
                return

    async def _attach(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.device.poll_fd())
            with AttachDeadline(ATTACH_TIMEOUT) as deadline:
                attached = lib.vfu_attach_ctx(self.device.ctx) == 0
                err = ffi.errno
            if attached:
                return
            if deadline.expired:
                log.warning("a client sent no VERSION within %g s: dropped", ATTACH_TIMEOUT)
            elif err not in (errno.EAGAIN, errno.EWOULDBLOCK):
                log.warning("vfio-user negotiation failed: %s", os.strerror(err))

    async def _run_connection(self, nursery: trio.Nursery) -> None:
        self.hung_up = False
        polling = False
        while True:
            if polling:
                # The core to a runnable thread first (the guest's vCPUs, where the host
                # has fewer cores than busy threads: without it, polling lost to the
                # default mode at every job of make pollbench on a loaded 2-core host),
                # then to the other tasks (control socket, held completions, syncs).
                os.sched_yield()
                await trio.lowlevel.checkpoint()
                self._expire_due_interrupts()
            elif not await self._wake_up():
                self.controller.expire_interrupts()
                continue
            handled = self._handle_messages()
            if handled is None:
                return
            if self.poll and (polling or handled):
                if handled:
                    self.controller.start_polling()
                polling = self.controller.poll()
            else:
                self.controller.after_wake_up()
            self._start_syncs(nursery)

    def _handle_messages(self) -> int | None:
        """Every pending vfio-user message (vfu_run_ctx until none is left, without
        blocking): how many, or None once the client is gone."""
        total = 0
        while True:
            handled = lib.vfu_run_ctx(self.device.ctx)
            if handled > 0:
                total += handled
                continue
            if handled == 0:
                return total
            err = ffi.errno
            if err == errno.ENOTCONN:
                return None
            if err in (errno.EBUSY, errno.EINTR, errno.EAGAIN):
                return total
            log.error("vfu_run_ctx failed: %s; dropping the connection", os.strerror(err))
            if self.hung_up:
                return None
            # libvfio-user keeps a client until it sees it go: hang up, and the next
            # vfu_run_ctx resets the device and reports ENOTCONN.
            self._hang_up()
            self.hung_up = True

    def _expire_due_interrupts(self) -> None:
        deadline = self.controller.interrupt_deadline()
        if deadline is not None and deadline <= self.controller.clock():
            self.controller.expire_interrupts()

    def _start_syncs(self, nursery: trio.Nursery) -> None:
        self._check_memory()
        for request in self.controller.take_sync_requests():
            nursery.start_soon(self._sync_then_complete, request)
        self.scheduler.rearm()  # one timerfd_settime, only for an earlier held completion

    def _after_held(self, nursery: trio.Nursery) -> None:
        """Held completions were posted: their interrupts, then what their slots let in.
        A coalesced interrupt they left waiting gets its own wake-up: the loop may be
        asleep in `_wake_up` with no deadline."""
        controller = self.controller
        controller.finish_held_batch()
        deadline = controller.interrupt_deadline()
        if deadline is not None:
            controller.held.add(int(deadline * 1e9), controller.expire_interrupts)
        self._start_syncs(nursery)

    async def _wake_up(self) -> bool:
        """Wait for client messages (True), or for a coalesced interrupt's deadline, or
        run a step of idle-time work once the client was quiet for IDLE_AFTER."""
        deadline = self.controller.interrupt_deadline()
        delay = math.inf if deadline is None else deadline - self.controller.clock()
        idle_delay = IDLE_STEP_GAP if self.idle_stepping else IDLE_AFTER
        if self.idle_work_left:
            delay = min(delay, idle_delay)
        with trio.move_on_after(max(delay, 0.0)):
            await trio.lowlevel.wait_readable(self.device.poll_fd())
            self.idle_work_left = self.idle is not None
            self.idle_stepping = False
            return True
        if self.idle is not None and self.idle_work_left and delay >= idle_delay:
            self.idle_work_left = self.idle()
            self.idle_stepping = self.idle_work_left
        return False

    def _check_memory(self) -> None:
        """After a wake-up: did memory go away under it (native/guard.h)?"""
        if self.monitor.guest_memory_lost():
            self.controller.fatal("guest_memory_gone", "guest memory shrank under the "
                                  "server (the client truncated its memory file)")
        if self.monitor.image_faulted():
            self._check_image()

    def _check_image(self) -> None:
        if self.controller.media_failure is None:
            problem = self.monitor.image_problem()
            if problem is not None:
                self.controller.fail_media(problem)

    async def _watch_image_periodically(self) -> None:
        while True:
            await trio.sleep(WATCH_INTERVAL)
            self._check_image()

    def _hang_up(self) -> None:
        connection = socket.fromfd(self.device.poll_fd(), socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.warning("hanging up on the client failed: %s", exc)
        finally:
            connection.close()

    async def _sync_periodically(self) -> None:
        while True:
            await trio.sleep(self.sync_interval)
            await self._sync_quietly()

    async def _sync_quietly(self) -> None:
        try:
            await trio.to_thread.run_sync(self.sync)
        except OSError as exc:
            log.error("syncing the image failed: %s", exc)

    async def _sync_then_complete(self, request: SyncRequest) -> None:
        try:
            await trio.to_thread.run_sync(self.sync)
            status = Status.SUCCESS
        except OSError as exc:
            log.error("syncing the image failed: %s", exc)
            status = Status.WRITE_FAULT
        self.controller.complete_deferred(request, status)
        self.scheduler.rearm()  # with timed media it may be held until the buffers drain
