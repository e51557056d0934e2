"""`ocssd-vfu serve`: the trio run loop around one VfuDevice.

One wake-up = every pending vfio-user message handled (vfu_run_ctx until it
returns 0), then one `controller.process()` that drains every rung SQ and
raises one interrupt per CQ; or, with Interrupt Coalescing on, the controller's
interrupt deadline passing (`expire_interrupts`). Image syncs (Flush, shutdown) run in worker
threads: a register read blocks the guest's vCPU, so the trio thread never waits
on the disk.
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
from collections.abc import Callable
from pathlib import Path

import trio

from ocssd_vfu.media.watch import Monitor
from ocssd_vfu.nvme.command import SyncRequest
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.spec.status import Status
from ocssd_vfu.vfu.binding import ffi, lib
from ocssd_vfu.vfu.device import VfuDevice

log = logging.getLogger("ocssd_vfu.server")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
ATTACH_TIMEOUT = 2.0  # seconds a new client has to send VERSION (QEMU sends it at once)
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


class Server:
    def __init__(self, device: VfuDevice, controller: Controller, sync: Callable[[], None],
                 once: bool, sync_interval: float = 0.0) -> None:
        self.device = device
        self.controller = controller
        self.sync = sync
        self.once = once
        self.sync_interval = sync_interval
        self.monitor = Monitor()

    async def serve(self) -> None:
        attached = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._stop_on_signals, nursery.cancel_scope)
                if self.sync_interval > 0:
                    nursery.start_soon(self._sync_periodically)
                nursery.start_soon(self._watch_image_periodically)
                while True:
                    await self._attach()
                    attached = True
                    log.info("client attached")
                    await self._run_connection(nursery)
                    log.info("client gone%s", "; exiting (--once)" if self.once else "")
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
        hung_up = False
        while True:
            if not await self._wake_up():
                self.controller.expire_interrupts()
                continue
            while True:
                handled = lib.vfu_run_ctx(self.device.ctx)
                if handled > 0:
                    continue
                if handled == 0:
                    break
                err = ffi.errno
                if err == errno.ENOTCONN:
                    return
                if err in (errno.EBUSY, errno.EINTR, errno.EAGAIN):
                    break
                log.error("vfu_run_ctx failed: %s; dropping the connection", os.strerror(err))
                if hung_up:
                    return
                # libvfio-user keeps a client until it sees it go: hang up, and the next
                # vfu_run_ctx resets the device and reports ENOTCONN.
                self._hang_up()
                hung_up = True
            self.controller.process()
            self._check_memory()
            for request in self.controller.take_sync_requests():
                nursery.start_soon(self._sync_then_complete, request)

    async def _wake_up(self) -> bool:
        """Wait for client messages (True), or for a coalesced interrupt's deadline."""
        deadline = self.controller.interrupt_deadline()
        delay = math.inf if deadline is None else deadline - self.controller.clock()
        with trio.move_on_after(max(delay, 0.0)):
            await trio.lowlevel.wait_readable(self.device.poll_fd())
            return True
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
