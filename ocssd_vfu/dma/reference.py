"""The Python reference walks of PRPs and SGLs: the oracles the C shim is tested
against (tests/unit/test_dma_shim.py, test_sgl.py). They follow the rules of
prp.py's and dptr.py's docstrings, in the order the C walk checks them; they are
slow and never used to serve a command.
"""

from __future__ import annotations

import struct

from ocssd_vfu.dma.memory import DmaError, GuestMemory, TransferError
from ocssd_vfu.dma.prp import guest_views
from ocssd_vfu.spec.status import DNR, Status

# SGL descriptor types (Figure 112), as the walk tells them apart.
DATA_BLOCK, BIT_BUCKET, SEGMENT, LAST_SEGMENT = 0x0, 0x1, 0x2, 0x3


def prp_ranges(memory: GuestMemory, prp1: int, prp2: int, length: int,
               page_size: int) -> list[tuple[int, int]]:
    """The (address, length) guest ranges of a transfer of `length` bytes."""
    if length == 0:
        return []
    if prp1 & 0x3:
        raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
    first = min(length, page_size - (prp1 & (page_size - 1)))
    ranges = [(prp1, first)]
    remaining = length - first
    if remaining == 0:
        return ranges
    if remaining <= page_size:
        if prp2 & (page_size - 1):
            raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
        ranges.append((prp2, remaining))
        return ranges
    if prp2 & 0x3:
        raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
    list_addr = prp2
    while remaining > 0:
        slots = (page_size - (list_addr & (page_size - 1))) // 8
        pages_needed = -(-remaining // page_size)
        chained = pages_needed > slots
        if chained and slots < 2:
            raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
        take = min(slots, pages_needed)
        try:
            raw = memory.read(list_addr, take * 8)
        except DmaError as exc:
            raise TransferError(Status.DATA_TRANSFER_ERROR) from exc
        entries = struct.unpack(f"<{take}Q", raw)
        data_entries = entries[:-1] if chained else entries
        for entry in data_entries:
            if entry & (page_size - 1):
                raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
            chunk = min(remaining, page_size)
            ranges.append((entry, chunk))
            remaining -= chunk
        if chained:
            list_addr = entries[-1]
            if list_addr & 0x3:
                raise TransferError(Status.INVALID_PRP_OFFSET | DNR)
    return ranges


def prp_reference_transfer(memory: GuestMemory, prp1: int, prp2: int, page_size: int,
                       device: list[memoryview], to_guest: bool) -> None:
    length = sum(len(segment) for segment in device)
    guest = guest_views(memory, prp_ranges(memory, prp1, prp2, length, page_size), to_guest)
    # Both sides as one flat byte string each, then back out segment by segment.
    if to_guest:
        data = b"".join(bytes(segment) for segment in device)
        offset = 0
        for view in guest:
            view[:] = data[offset:offset + len(view)]
            offset += len(view)
    else:
        data = b"".join(bytes(view) for view in guest)
        offset = 0
        for segment in device:
            segment[:] = data[offset:offset + len(segment)]
            offset += len(segment)


def sgl_ranges(memory: GuestMemory, address: int, length_and_id: int, length: int,
               to_guest: bool) -> list[tuple[int | None, int]]:
    """The rules of dptr.py's docstring, in the order the walk checks them."""
    limit = 2 * length + 256
    ranges: list[tuple[int | None, int]] = []
    remaining = length
    unmapped = False

    def no_retry(status: int) -> TransferError:
        return TransferError(status | DNR)

    def data(addr: int, size: int, kind: int, sub: int) -> None:
        nonlocal remaining, unmapped
        if kind not in (DATA_BLOCK, BIT_BUCKET):
            raise no_retry(Status.SGL_DESCRIPTOR_TYPE_INVALID)
        if kind == DATA_BLOCK and sub == 1:
            raise no_retry(Status.SGL_OFFSET_INVALID)
        if sub:
            raise no_retry(Status.SGL_DESCRIPTOR_TYPE_INVALID)
        if kind == BIT_BUCKET and not to_guest:
            return
        if size > remaining:
            raise no_retry(Status.DATA_SGL_LENGTH_INVALID)
        if size == 0:
            return
        if kind == BIT_BUCKET:
            ranges.append((None, size))
        else:
            try:
                memory.view(addr, size, write=to_guest)
                ranges.append((addr, size))
            except DmaError:
                unmapped = True
        remaining -= size

    addr, size, ident = address, length_and_id & 0xFFFFFFFF, length_and_id >> 56
    kind, sub = ident >> 4, ident & 0xF
    if kind not in (SEGMENT, LAST_SEGMENT):
        data(addr, size, kind, sub)
    else:
        while True:
            if sub == 1:
                raise no_retry(Status.SGL_OFFSET_INVALID)
            if sub:
                raise no_retry(Status.SGL_DESCRIPTOR_TYPE_INVALID)
            if size == 0 or size % 16:
                raise no_retry(Status.INVALID_SGL_SEGMENT_DESCRIPTOR)
            count = size // 16
            if count > limit:
                raise no_retry(Status.INVALID_NUMBER_OF_SGL_DESCRIPTORS)
            limit -= count
            try:
                raw = memory.read(addr, size)
            except DmaError as exc:
                raise TransferError(Status.DATA_TRANSFER_ERROR) from exc
            last, chained = kind == LAST_SEGMENT, False
            for i, (a, n, ident) in enumerate(struct.iter_unpack("<QI3xB", raw)):
                k, s = ident >> 4, ident & 0xF
                if k not in (SEGMENT, LAST_SEGMENT):
                    data(a, n, k, s)
                    continue
                if last or i != count - 1:
                    raise no_retry(Status.INVALID_SGL_SEGMENT_DESCRIPTOR)
                addr, size, kind, sub, chained = a, n, k, s, True
            if not chained:
                break
    if remaining:
        raise no_retry(Status.DATA_SGL_LENGTH_INVALID)
    if unmapped:
        raise TransferError(Status.DATA_TRANSFER_ERROR)
    return ranges


def sgl_reference_transfer(memory: GuestMemory, address: int, length_and_id: int,
                       device: list[memoryview], to_guest: bool) -> None:
    length = sum(len(segment) for segment in device)
    ranges = sgl_ranges(memory, address, length_and_id, length, to_guest)
    flat = b"".join(bytes(segment) for segment in device) if to_guest else b""
    offset = 0
    gathered = bytearray()
    for addr, size in ranges:
        if to_guest and addr is not None:
            memory.write(addr, flat[offset:offset + size])
        elif not to_guest:
            gathered += memory.read(addr, size) if addr is not None else bytes(size)
        offset += size
    if not to_guest:
        at = 0
        for segment in device:
            segment[:] = gathered[at:at + len(segment)]
            at += len(segment)
