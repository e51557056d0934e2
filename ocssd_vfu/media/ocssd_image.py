"""qemu-nvme's `ocssd` image format (block/ocssd.c), read, written and served.

File layout (ocssd-spec §5.1):
    header (40 bytes, padded to sec_size)
    namespace i at sec_size + i*ns_size:
        Geometry page (4096) | chunk log (chunks*32, rounded up to sec_size)
        | one "predefined data" sector | data (grp, pu, chk, sec order) | OOB (md_size each)
qemu-img writes only 40 + num_ns*ns_size bytes, so the end of the last OOB area
lies past the end of a file it made; serving extends the file (sparse) first.
The predefined-data sector is never written: unwritten reads are answered
from memory (the reference zeroes it at start-up, at the offset of data
sector 0, and so corrupts pblk's line 0 across restarts).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from construct import ConstructError

from ocssd_vfu.geometry.ocssd20 import AddressFormat, GeometryError, OcssdGeometry
from ocssd_vfu.media.raw import ImageError, open_locked
from ocssd_vfu.media.watch import ImageFile
from ocssd_vfu.spec.ocssd import (
    CHUNK_DESCRIPTOR_FORMAT,
    CHUNK_DESCRIPTOR_SIZE,
    GEOMETRY_SIZE,
    IMAGE_HEADER_SIZE,
    IMAGE_MAGIC_BYTES,
    IMAGE_VERSION,
    ChunkState,
    ChunkType,
    ImageHeader,
)

log = logging.getLogger("ocssd_vfu.media")

MAX_NAMESPACES = 64


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


@dataclass(frozen=True)
class NamespaceLayout:
    """Where namespace `index`'s parts lie in the file."""

    index: int
    geometry: OcssdGeometry

    @property
    def size(self) -> int:
        g = self.geometry
        return (g.sectors * (g.sec_size + g.md_size) + GEOMETRY_SIZE + self.log_size
                + g.sec_size)

    @property
    def offset(self) -> int:
        return self.geometry.sec_size + self.index * self.size

    @property
    def log_offset(self) -> int:
        return self.offset + GEOMETRY_SIZE

    @property
    def log_size(self) -> int:
        g = self.geometry
        return round_up(g.chunks * CHUNK_DESCRIPTOR_SIZE, g.sec_size)

    @property
    def data_offset(self) -> int:
        return self.log_offset + self.log_size + self.geometry.sec_size

    @property
    def md_offset(self) -> int:
        return self.data_offset + self.geometry.sectors * self.geometry.sec_size


def fresh_chunk_log(geometry: OcssdGeometry) -> bytes:
    """Every chunk FREE, sequential, WLI 0, WP 0 (what qemu-img writes)."""
    fmt = AddressFormat(geometry)
    return b"".join(
        CHUNK_DESCRIPTOR_FORMAT.pack(ChunkState.FREE, ChunkType.SEQUENTIAL_WRITE, 0,
                                     fmt.chunk_lba(i), geometry.num_sec, 0)
        for i in range(geometry.chunks))


def file_size(geometry: OcssdGeometry, num_ns: int) -> int:
    """The size qemu-img gives the file (the header's 40 bytes, not a whole sector)."""
    return IMAGE_HEADER_SIZE + num_ns * NamespaceLayout(0, geometry).size


def create_image(path: Path, geometry: OcssdGeometry, num_ns: int = 1,
                 overwrite: bool = False) -> None:
    """Write a fresh image, byte-identical to `qemu-img create -f ocssd` with the same options.

    Only the header, geometry pages and chunk logs are written; the rest is a hole.
    """
    page, log = geometry.to_bytes(), fresh_chunk_log(geometry)
    pages = ((offset, data) for ns in (NamespaceLayout(i, geometry) for i in range(num_ns))
             for offset, data in ((ns.offset, page), (ns.log_offset, log)))
    write_new_image(path, geometry.sec_size, geometry.md_size, num_ns,
                    NamespaceLayout(0, geometry).size, pages, file_size(geometry, num_ns),
                    overwrite)


def write_new_image(path: Path, sec_size: int, md_size: int, num_ns: int, ns_size: int,
                    pages: Iterable[tuple[int, bytes]], size: int, overwrite: bool) -> None:
    """Create `path` (never over an existing file unless `overwrite`) as an image of
    `num_ns` namespaces: the LNVM header, `pages` (offset, bytes), and holes up to
    `size` bytes. Nothing is left behind on failure."""
    if not 1 <= num_ns <= MAX_NAMESPACES:
        raise ImageError(f"num_ns={num_ns}: must be 1..{MAX_NAMESPACES}")
    # Overwriting takes the lock `serve` holds: a served image is never re-created.
    lock = open_locked(path, os.O_RDONLY) if overwrite and os.path.lexists(path) else None
    try:
        _write_new_image(path, sec_size, md_size, num_ns, ns_size, pages, size, overwrite)
    finally:
        if lock is not None:
            os.close(lock)


