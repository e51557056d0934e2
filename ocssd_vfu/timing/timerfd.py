"""A CLOCK_MONOTONIC timerfd (Linux), through ctypes: a file descriptor that becomes
readable at an absolute time with nanosecond resolution.

trio sleeps in epoll_wait, whose timeout is in milliseconds (trio rounds a deadline up to
the next millisecond), so `trio.sleep_until` cannot wake a loop 70 µs from now. A timerfd
registered with `trio.lowlevel.wait_readable` can. Python's `os.timerfd_create` arrived in
3.13; this project supports 3.11, hence libc through ctypes. `time.monotonic_ns()` reads
the same clock (CLOCK_MONOTONIC on Linux), so its values are deadlines here.
"""

from __future__ import annotations

import ctypes
import os

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
NS_PER_S = 1_000_000_000


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)
_timerfd_create = _libc.timerfd_create
_timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_timerfd_create.restype = ctypes.c_int
_timerfd_settime = _libc.timerfd_settime
_timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(Itimerspec),
                             ctypes.POINTER(Itimerspec)]
_timerfd_settime.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class Timerfd:
    """One-shot absolute timer; `fd` turns readable when it expires until `clear()`."""

    def __init__(self) -> None:
        self.fd = _check(_timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC),
                         "timerfd_create")
        self._spec = Itimerspec()

    def arm(self, deadline_ns: int) -> None:
        """Expire at `deadline_ns` (CLOCK_MONOTONIC); a past deadline expires at once."""
        deadline_ns = max(deadline_ns, 1)  # an all-zero time would disarm the timer
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(deadline_ns, NS_PER_S)
        _check(_timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None),
               "timerfd_settime")

    def disarm(self) -> None:
        self._spec.it_value.tv_sec = self._spec.it_value.tv_nsec = 0
        _check(_timerfd_settime(self.fd, 0, ctypes.byref(self._spec), None), "timerfd_settime")

    def clear(self) -> bool:
        """Consume an expiry; False if none was pending."""
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
