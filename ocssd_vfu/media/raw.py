"""A plain NVMe image: any raw file, mmap'd, locked against a second server."""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from pathlib import Path

log = logging.getLogger("ocssd_vfu.media")


class ImageError(Exception):
    """The image cannot be served; the message says why."""


def open_locked(path: Path, flags: int) -> int:
    """Open an image and lock it, so that a second server cannot serve it at the same time."""
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ImageError(f"cannot open image {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ImageError(f"image {path} is in use by another server (locked)") from None
    return fd


class RawImage:
    def __init__(self, path: Path, lba_size: int) -> None:
        if lba_size not in (512, 4096):
            raise ImageError(f"--sec-size must be 512 or 4096, not {lba_size}")
        self.fd = open_locked(path, os.O_RDWR)
        size = os.fstat(self.fd).st_size
        usable = size - size % lba_size
        if usable == 0:
            os.close(self.fd)
            raise ImageError(f"image {path} is smaller than one {lba_size}-byte block")
        if usable != size:
            log.warning("image %s: %d bytes are not a multiple of %d; the last %d are not used",
                        path, size, lba_size, size - usable)
        self.path = path
        self.lba_size = lba_size
        self.map = mmap.mmap(self.fd, usable, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)

    def sync(self) -> None:
        """Make every write so far durable (runs in a worker thread)."""
        self.map.flush()
        os.fsync(self.fd)

    def close(self) -> None:
        self.view.release()
        self.sync()
        self.map.close()
        os.close(self.fd)
