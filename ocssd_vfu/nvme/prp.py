"""PRP (Physical Region Page) walks: a command's data pointer as guest ranges.

Rules (NVMe 1.4 4.3): PRP1 may carry a dword-aligned offset into its page; if
the transfer ends within the next page PRP2 is that page (offset 0), otherwise
PRP2 points to a PRP list (dword-aligned offset allowed) whose entries are page
addresses with offset 0, and whose last entry chains to the next list page when
more entries are needed.
"""

from __future__ import annotations

import struct

from ocssd_vfu.nvme.memory import DmaError, GuestMemory
from ocssd_vfu.spec.status import DNR, Status


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
        take = min(slots, pages_needed)
        chained = pages_needed > slots
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

    Every guest range is resolved before any byte moves, so a bad address
    fails the command (PrpError) with neither side half written.
    """
    length = sum(len(segment) for segment in device)
    ranges = prp_ranges(memory, prp1, prp2, length, page_size)
    guest = guest_views(memory, ranges, write=to_guest)
    _copy_segments(guest, device, to_guest)


def _copy_segments(guest: list[memoryview], device: list[memoryview], to_guest: bool) -> None:
    gi = di = g_off = d_off = 0
    while gi < len(guest) and di < len(device):
        g, d = guest[gi], device[di]
        n = min(len(g) - g_off, len(d) - d_off)
        if to_guest:
            g[g_off:g_off + n] = d[d_off:d_off + n]
        else:
            d[d_off:d_off + n] = g[g_off:g_off + n]
        g_off += n
        d_off += n
        if g_off == len(g):
            gi, g_off = gi + 1, 0
        if d_off == len(d):
            di, d_off = di + 1, 0
