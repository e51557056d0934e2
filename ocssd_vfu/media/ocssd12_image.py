"""The OCSSD 1.2 variant of qemu-nvme's `ocssd` image (docs/image-format.md).

Same container as 2.0: the 40-byte LNVM header, padded to sec_size, then each
namespace at sec_size + i*ns_size. A 1.2 namespace holds, each part rounded up
to a multiple of max(4096, sec_size) bytes:
    Identity page (the E2h payload; byte 0 = 1, where a 2.0 Geometry has 2)
    | bad-block table (one byte per plane block, LUN after LUN, as F2h returns them)
    | block records (pages programmed u16, erase count u16, per plane block)
    | data (block after block; in a block page, then plane, then sector)
    | OOB (md_size per sector, same order)
The file is exactly sec_size + num_ns*ns_size bytes, sparse; only the header,
identities and bad-block tables are written at creation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from construct import ConstructError

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import GeometryError
from ocssd_vfu.media.ocssd_image import (
    MappedImage,
    open_described,
    read_header,
    round_up,
    write_new_image,
)
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.spec.ocssd import ImageHeader
from ocssd_vfu.spec.ocssd12 import BLOCK_RECORD_SIZE, IDENTITY_SIZE

SPEC_12, SPEC_20 = 1, 2   # byte 0 of the namespace's first page


@dataclass(frozen=True)
class Layout12:
    """Where namespace `index`'s parts lie in the file."""

    index: int
    geometry: Ocssd12Geometry

    @property
    def unit(self) -> int:
        return max(IDENTITY_SIZE, self.geometry.sec_size)

    @property
    def bbt_size(self) -> int:
        return round_up(self.geometry.plane_blocks, self.unit)

    @property
    def records_size(self) -> int:
        return round_up(self.geometry.plane_blocks * BLOCK_RECORD_SIZE, self.unit)

    @property
    def size(self) -> int:
        g = self.geometry
        return (round_up(IDENTITY_SIZE, self.unit) + self.bbt_size + self.records_size
                + g.sectors * (g.sec_size + g.md_size))

    @property
    def offset(self) -> int:
        return self.geometry.sec_size + self.index * self.size

    @property
    def bbt_offset(self) -> int:
        return self.offset + round_up(IDENTITY_SIZE, self.unit)

    @property
    def records_offset(self) -> int:
        return self.bbt_offset + self.bbt_size

    @property
    def data_offset(self) -> int:
        return self.records_offset + self.records_size

    @property
    def md_offset(self) -> int:
        return self.data_offset + self.geometry.sectors * self.geometry.sec_size


def file_size(geometry: Ocssd12Geometry, num_ns: int) -> int:
    return geometry.sec_size + num_ns * Layout12(0, geometry).size


def create_image(path: Path, geometry: Ocssd12Geometry, bad_blocks: bytes | None = None,
                 num_ns: int = 1, overwrite: bool = False) -> None:
    """Write a fresh 1.2 image: every block erased, `bad_blocks` (one value per plane
    block, table order) as each namespace's bad-block table."""
    table = bad_blocks if bad_blocks is not None else bytes(geometry.plane_blocks)
    assert len(table) == geometry.plane_blocks
    identity = geometry.to_bytes()
    pages = ((offset, data) for ns in (Layout12(i, geometry) for i in range(num_ns))
             for offset, data in ((ns.offset, identity), (ns.bbt_offset, table))
             if any(data))
    write_new_image(path, geometry.sec_size, geometry.md_size, num_ns,
                    Layout12(0, geometry).size, pages, file_size(geometry, num_ns), overwrite)


def spec_version(path: Path) -> int:
    """SPEC_12 or SPEC_20 (byte 0 of namespace 1's first page); 0 if unreadable."""
    try:
        with path.open("rb") as f:
            header = ImageHeader.parse(f.read(ImageHeader.sizeof()))
            f.seek(header.sector_size)
            return f.read(1)[0]
    except (OSError, IndexError, ConstructError):
        return 0


@dataclass(frozen=True)
class Description12:
    """A 1.2 image's header and geometry, read and checked without mapping it."""

    num_ns: int
    geometry: Ocssd12Geometry
    file_size: int

    @property
    def full_size(self) -> int:
        return file_size(self.geometry, self.num_ns)

    def layouts(self) -> list[Layout12]:
        return [Layout12(i, self.geometry) for i in range(self.num_ns)]


def describe(fd: int, path: Path) -> Description12:
    header, size = read_header(fd, path)
    geometries = []
    for index in range(header.num_namespaces):
        offset = header.sector_size + index * header.ns_size
        page = os.pread(fd, IDENTITY_SIZE, offset)
        if len(page) < IDENTITY_SIZE:
            raise ImageError(f"{path}: truncated: {size} bytes, namespace {index + 1}'s "
                             f"identity is at {offset}")
        try:
            geometry = Ocssd12Geometry.from_bytes(page)
        except GeometryError as exc:
            raise ImageError(f"{path}: namespace {index + 1}: {exc}") from exc
        if (geometry.sec_size, geometry.md_size) != (header.sector_size, header.md_size):
            raise ImageError(f"{path}: namespace {index + 1}: csecs/sos {geometry.sec_size}/"
                             f"{geometry.md_size}, the header says {header.sector_size}/"
                             f"{header.md_size}")
        geometries.append(geometry)
    if any(g != geometries[0] for g in geometries):
        raise ImageError(f"{path}: namespaces have different geometries")
    expected_ns_size = Layout12(0, geometries[0]).size
    if header.ns_size != expected_ns_size:
        raise ImageError(f"{path}: ns_size {header.ns_size}: the geometry needs "
                         f"{expected_ns_size}")
    description = Description12(header.num_namespaces, geometries[0], size)
    if size < description.full_size:
        raise ImageError(f"{path}: truncated: {size} bytes, the layout needs "
                         f"{description.full_size}")
    return description


class Ocssd12Image(MappedImage):
    """An OCSSD 1.2 image mapped for serving."""

    def __init__(self, path: Path, volatile: bool = False) -> None:
        fd, self.description = open_described(path, volatile, describe)
        super().__init__(path, fd, self.description.full_size, self.description.file_size,
                         volatile)
        for layout in self.description.layouts():  # written in place by programs and erases
            g = layout.geometry
            if not (self.reserve(layout.bbt_offset, g.plane_blocks) and self.reserve(
                    layout.records_offset, g.plane_blocks * BLOCK_RECORD_SIZE)):
                self.close()
                raise ImageError(f"image {path}: no space left for the block tables")

    def sector_reserver(self, layout: Layout12) -> Callable[[int, int], bool]:
        """Reserves the data and OOB of sectors as a page program is about to write them:
        False when the disk is full."""
        g = layout.geometry

        def reserve(first: int, count: int) -> bool:
            return self.reserve(layout.data_offset + first * g.sec_size, count * g.sec_size) \
                and self.reserve(layout.md_offset + first * g.md_size, count * g.md_size)
        return reserve

    def namespace_views(self, layout: Layout12) -> tuple[memoryview, memoryview, memoryview,
                                                          memoryview]:
        """(bad-block table, block records, data, OOB) views of one namespace."""
        g = layout.geometry
        return (self.area(layout.bbt_offset, g.plane_blocks),
                self.area(layout.records_offset, g.plane_blocks * BLOCK_RECORD_SIZE),
                self.area(layout.data_offset, g.sectors * g.sec_size),
                self.area(layout.md_offset, g.sectors * g.md_size))