def _write_new_image(path: Path, sec_size: int, md_size: int, num_ns: int, ns_size: int,
                     pages: Iterable[tuple[int, bytes]], size: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise ImageError(f"{path} exists: refusing to overwrite it (use --force)") from None
    except OSError as exc:
        raise ImageError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.pwrite(fd, ImageHeader.build(dict(
            version=IMAGE_VERSION, num_namespaces=num_ns, sector_size=sec_size,
            md_size=md_size, ns_size=ns_size)), 0)
        for offset, data in pages:
            os.pwrite(fd, data, offset)
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ImageError(f"cannot write {path}: {exc.strerror}") from exc
    os.close(fd)


@dataclass(frozen=True)
class ImageDescription:
    """An image's header and geometry, read and checked without mapping it."""

    num_ns: int
    geometry: OcssdGeometry
    file_size: int

    @property
    def full_size(self) -> int:
        """The size the layout needs (the header padded to a whole sector)."""
        return self.geometry.sec_size + self.num_ns * NamespaceLayout(0, self.geometry).size

    def layouts(self) -> list[NamespaceLayout]:
        return [NamespaceLayout(i, self.geometry) for i in range(self.num_ns)]


def is_ocssd_image(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(IMAGE_MAGIC_BYTES)) == IMAGE_MAGIC_BYTES
    except OSError:
        return False


def read_header(fd: int, path: Path) -> tuple[Any, int]:
    """The image header, checked (both 2.0 and 1.2 images have it), and the file's size."""
    try:
        return _read_header(fd, path)
    except OSError as exc:  # a directory, an I/O error
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from exc


def _read_header(fd: int, path: Path) -> tuple[Any, int]:
    size = os.fstat(fd).st_size
    raw = os.pread(fd, IMAGE_HEADER_SIZE, 0)
    if len(raw) < IMAGE_HEADER_SIZE:
        raise ImageError(f"{path}: truncated: {size} bytes, the header alone needs "
                         f"{IMAGE_HEADER_SIZE}")
    if raw[:len(IMAGE_MAGIC_BYTES)] != IMAGE_MAGIC_BYTES:
        raise ImageError(f"{path}: magic {raw[:4]!r}: not an OCSSD image (expected b'MVNL')")
    try:
        header = ImageHeader.parse(raw)
    except ConstructError as exc:
        raise ImageError(f"{path}: unreadable header: {exc}") from exc
    if header.version != IMAGE_VERSION:
        raise ImageError(f"{path}: version {header.version}: only version {IMAGE_VERSION} "
                         "images exist")
    if not 1 <= header.num_namespaces <= MAX_NAMESPACES:
        raise ImageError(f"{path}: num_namespaces {header.num_namespaces}: must be "
                         f"1..{MAX_NAMESPACES}")
    sec_size = header.sector_size
    if sec_size < 512 or sec_size & (sec_size - 1) or sec_size > 1 << 16:
        raise ImageError(f"{path}: sector_size {sec_size}: must be a power of two, 512..65536")
    return header, size


def describe(fd: int, path: Path) -> ImageDescription:
    header, size = read_header(fd, path)
    sec_size = header.sector_size
    geometries = []
    for index in range(header.num_namespaces):
        offset = sec_size + index * header.ns_size
        page = os.pread(fd, GEOMETRY_SIZE, offset)
        if len(page) < GEOMETRY_SIZE:
            raise ImageError(f"{path}: truncated: {size} bytes, namespace {index + 1}'s "
                             f"geometry is at {offset}")
        try:
            geometries.append(OcssdGeometry.from_bytes(page, sec_size, header.md_size))
        except GeometryError as exc:
            raise ImageError(f"{path}: namespace {index + 1}: {exc}") from exc
    if any(g != geometries[0] for g in geometries):
        raise ImageError(f"{path}: namespaces have different geometries")
    description = ImageDescription(header.num_namespaces, geometries[0], size)
    expected_ns_size = NamespaceLayout(0, geometries[0]).size
    if header.ns_size != expected_ns_size:
        raise ImageError(f"{path}: ns_size {header.ns_size}: the geometry needs "
                         f"{expected_ns_size}")
    needed = file_size(geometries[0], header.num_namespaces)
    if size < needed:
        raise ImageError(f"{path}: truncated: {size} bytes, the layout needs {needed}")
    return description


D = TypeVar("D")


def open_described(path: Path, volatile: bool, describe: Callable[[int, Path], D]
                   ) -> tuple[int, D]:
    """The image opened and locked (read-only when `volatile`) and what `describe` reads
    of it; the file is closed again if that fails."""
    fd = open_locked(path, os.O_RDONLY if volatile else os.O_RDWR)
    try:
        return fd, describe(fd, path)
    except BaseException:
        os.close(fd)
        raise


class MappedImage:
    """An image file mapped for serving: MAP_SHARED, or in RAM only (`volatile`).

    The volatile copy is an anonymous mapping filled from the file's allocated
    extents only, so even a sparse 15 GiB image loads in moments and the file
    is never written. Takes over `fd` (closed on failure and by `close`).
    """

    def __init__(self, path: Path, fd: int, full_size: int, file_size: int,
                 volatile: bool) -> None:
        self.path = path
        self.volatile = volatile
        self.fd = fd
        try:
            self.map = self._map(full_size, file_size)
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map)
        self._handed_out: list[memoryview] = []
        self.file = None if volatile else ImageFile(path, fd, self.map, full_size)

    def reserve(self, start: int, length: int) -> bool:
        """Space for writes to [start, start+length) (False: the file system is full)."""
        return self.file is None or self.file.reserve(start, length)

    def _map(self, size: int, file_size: int) -> mmap.mmap:
        if self.volatile:
            try:
                memory = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            except OSError as exc:  # refused up front rather than killed when RAM runs out
                raise ImageError(f"{self.path}: --volatile keeps the image in memory, and "
                                 f"{size} bytes do not fit ({exc.strerror})") from None
            _load_extents(self.fd, memory, min(size, file_size))
            return memory
        if file_size < size:
            log.info("image %s: extending %d -> %d bytes (qemu-img leaves the end of the "
                     "last OOB area out of the file)", self.path, file_size, size)
            os.ftruncate(self.fd, size)
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def area(self, offset: int, size: int) -> memoryview:
        """A view of [offset, offset + size), released when the image closes."""
        view = self.view[offset:offset + size]
        self._handed_out.append(view)
        return view

    def sync(self) -> None:
        """Make every write so far durable (runs in a worker thread)."""
        if self.volatile:
            return
        self.map.flush()
        os.fsync(self.fd)

    def close(self) -> None:
        self.sync()
        if self.file is not None:
            self.file.close()
        for view in (*self._handed_out, self.view):
            view.release()
        with contextlib.suppress(BufferError):  # a view still held elsewhere: unmapped at exit
            self.map.close()
        os.close(self.fd)


