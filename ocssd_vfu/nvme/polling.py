"""Polling mode (`serve --poll`): the server reads the shadow doorbells in a loop
instead of waiting for MMIO doorbell writes (each one a vfio-user message: QEMU's
client has no ioeventfd, so polling is the only way to skip them).

Rules here (doorbells.py has the shadow doorbells and EventIdx themselves):
- While polling, each I/O queue's EventIdx is kept half a queue away from the value
  the controller last read (the SQ tail, the CQ head). The host rings only when
  EventIdx lies in [old, new) modulo 2^16, and its old value is at or past what the
  controller read (a host cannot lap a queue): it rings only after moving more than
  half a queue past that, in one update or while the controller did not look. One
  behind the value read, the obvious choice, rings whenever a host's update straddles
  a pass (the host wrote new, the pass read it and wrote new - 1, then the host read
  EventIdx): once in ~100 updates of tests/integration/test_poll_mode.py. It is
  written again on every pass.
- After `idle_ns` with no new command the controller stops polling: EventIdx is
  armed to ring as in interrupt mode (process()), with the re-arm race check (a value
  that moved between the read and the arming is run, and polling goes on). The shell
  then sleeps until a message, and a message starts polling again.
- Without shadow doorbells (the host never sent Doorbell Buffer Config, or the pages
  went away) every doorbell is an MMIO write anyway: nothing to poll.
"""

from __future__ import annotations

from dataclasses import dataclass

# Long enough to span the host's own time between two commands at queue depth 1 under
# QEMU TCG (~100-200 µs), so that QD1 I/O stays in polling mode; short enough that a
# burst's end costs ~1 ms of a host core (README "Polling mode").
DEFAULT_IDLE_US = 1000
MAX_IDLE_US = 1_000_000  # idle-time work (the FTL's GC) waits for interrupt mode


def polling_eventidx(value: int, size: int) -> int:
    """The EventIdx that keeps a host from ringing while the controller has read `value`."""
    return (value + size // 2) % size


@dataclass
class Backoff:
    """When polling stops: `idle_ns` after the last pass that found a new command."""

    idle_ns: int
    last_work_ns: int = 0

    def worked(self, now_ns: int) -> None:
        self.last_work_ns = now_ns

    def idle(self, now_ns: int) -> bool:
        return now_ns - self.last_work_ns >= self.idle_ns
