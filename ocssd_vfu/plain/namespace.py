"""A plain NVM namespace over a byte buffer (the mmap'd image, or a bytearray).

Layout (QEMU hw/nvme's): with N = len(storage) // (LBA size + metadata size)
blocks, the data of block i is at i * LBA size and its metadata after all the
data, at N * LBA size + i * metadata size. The layout depends on the LBA format,
which a raw file does not record: the server is started with the format
(`--sec-size`, `--md-size`, `--extended-lba`), and after a Format NVM it must
be started again with the new one to see the same blocks.

The host sees metadata either in a separate buffer (MPTR) or, in an extended
LBA format (FLBAS bit 4), interleaved after each block's data; the storage
layout is the same for both.

Deallocated blocks read as zeroes (DLFEAT 001b); the `allocation` (the image
file) tells deallocated blocks from written ones for DULBE. Blocks made
uncorrectable by Write Uncorrectable are kept in memory only: a restart of the
server forgets them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ocssd_vfu.nvme.kind import NamespaceKind, check_lba_range
from ocssd_vfu.spec.nvme import (
    FLBAS_EXTENDED,
    Dlfeat,
    IdentifyNamespace,
    MetadataCapabilities,
    Nsfeat,
    blank,
)
from ocssd_vfu.spec.status import DNR, Status


class Allocation(Protocol):
    def deallocate(self, start: int, length: int) -> None: ...

    def allocated(self, start: int, length: int) -> bool: ...

    def reserve(self, start: int, length: int) -> bool: ...


@dataclass(frozen=True)
class LbaFormat:
    lba_size: int
    md_size: int


# QEMU's list, so that a guest sees the formats it knows from an emulated NVMe drive.
STANDARD_FORMATS = tuple(LbaFormat(size, md) for size in (512, 4096) for md in (0, 8, 16, 64))

FS_BLOCK = 4096                  # granularity of the image's holes
ZEROES = memoryview(bytes(1 << 20))  # Write Zeroes covers up to 256 MiB: zeroed in pieces


def _zero(target: memoryview) -> None:
    for at in range(0, len(target), len(ZEROES)):
        piece = target[at:at + len(ZEROES)]
        piece[:] = ZEROES[:len(piece)]


def lba_formats(lba_size: int, md_size: int) -> tuple[LbaFormat, ...]:
    """The formats a namespace offers: the standard ones, plus the one asked for if it is
    not among them (as QEMU adds a format for its `ms` property)."""
    wanted = LbaFormat(lba_size, md_size)
    return STANDARD_FORMATS if wanted in STANDARD_FORMATS else STANDARD_FORMATS + (wanted,)


class BlockRanges:
    """Disjoint, sorted, non-adjacent [start, end) ranges of blocks: as small as the
    guest's commands made them, whatever their lengths."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.starts)

    def add(self, start: int, end: int) -> None:
        first = bisect.bisect_left(self.ends, start)      # touching or after `start`
        last = bisect.bisect_right(self.starts, end)      # touching or before `end`
        if first < last:
            start, end = min(start, self.starts[first]), max(end, self.ends[last - 1])
        self.starts[first:last], self.ends[first:last] = [start], [end]

    def remove(self, start: int, end: int) -> None:
        first = bisect.bisect_right(self.ends, start)
        last = bisect.bisect_left(self.starts, end)
        if first >= last:
            return
        kept = [(self.starts[first], start)] if self.starts[first] < start else []
        if self.ends[last - 1] > end:
            kept.append((end, self.ends[last - 1]))
        self.starts[first:last] = [a for a, _ in kept]
        self.ends[first:last] = [b for _, b in kept]

    def overlaps(self, start: int, end: int) -> bool:
        index = bisect.bisect_right(self.ends, start)
        return index < len(self.starts) and self.starts[index] < end

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()


