"""PRP (Physical Region Page) transfers: a command's data pointer walked and copied.

Rules (NVMe 1.4 4.3): PRP1 may carry a dword-aligned offset into its page; if
the transfer ends within the next page PRP2 is that page (offset 0), otherwise
PRP2 points to a PRP list (dword-aligned offset allowed) whose entries are page
addresses with offset 0, and whose last entry chains to the next list page when
more entries are needed. A list page with no room for a data entry besides its
chain pointer is an Invalid PRP Offset (it would make no progress).

The walk and the copy are in C (native/dma.c); reference.py holds a Python walk
of the same rules, the oracle tests/unit/test_dma_shim.py checks the shim against.
`guest_views` resolves ranges the caller already has (an OCSSD metadata buffer).
Commands reach this through dptr.transfer, which picks PRPs or SGLs by PSDT.
"""

from __future__ import annotations

from typing import Any

from ocssd_vfu.dma.memory import DmaError, GuestMemory, TransferError
from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.spec.status import Status

# C types of the DMA shim (native/dma.h), parsed once.
_BYTES = ffi.typeof("char[]")
_SEGMENTS = ffi.typeof("struct ocssd_dma_segment[]")
_RANGES = ffi.typeof("struct ocssd_dma_range[]")
_ESCRATCH = lib.OCSSD_DMA_ESCRATCH


def guest_views(memory: GuestMemory, ranges: list[tuple[int, int]],
                write: bool) -> list[memoryview]:
    """Views of every range, all resolved before any byte moves: a bad range
    fails the command without a partial transfer."""
    try:
        return [memory.view(addr, length, write=write) for addr, length in ranges]
    except DmaError as exc:
        raise TransferError(Status.DATA_TRANSFER_ERROR) from exc


def export_segments(memory: GuestMemory, device: list[memoryview],
                    to_guest: bool) -> tuple[Any, list[Any]]:
    """`device` as the shim's segment array (memory's own, grown when too short) and
    the buffer exports behind it, which `release` ends once the C call is done."""
    segments = memory.dma_segments
    if len(device) > len(segments):
        segments = memory.dma_segments = ffi.new(_SEGMENTS, len(device))
    exports: list[Any] = []
    try:
        for i, segment in enumerate(device):
            export = ffi.from_buffer(_BYTES, segment, not to_guest)
            exports.append(export)
            segments[i] = (export, len(export))
    except BaseException:
        release(exports)
        raise
    return segments, exports


def release(exports: list[Any]) -> None:
    """No export of the image outlives the call that needed it."""
    for export in exports:
        ffi.release(export)


def transfer(memory: GuestMemory, prp1: int, prp2: int, page_size: int,
             device: list[memoryview], to_guest: bool) -> None:
    """Move bytes between the guest buffer PRP1/PRP2 describe and `device`
    segments (slices of the image), whose lengths add up to the transfer size.

    Every guest range, list pages included, is resolved before any byte moves,
    so a bad address fails the command (TransferError) with neither side half
    written.
    """
    # Hot path: pre-parsed ctypes, positional arguments (keywords cost here), and
    # the segment and scratch arrays of `memory`, grown when too short.
    count = len(device)
    segments, exports = export_segments(memory, device, to_guest)
    try:
        table, scratch = memory.dma_table, memory.dma_scratch
        status = lib.ocssd_prp_transfer(table, len(table), prp1, prp2, page_size, segments,
                                        count, to_guest, scratch, len(scratch))
        if status == _ESCRATCH:  # checked before the walk: nothing has moved
            length = sum(len(export) for export in exports)
            scratch = memory.dma_scratch = ffi.new(
                _RANGES, lib.ocssd_prp_max_ranges(length, page_size))
            status = lib.ocssd_prp_transfer(table, len(table), prp1, prp2, page_size, segments,
                                            count, to_guest, scratch, len(scratch))
    finally:
        release(exports)
    if status > 0:
        raise TransferError(status)
    if status < 0:
        raise ValueError(f"ocssd_prp_transfer: caller error {status} (page size {page_size})")
