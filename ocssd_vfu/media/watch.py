"""The image file under a serving server: space reserved before writes land, and the
file watched for what other processes do to it.

- Space: a sparse image on a full file system cannot take a write fault (SIGBUS in the
  copy). `reserve` allocates a range (fallocate, KEEP_SIZE) before the write that needs it
  (a plain namespace's written blocks; an OCSSD chunk's data and OOB when it opens), so a
  full disk is an NVMe status on that write (Capacity Exceeded | DNR) and nothing else.
- The file: truncated (shorter than the mapping), unlinked, or replaced at its path
  (another inode there) means later writes would fault or be lost; `problem()` says so
  in one line and the shell stops I/O to the image (Controller.fail_media). A fault in
  the mapping outside the guarded copies (native/guard.h patched a zero page over it)
  means the same.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import weakref
from pathlib import Path

from ocssd_vfu.dma.native import ffi, lib

FALLOC_FL_KEEP_SIZE = 0x01  # <linux/falloc.h>: a truncated file is not grown back
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_watched: weakref.WeakSet[ImageFile] = weakref.WeakSet()  # the open ones


class ImageFile:
    """An open, mapped image: `size` bytes of it mapped from offset 0."""

    def __init__(self, path: Path, fd: int, mapping: mmap.mmap, size: int) -> None:
        self.path, self.fd, self.size = path, fd, size
        self.unreservable = False
        self._identity = _identity(os.fstat(fd))
        export = ffi.from_buffer(mapping)
        self._address = ffi.cast("void *", export)
        ffi.release(export)  # the address stays valid while the mapping is open
        lib.ocssd_guard_watch(self._address, size, lib.OCSSD_GUARD_IMAGE)
        _watched.add(self)

    def reserve(self, start: int, length: int) -> bool:
        """Allocate [start, start+length) of the file; False: no space left."""
        if length <= 0 or self.unreservable:
            return True
        if _libc.fallocate(self.fd, FALLOC_FL_KEEP_SIZE, start, length) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            return False
        if err == errno.EOPNOTSUPP:  # the guarded copy is all there is on this file system
            self.unreservable = True
            return True
        raise OSError(err, f"fallocate({self.path}): {os.strerror(err)}")

    def problem(self) -> str | None:
        """Why the image can no longer be served, in one line, or None."""
        st = os.fstat(self.fd)
        if st.st_nlink == 0:
            return f"image {self.path} was deleted or replaced: refusing I/O (writes " \
                   "would be lost)"
        try:
            there = _identity(os.stat(self.path))
        except OSError:
            there = None
        if there != self._identity:
            return f"image {self.path} was replaced by another file: refusing I/O (writes " \
                   "would go to the old one)"
        if st.st_size < self.size:
            return f"image {self.path} was truncated to {st.st_size} bytes (serving needs " \
                   f"{self.size}): refusing I/O"
        return None

    def close(self) -> None:
        lib.ocssd_guard_unwatch(self._address)
        _watched.discard(self)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class Monitor:
    """What the shell checks after each wake-up (cheap: two counters) and every second
    (the files): the first image problem, and whether guest memory went away."""

    def __init__(self) -> None:
        self._image_faults = lib.ocssd_guard_faults(lib.OCSSD_GUARD_IMAGE)
        self._guest_patched = lib.ocssd_guard_patched(lib.OCSSD_GUARD_GUEST)

    def guest_memory_lost(self) -> bool:
        """A client's memory shrank under an unguarded access since the last call."""
        patched = lib.ocssd_guard_patched(lib.OCSSD_GUARD_GUEST)
        lost, self._guest_patched = patched != self._guest_patched, patched
        return lost

    def image_faulted(self) -> bool:
        faults = lib.ocssd_guard_faults(lib.OCSSD_GUARD_IMAGE)
        faulted, self._image_faults = faults != self._image_faults, faults
        return faulted

    @staticmethod
    def image_problem() -> str | None:
        patched = lib.ocssd_guard_patched(lib.OCSSD_GUARD_IMAGE)
        for image in _watched:
            problem = image.problem()
            if problem:
                return problem
        if patched:
            return "the image mapping faulted outside a guarded copy (file truncated or " \
                   "file system full): refusing I/O"
        return None