class PlainNamespace:
    kind: ClassVar[NamespaceKind]  # its command table: commands.py registers it

    def __init__(self, nsid: int, storage: memoryview, lba_size: int, md_size: int = 0,
                 extended: bool = False, allocation: Allocation | None = None) -> None:
        self.nsid = nsid
        self.storage = storage
        self.formats = lba_formats(lba_size, md_size)
        self.allocation = allocation
        self.uncorrectable = BlockRanges()
        self.format(self.formats.index(LbaFormat(lba_size, md_size)), extended)

    @property
    def supports_dulbe(self) -> bool:
        return self.allocation is not None

    def format(self, index: int, extended: bool) -> None:
        """Switch to LBA format `index` (its blocks start at the file's start again)."""
        lbaf = self.formats[index]
        self.format_index, self.extended = index, extended
        self.lba_size, self.md_size = lbaf.lba_size, lbaf.md_size
        self.lba_shift = lbaf.lba_size.bit_length() - 1
        self.nlbas = len(self.storage) // (lbaf.lba_size + lbaf.md_size)
        self.md_offset = self.nlbas * lbaf.lba_size
        # Bytes per block in the host's data buffer.
        self.host_block_size = lbaf.lba_size + (lbaf.md_size if extended else 0)
        self.uncorrectable.clear()

    def identify(self) -> bytes:
        ident = blank(IdentifyNamespace)
        granularity = max(FS_BLOCK // self.lba_size, 1) - 1  # 0-based
        ident.update(dict(
            nsze=self.nlbas, ncap=self.nlbas, nuse=self.nlbas,
            nsfeat=Nsfeat.OPTPERF | (Nsfeat.DULBE if self.supports_dulbe else 0),
            nlbaf=len(self.formats) - 1,
            flbas=self.format_index | (FLBAS_EXTENDED if self.extended else 0),
            mc=MetadataCapabilities.EXTENDED | MetadataCapabilities.SEPARATE,
            dlfeat=Dlfeat.READS_ZEROES | Dlfeat.WRITE_ZEROES_DEALLOCATES,
            npdg=granularity, npda=granularity,
            nvmcap=(self.nlbas * self.lba_size).to_bytes(16, "little")))
        for entry, lbaf in zip(ident.lbaf, self.formats, strict=False):
            entry.lbads = lbaf.lba_size.bit_length() - 1
            entry.ms = lbaf.md_size
        return IdentifyNamespace.build(ident)

    def flush_write_cache(self) -> None:
        """Nothing is cached: every write is in the image when it completes."""

    # -- checks -----------------------------------------------------------------------------
    def check_range(self, slba: int, nlb: int) -> int:
        return check_lba_range(self.nlbas, slba, nlb)

    def check_readable(self, slba: int, nlb: int, dulbe: bool) -> int:
        """Unrecovered Read Error on an uncorrectable block; with DULBE, Deallocated or
        Unwritten Logical Block on a deallocated one."""
        if self.uncorrectable and self.uncorrectable.overlaps(slba, slba + nlb):
            return Status.UNRECOVERED_READ | DNR
        if dulbe and self.allocation is not None and not self.allocation.allocated(
                slba * self.lba_size, nlb * self.lba_size):
            return Status.DEALLOCATED_OR_UNWRITTEN | DNR
        return Status.SUCCESS

    # -- the storage of a range -------------------------------------------------------------
    def data(self, slba: int, nlb: int) -> memoryview:
        start = slba * self.lba_size
        return self.storage[start:start + nlb * self.lba_size]

    def metadata(self, slba: int, nlb: int) -> memoryview:
        start = self.md_offset + slba * self.md_size
        return self.storage[start:start + nlb * self.md_size]

    def host_segments(self, slba: int, nlb: int) -> list[memoryview]:
        """The storage in the order of the host's data buffer: the data, or, in an extended
        format, each block's data followed by its metadata."""
        if not (self.extended and self.md_size):
            return [self.data(slba, nlb)]
        segments: list[memoryview] = []
        for lba in range(slba, slba + nlb):
            segments += (self.data(lba, 1), self.metadata(lba, 1))
        return segments

    # -- changes ----------------------------------------------------------------------------
    def reserve(self, slba: int, nlb: int) -> int:
        """Space in the image for writing the blocks (data and metadata) before any byte
        lands: a full file system is Capacity Exceeded | DNR (Linux: ENOSPC), not a fault."""
        if self.allocation is None:
            return Status.SUCCESS
        if not self.allocation.reserve(slba * self.lba_size, nlb * self.lba_size) or (
                self.md_size and not self.allocation.reserve(
                    self.md_offset + slba * self.md_size, nlb * self.md_size)):
            return Status.CAPACITY_EXCEEDED | DNR
        return Status.SUCCESS

    def written(self, slba: int, nlb: int) -> None:
        """Blocks that were just written are no longer uncorrectable."""
        if self.uncorrectable:
            self.uncorrectable.remove(slba, slba + nlb)

    def zero(self, slba: int, nlb: int) -> None:
        _zero(self.data(slba, nlb))
        _zero(self.metadata(slba, nlb))
        self.written(slba, nlb)

    def deallocate(self, slba: int, nlb: int) -> None:
        if self.allocation is None:
            self.zero(slba, nlb)
            return
        self.allocation.deallocate(slba * self.lba_size, nlb * self.lba_size)
        if self.md_size:
            self.allocation.deallocate(self.md_offset + slba * self.md_size,
                                       nlb * self.md_size)
        self.written(slba, nlb)

    def erase(self) -> None:
        """Format NVM's User Data Erase: every byte of the file, whatever the format."""
        if self.allocation is None:
            _zero(self.storage)
        else:
            self.allocation.deallocate(0, len(self.storage))
        self.uncorrectable.clear()

    def make_uncorrectable(self, slba: int, nlb: int) -> None:
        self.uncorrectable.add(slba, slba + nlb)
