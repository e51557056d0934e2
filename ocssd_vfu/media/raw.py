"""A plain NVMe image: any raw file, mmap'd, locked against a second server.

The file's holes are the namespace's deallocated blocks: deallocating punches a
hole (MADV_REMOVE through the shared mapping) and a block is allocated when no
hole overlaps it (SEEK_HOLE), so the state survives restarts with no metadata
of its own. Holes have the file system's block granularity: a deallocation
smaller than that only zeroes the bytes, which then count as written.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import stat
from pathlib import Path

from ocssd_vfu.media.watch import ImageFile

log = logging.getLogger("ocssd_vfu.media")


class ImageError(Exception):
    """The image cannot be served; the message says why."""


def open_locked(path: Path, flags: int) -> int:
    """Open an image and lock it, so that a second server cannot serve it at the same time."""
    try:  # O_NONBLOCK: a FIFO put there since the start-up checks must not hang us
        fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageError(f"cannot open image {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"image {path} is not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ImageError(f"image {path} is in use by another server (locked)") from None
    return fd


class RawImage:
    """The whole file is mapped: a Format NVM may change how much of it blocks use."""

    def __init__(self, path: Path, lba_size: int, md_size: int = 0) -> None:
        if lba_size not in (512, 4096):
            raise ImageError(f"--sec-size must be 512 or 4096, not {lba_size}")
        self.fd = open_locked(path, os.O_RDWR)
        size = os.fstat(self.fd).st_size
        block = lba_size + md_size
        unused = size % block
        if size < block:
            os.close(self.fd)
            raise ImageError(f"image {path} is smaller than one {block}-byte block")
        if unused:
            log.warning("image %s: %d bytes are not a multiple of %d; the last %d are not used",
                        path, size, block, unused)
        self.path = path
        self.lba_size = lba_size
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self.file = ImageFile(path, self.fd, self.map, size)
        self.punches_holes = True

    def reserve(self, start: int, length: int) -> bool:
        """Space for a write to [start, start+length) (False: the file system is full)."""
        return self.file.reserve(start, length)

    def deallocate(self, start: int, length: int) -> None:
        """Zero [start, start+length) and give back the file system blocks inside it."""
        end = start + length
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = end - end % mmap.PAGESIZE
        if first >= last:
            self.view[start:end] = bytes(length)
            return
        self.view[start:first] = bytes(first - start)
        self.view[last:end] = bytes(end - last)
        if not self.punches_holes:
            _zero(self.view[first:last])
            return
        try:
            self.map.madvise(mmap.MADV_REMOVE, first, last - first)
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            # ramfs and the like: the blocks stay allocated, their bytes read as zeroes.
            log.warning("image %s: its file system cannot punch holes; deallocating writes "
                        "zeroes", self.path)
            self.punches_holes = False
            _zero(self.view[first:last])

    def allocated(self, start: int, length: int) -> bool:
        """Whether no hole overlaps [start, start+length)."""
        return os.lseek(self.fd, start, os.SEEK_HOLE) >= start + length

    def sync(self) -> None:
        """Make every write so far durable (runs in a worker thread)."""
        self.map.flush()
        os.fsync(self.fd)

    def close(self) -> None:
        self.file.close()
        self.view.release()
        self.sync()
        self.map.close()
        os.close(self.fd)


ZEROES = bytes(1 << 20)


def _zero(target: memoryview) -> None:
    for at in range(0, len(target), len(ZEROES)):
        piece = target[at:at + len(ZEROES)]
        piece[:] = ZEROES[:len(piece)]
