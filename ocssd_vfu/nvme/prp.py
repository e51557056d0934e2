"""PRP (Physical Region Page) walks: a command's data pointer as guest ranges.

Rules (NVMe 1.4 4.3): PRP1 may carry a dword-aligned offset into its page; if
the transfer ends within the next page PRP2 is that page (offset 0), otherwise
PRP2 points to a PRP list (dword-aligned offset allowed) whose entries are page
addresses with offset 0, and whose last entry chains to the next list page when
more entries are needed. A list page with no room for a data entry besides its
chain pointer is an Invalid PRP Offset (it would make no progress).

`prp_ranges` is the reference walk (admin commands use it); I/O data goes
through `transfer`, which does the same walk and the copy in C (native/dma.c).
"""

from __future__ import annotations

import struct

from ocssd_vfu.nvme.memory import DmaError, GuestMemory
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.vfu.binding import ffi, lib

# C types of the DMA shim (native/dma.h), parsed once.
_BYTES = ffi.typeof("char[]")
_SEGMENTS = ffi.typeof("struct ocssd_dma_segment[]")
_RANGES = ffi.typeof("struct ocssd_dma_range[]")


class PrpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def prp_ranges(memory: GuestMemory, prp1: int, prp2: int, length: int,
               page_size: int) -> list[tuple[int, int]]:
    """The (address, length) guest ranges of a transfer of `length` bytes."""
    if length == 0:
        return []
    if prp1 & 0x3:
        raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
    first = min(length, page_size - (prp1 & (page_size - 1)))
    ranges = [(prp1, first)]
    remaining = length - first
    if remaining == 0:
        return ranges
    if remaining <= page_size:
        if prp2 & (page_size - 1):
            raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
        ranges.append((prp2, remaining))
        return ranges
    if prp2 & 0x3:
        raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
    list_addr = prp2
    while remaining > 0:
        slots = (page_size - (list_addr & (page_size - 1))) // 8
        pages_needed = -(-remaining // page_size)
        chained = pages_needed > slots
        if chained and slots < 2:
            raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
        take = min(slots, pages_needed)
        try:
            raw = memory.read(list_addr, take * 8)
        except DmaError as exc:
            raise PrpError(Status.DATA_TRANSFER_ERROR) from exc
        entries = struct.unpack(f"<{take}Q", raw)
        data_entries = entries[:-1] if chained else entries
        for entry in data_entries:
            if entry & (page_size - 1):
                raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
            chunk = min(remaining, page_size)
            ranges.append((entry, chunk))
            remaining -= chunk
        if chained:
            list_addr = entries[-1]
            if list_addr & 0x3:
                raise PrpError(Status.INVALID_PRP_OFFSET | DNR)
    return ranges


def guest_views(memory: GuestMemory, ranges: list[tuple[int, int]],
                write: bool) -> list[memoryview]:
    """Views of every range, all resolved before any byte moves: a bad range
    fails the command without a partial transfer."""
    try:
        return [memory.view(addr, length, write=write) for addr, length in ranges]
    except DmaError as exc:
        raise PrpError(Status.DATA_TRANSFER_ERROR) from exc


def scatter(memory: GuestMemory, ranges: list[tuple[int, int]], data: bytes | memoryview) -> None:
    """Write `data` into guest `ranges` (controller-to-host transfers)."""
    offset = 0
    for view in guest_views(memory, ranges, write=True):
        view[:] = data[offset:offset + len(view)]
        offset += len(view)


def transfer(memory: GuestMemory, prp1: int, prp2: int, page_size: int,
             device: list[memoryview], to_guest: bool) -> None:
    """Move bytes between the guest buffer PRP1/PRP2 describe and `device`
    segments (slices of the image), whose lengths add up to the transfer size.

    The walk is prp_ranges' and every guest range is resolved before any byte
    moves, so a bad address fails the command (PrpError) with neither side
    half written.
    """
    # Hot path: pre-parsed ctypes and positional arguments (keywords cost here).
    segments = ffi.new(_SEGMENTS, len(device))
    buffers = []
    length = 0
    try:
        for i, segment in enumerate(device):
            buffer = ffi.from_buffer(_BYTES, segment, not to_guest)
            buffers.append(buffer)
            segments[i] = (buffer, len(buffer))
            length += len(buffer)
        scratch_len = lib.ocssd_prp_max_ranges(length, page_size)
        table = memory.dma_table
        status = lib.ocssd_prp_transfer(table, len(table), prp1, prp2, page_size, segments,
                                        len(device), to_guest, ffi.new(_RANGES, scratch_len),
                                        scratch_len)
    finally:
        for buffer in buffers:  # no export of the image outlives the call
            ffi.release(buffer)
    if status > 0:
        raise PrpError(status)
    if status < 0:
        raise ValueError(f"ocssd_prp_transfer: caller error {status} (page size {page_size})")
