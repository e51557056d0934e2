"""Buffers that end (and start) at PROT_NONE guard pages.

AddressSanitizer does not see an overrun inside an mmap, and Python's own
slices are bounds-checked anyway: what can stray is the C shim, writing
through a pointer the controller gave it. Each buffer here is placed so that
its last byte is the last byte before a guard page (and, for a whole number
of pages, its first byte the first after another), so one byte too far is a
SIGSEGV (the fuzz run dies with faulthandler's traceback) instead of silent
corruption.
"""

from __future__ import annotations

import ctypes
import mmap

from ocssd_vfu.vfu.binding import ffi

PAGE = mmap.PAGESIZE
PROT_NONE = 0  # not in the mmap module
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _protect(address: int, length: int, prot: int) -> None:
    if _libc.mprotect(address, length, prot) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")


class Guarded:
    """`size` bytes (filled with `fill`), guard pages on both sides; `view` is
    read-only (and the pages PROT_READ) when `writable` is false."""

    def __init__(self, size: int, fill: bytes = b"", writable: bool = True) -> None:
        pages = -(-size // PAGE) * PAGE
        self._map = mmap.mmap(-1, pages + 2 * PAGE)
        pointer = ffi.from_buffer(self._map)
        base = int(ffi.cast("uintptr_t", pointer))
        ffi.release(pointer)
        start = PAGE + pages - size  # flush against the upper guard page
        self._map[start:start + len(fill)] = fill
        _protect(base, PAGE, PROT_NONE)
        _protect(base + PAGE + pages, PAGE, PROT_NONE)
        if not writable:
            _protect(base + PAGE, pages, mmap.PROT_READ)
        view = memoryview(self._map)[start:start + size]
        self.view = view if writable else view.toreadonly()