class OcssdImage(MappedImage):
    """A qemu-nvme OCSSD 2.0 image mapped for serving."""

    def __init__(self, path: Path, volatile: bool = False) -> None:
        fd, self.description = open_described(path, volatile, describe)
        super().__init__(path, fd, self.description.full_size, self.description.file_size,
                         volatile)
        for layout in self.description.layouts():  # written in place by every chunk change
            if not self.reserve(layout.log_offset, layout.log_size):
                self.close()
                raise ImageError(f"image {path}: no space left for the chunk table")

    def chunk_reserver(self, layout: NamespaceLayout) -> Callable[[int], bool]:
        """Reserves a chunk's data and OOB as it opens: False when the disk is full."""
        g = layout.geometry
        data, oob = g.num_sec * g.sec_size, g.num_sec * g.md_size

        def reserve(chunk: int) -> bool:
            return self.reserve(layout.data_offset + chunk * data, data) and \
                self.reserve(layout.md_offset + chunk * oob, oob)
        return reserve

    def namespace_views(self, layout: NamespaceLayout) -> tuple[memoryview, memoryview,
                                                                 memoryview]:
        """(chunk log, data, OOB) views of one namespace."""
        g = layout.geometry
        return (self.area(layout.log_offset, g.chunks * CHUNK_DESCRIPTOR_SIZE),
                self.area(layout.data_offset, g.sectors * g.sec_size),
                self.area(layout.md_offset, g.sectors * g.md_size))


def _load_extents(fd: int, memory: mmap.mmap, size: int) -> None:
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:
            return  # no data after offset (ENXIO)
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        while start < end:
            chunk = os.pread(fd, min(end - start, 1 << 24), start)
            memory[start:start + len(chunk)] = chunk
            start += len(chunk)
        offset = end
