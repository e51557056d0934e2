"""Guest memory as the controller sees it: the regions the host mapped for DMA.

The vfio-user shell adds and removes regions as QEMU sends DMA_MAP/UNMAP (the
buffers are the mmaps libvfio-user made of guest RAM); tests add a bytearray.
Every guest address the controller touches is resolved here, so an address
outside the mapped regions is a DmaError, never a stray access.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


class DmaError(Exception):
    """A guest address range that is not (entirely) mapped."""


@dataclass
class Region:
    start: int
    length: int
    buffer: memoryview
    writable: bool

    @property
    def end(self) -> int:
        return self.start + self.length


class GuestMemory:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []

    def add(self, start: int, buffer: memoryview | bytearray, writable: bool = True) -> None:
        view = memoryview(buffer).cast("B")
        region = Region(start, len(view), view, writable)
        index = bisect.bisect_left(self._starts, start)
        neighbours = self._regions[max(index - 1, 0):index + 1]
        if any(r.start < region.end and region.start < r.end for r in neighbours):
            raise ValueError(f"DMA region {start:#x}+{len(view):#x} overlaps an existing one")
        self._starts.insert(index, start)
        self._regions.insert(index, region)

    def remove(self, start: int) -> None:
        index = bisect.bisect_left(self._starts, start)
        if index == len(self._starts) or self._starts[index] != start:
            raise KeyError(start)
        del self._starts[index]
        del self._regions[index]

    def clear(self) -> None:
        self._starts.clear()
        self._regions.clear()

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
