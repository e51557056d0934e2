"""Completions at modelled times: a heap of (due, callback) and the trio task that wakes
when the earliest is due.

`DueQueue` (nvme/due.py) is sans-I/O (the caller passes `now`): the NVMe core holds one
and unit tests drive it with a fake clock. `CompletionScheduler` adds a timerfd armed at the
earliest due time and `run()`, a trio task that sleeps on it (no busy-wait, no epoll
millisecond rounding), calls every due callback, then `after_batch` once: the place for
one interrupt per completion queue per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import trio

from ocssd_vfu.nvme.due import Completion, DueQueue
from ocssd_vfu.timing.timerfd import Timerfd

__all__ = ["CompletionScheduler", "DueQueue"]


class CompletionScheduler:
    """A DueQueue on CLOCK_MONOTONIC whose `run()` task wakes at the earliest due time.

    `lead_ns` (default 0) trades CPU for punctuality: the timer is armed that much before
    the earliest due time and the task then spins, holding the trio thread, until it is
    due. A wake-up from a timerfd takes tens of microseconds on a busy or virtual host,
    which is most of a 70 µs read; a lead a little above that hides it at the price of
    up to `lead_ns` of busy CPU per batch.
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns, lead_ns: int = 0,
                 queue: DueQueue | None = None) -> None:
        self.clock = clock
        self.lead_ns = lead_ns
        self.queue = DueQueue() if queue is None else queue  # may be the controller's
        self.timer = Timerfd()
        self._armed_at: int | None = None
        self.wakeups = 0  # times run() woke: about one per batch, never a busy loop

    def schedule(self, due_ns: int, callback: Completion) -> None:
        """Call `callback` at `due_ns` (CLOCK_MONOTONIC ns); from the trio thread."""
        self.queue.add(due_ns, callback)
        self.rearm()

    def rearm(self) -> None:
        """Make run() wake for the queue's earliest entry: after `schedule`, or after the
        queue's owner added entries itself."""
        due = self.queue.next_due()
        if due is not None and (self._armed_at is None or due < self._armed_at):
            self.timer.arm(due - self.lead_ns)  # wakes run() earlier than it planned
            self._armed_at = due

    async def run(self, after_batch: Callable[[], None] = lambda: None) -> NoReturn:
        while True:
            self._spin_until_due()
            if self.queue.run_due(self.clock()):
                after_batch()
            # Only what changes the timer: a timerfd_settime costs tens of µs on a VM, and
            # after_batch's submissions have usually armed it already (rearm). An expired
            # timer is disarmed by itself.
            due = self.queue.next_due()
            if due is None:
                if self._armed_at is not None:
                    self.timer.disarm()
            elif due != self._armed_at:
                self.timer.arm(due - self.lead_ns)
            self._armed_at = due
            await trio.lowlevel.wait_readable(self.timer.fd)
            self.wakeups += 1
            self.timer.clear()
            self._armed_at = None

    def _spin_until_due(self) -> None:
        due = self.queue.next_due()
        if due is not None and self.lead_ns:
            clock = self.clock
            while clock() < due <= clock() + self.lead_ns:
                pass

    def close(self) -> None:
        """Once run() has ended (its task cancelled)."""
        self.timer.close()
