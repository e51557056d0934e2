"""Guest memory as the controller sees it: the regions the host mapped for DMA.

The vfio-user shell adds and removes regions as QEMU sends DMA_MAP/UNMAP (the
buffers are the mmaps libvfio-user made of guest RAM); tests add a bytearray.
Every guest address the controller touches is resolved here, so an address
outside the mapped regions is a DmaError, never a stray access.

The regions are also kept as a C table (`dma_table`) for the DMA shim
(native/dma.c, which resolves every guest address of a transfer before it copies
a byte: a bad one fails the command with neither side touched), rebuilt whenever
they change; each region's buffer stays
exported (cffi from_buffer) while it is mapped, so its pointer stays valid.
`generation` counts those changes: a view kept across commands (a queue's ring)
is good while the generation it was taken at is current. `dma_map` (a
`struct ocssd_dma_map`, native/doorbell.h) always points at the current table:
the C doorbell path reads the table through it, so no map or unmap can leave C
a stale pointer.

Each GuestMemory also holds the arrays the transfers hand the shim (segments,
scratch for the walk, the SGL range count), reused from command to command: one
controller's DMA runs on one thread.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass
from typing import Any

from ocssd_vfu.dma.native import ffi, lib


class DmaError(Exception):
    """A guest address range that is not (entirely) mapped."""


class TransferError(Exception):
    """A command's data or metadata pointer failed: `status` is its NVMe status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class Region:
    start: int
    length: int
    buffer: memoryview
    writable: bool
    host: Any  # cffi pointer to the buffer, held while the region is mapped

    @property
    def end(self) -> int:
        return self.start + self.length


class GuestMemory:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []
        # Released when the memory goes too: a garbage cycle must never free a buffer
        # that still has an export (a crash in the collector).
        weakref.finalize(self, _release_regions, self._regions)
        self.dma_table: Any = ffi.new("struct ocssd_dma_region[]", 0)
        self.dma_map: Any = ffi.new("struct ocssd_dma_map *")
        self.dma_map.regions = self.dma_table
        self.generation = 0
        # The transfers' reusable arrays (grown when a transfer needs more).
        self.dma_segments: Any = ffi.new("struct ocssd_dma_segment[]", 4)
        self.dma_scratch: Any = ffi.new("struct ocssd_dma_range[]", 64)
        self.dma_count: Any = ffi.new("size_t *")

    def add(self, start: int, buffer: memoryview | bytearray, writable: bool = True) -> None:
        view = memoryview(buffer).cast("B")
        if not 0 <= start <= (1 << 64) - len(view):
            raise ValueError(f"DMA region {start:#x}+{len(view):#x} is outside 64-bit space")
        index = bisect.bisect_left(self._starts, start)
        neighbours = self._regions[max(index - 1, 0):index + 1]
        if any(r.start < start + len(view) and start < r.end for r in neighbours):
            raise ValueError(f"DMA region {start:#x}+{len(view):#x} overlaps an existing one")
        # A writable region must be a writable buffer: the C side writes through it.
        host = ffi.from_buffer("uint8_t[]", view, require_writable=writable)
        self._starts.insert(index, start)
        self._regions.insert(index, Region(start, len(view), view, writable, host))
        self._rebuild_table()

    def remove(self, start: int) -> None:
        index = bisect.bisect_left(self._starts, start)
        if index == len(self._starts) or self._starts[index] != start:
            raise KeyError(start)
        del self._starts[index]
        region = self._regions.pop(index)
        self._rebuild_table()
        ffi.release(region.host)

    def _rebuild_table(self) -> None:
        table = ffi.new("struct ocssd_dma_region[]", len(self._regions))
        for i, region in enumerate(self._regions):
            entry = table[i]
            entry.start, entry.length = region.start, region.length
            entry.host, entry.writable = region.host, region.writable
        self.dma_map.regions, self.dma_map.count = table, len(table)
        self.dma_table = table  # the old one freed only now: dma_map no longer names it
        self.generation += 1

    def view(self, addr: int, length: int, write: bool = False) -> memoryview:
        """A view of guest memory [addr, addr+length) inside one region."""
        index = bisect.bisect_right(self._starts, addr) - 1
        if index >= 0:
            region = self._regions[index]
            offset = addr - region.start
            if offset + length <= region.length and length >= 0:
                if write and not region.writable:
                    raise DmaError(f"guest address {addr:#x} is mapped read-only")
                return region.buffer[offset:offset + length]
        raise DmaError(f"guest range {addr:#x}+{length:#x} is not mapped")

    def read(self, addr: int, length: int) -> bytes:
        return bytes(self.view(addr, length))

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self.view(addr, len(data), write=True)[:] = data

    @staticmethod
    def barrier() -> None:
        """A full memory barrier: orders our stores before our loads of memory
        the host's CPUs write at the same time (shadow doorbells)."""
        lib.ocssd_full_barrier()


def _release_regions(regions: list[Region]) -> None:
    for region in regions:
        ffi.release(region.host)
    regions.clear()
