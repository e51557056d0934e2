"""A command's data pointer (DPTR) and metadata pointer (MPTR), chosen by PSDT.

PSDT (CDW0 bits 7:6, NVMe 1.4 4.2): 00b PRPs (prp.py); 01b an SGL for the data
and MPTR the address of a contiguous metadata buffer; 10b an SGL for the data
and MPTR the address of an SGL segment holding one descriptor, the metadata
SGL; 11b is reserved (Invalid Field). Admin commands over PCIe use PRPs only
(admin.dispatch refuses any other PSDT). An MPTR of 0 means no metadata.

SGL rules (4.4), all checked before any byte moves, each error with DNR (the
walk is native/dma.c's ocssd_sgl_map; reference.py holds the Python walk the tests
check it against):
- the first descriptor (in DPTR) is a Data Block, Bit Bucket, Segment or Last
  Segment descriptor; a segment holds Data Block and Bit Bucket descriptors,
  except that a Segment's last descriptor leads to the next segment (a Segment
  or Last Segment descriptor); a Last Segment's segment leads nowhere. Any other
  place for a (Last) Segment descriptor, or one whose length is 0 or not a
  multiple of 16, is an Invalid SGL Segment Descriptor;
- Keyed, Transport and reserved types are SGL Descriptor Type Invalid; the Offset
  subtype (NVMe over Fabrics) is SGL Offset Invalid;
- the Data Blocks and Bit Buckets add up to the transfer length exactly (SGLS bit
  18 is 0): else Data SGL Length Invalid (Metadata SGL Length Invalid for MPTR);
- a Bit Bucket discards controller-to-host data and is ignored host to controller;
- a chain of more than ocssd_sgl_max_descriptors(length) descriptors (one that
  loops) is Invalid Number of SGL Descriptors;
- unmapped memory, segments or data, is a Data Transfer Error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ocssd_vfu.dma import prp
from ocssd_vfu.dma.memory import DmaError, GuestMemory, TransferError
from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.spec.nvme import DSM_RANGE_FORMAT, SGL_DESCRIPTOR_FORMAT
from ocssd_vfu.spec.status import DNR, Status

PSDT_PRP = 0
PSDT_SGL_METADATA_CONTIGUOUS = 1
PSDT_SGL_METADATA_SGL = 2

# Identify Controller SGLS: SGLs without alignment rules (bits 1:0 = 01b), Bit
# Bucket (16), byte-aligned contiguous metadata (17), MPTR holding an SGL (19).
SGLS = 0x1 | 1 << 16 | 1 << 17 | 1 << 19

_RANGES = ffi.typeof("struct ocssd_dma_range[]")
_ESCRATCH = lib.OCSSD_DMA_ESCRATCH


class DataPointer(Protocol):
    """What a transfer needs of a command (Command has it)."""

    @property
    def flags(self) -> int: ...
    @property
    def prp1(self) -> int: ...
    @property
    def prp2(self) -> int: ...
    @property
    def mptr(self) -> int: ...


def psdt(pointer: DataPointer) -> int:
    return (pointer.flags >> 6) & 0x3


def transfer(memory: GuestMemory, pointer: DataPointer, page_size: int,
             device: list[memoryview], to_guest: bool) -> None:
    """Move the command's data between the guest and `device` segments (their
    lengths add up to the transfer size); a bad pointer raises TransferError
    with neither side touched."""
    kind = psdt(pointer)
    if kind == PSDT_PRP:
        prp.transfer(memory, pointer.prp1, pointer.prp2, page_size, device, to_guest)
    elif kind in (PSDT_SGL_METADATA_CONTIGUOUS, PSDT_SGL_METADATA_SGL):
        sgl_transfer(memory, pointer.prp1, pointer.prp2, device, to_guest)
    else:
        raise TransferError(Status.INVALID_FIELD | DNR)


def sgl_transfer(memory: GuestMemory, address: int, length_and_id: int,
                 device: list[memoryview], to_guest: bool) -> None:
    """The SGL whose first descriptor is (address, length_and_id)."""
    length = sum(len(segment) for segment in device)
    ranges, count = _map(memory, address, length_and_id, length, to_guest, None)
    _copy(memory, ranges, count, device, to_guest)


def _map(memory: GuestMemory, address: int, length_and_id: int, length: int, to_guest: bool,
         scratch: Any) -> tuple[Any, int]:
    """The guest ranges of an SGL, in `scratch` (memory's when None; grown as needed)."""
    own = scratch is None
    if own:
        scratch = memory.dma_scratch
    table, count = memory.dma_table, memory.dma_count
    status = lib.ocssd_sgl_map(table, len(table), address, length_and_id, length, to_guest,
                               scratch, len(scratch), count)
    if status == _ESCRATCH:  # nothing has moved: grow and walk again
        scratch = ffi.new(_RANGES, count[0])
        if own:
            memory.dma_scratch = scratch
        status = lib.ocssd_sgl_map(table, len(table), address, length_and_id, length, to_guest,
                                   scratch, len(scratch), count)
    if status > 0:
        raise TransferError(status)
    if status < 0:
        raise ValueError(f"ocssd_sgl_map: caller error {status} (length {length})")
    return scratch, count[0]


def _copy(memory: GuestMemory, ranges: Any, count: int, device: list[memoryview],
          to_guest: bool) -> None:
    segments, exports = prp.export_segments(memory, device, to_guest)
    try:
        status = lib.ocssd_dma_copy(ranges, count, segments, len(device), to_guest)
    finally:
        prp.release(exports)
    if status:  # memory taken away under the copy (native/guard.h)
        raise TransferError(status)


@dataclass
class Metadata:
    """A command's metadata buffer: `view` is read (host to controller) or filled
    (controller to host, then `commit` delivers it when it came from an SGL)."""

    view: memoryview
    memory: GuestMemory | None = None
    ranges: Any = None
    count: int = 0

    def commit(self) -> None:
        if self.memory is not None:
            _copy(self.memory, self.ranges, self.count, [self.view], to_guest=True)


def metadata(memory: GuestMemory, pointer: DataPointer, length: int,
             to_guest: bool) -> Metadata | None:
    """The metadata buffer of `length` bytes MPTR gives (None for MPTR 0), fully
    resolved (host-to-controller data already read) before the data moves."""
    if not pointer.mptr:
        return None
    try:
        if psdt(pointer) != PSDT_SGL_METADATA_SGL:
            return Metadata(memory.view(pointer.mptr, length, write=to_guest))
        address, length_and_id = SGL_DESCRIPTOR_FORMAT.unpack(
            memory.read(pointer.mptr, SGL_DESCRIPTOR_FORMAT.size))
    except DmaError as exc:
        raise TransferError(Status.DATA_TRANSFER_ERROR) from exc
    try:
        ranges, count = _map(memory, address, length_and_id, length, to_guest,
                             ffi.new(_RANGES, 4))
    except TransferError as err:
        if err.status == Status.DATA_SGL_LENGTH_INVALID | DNR:
            raise TransferError(Status.METADATA_SGL_LENGTH_INVALID | DNR) from err
        raise
    buffer = memoryview(bytearray(length))
    if to_guest:
        return Metadata(buffer, memory, ranges, count)
    _copy(memory, ranges, count, [buffer], to_guest=False)
    return Metadata(buffer)


def move(memory: GuestMemory, pointer: DataPointer, page_size: int, device: list[memoryview],
         metadata_length: int, to_guest: bool) -> tuple[int, Metadata | None]:
    """A command's data moved between the guest and `device`, and its metadata buffer
    (None for no metadata or MPTR 0) resolved first, host to controller metadata already
    read: (status, metadata). A bad MPTR or data pointer moves nothing."""
    try:
        buffer = metadata(memory, pointer, metadata_length, to_guest) \
            if metadata_length else None
        transfer(memory, pointer, page_size, device, to_guest)
    except TransferError as err:
        return err.status, None
    return Status.SUCCESS, buffer


def move_data(memory: GuestMemory, pointer: DataPointer, page_size: int,
              device: list[memoryview], to_guest: bool) -> int:
    """A command's data (no metadata) moved between the guest and `device`: its status.
    With `move`, the one place where a failed transfer becomes a status."""
    try:
        transfer(memory, pointer, page_size, device, to_guest)
    except TransferError as err:
        return err.status
    return Status.SUCCESS


def read_dsm_ranges(memory: GuestMemory, pointer: DataPointer, page_size: int,
                    count: int) -> tuple[int, list[tuple[int, int]]]:
    """Dataset Management's `count` ranges from its data: (status, [(slba, length)]),
    zero-length ranges included; no ranges unless the status is 0."""
    raw = bytearray(count * DSM_RANGE_FORMAT.size)
    status = move_data(memory, pointer, page_size, [memoryview(raw)], to_guest=False)
    if status:
        return status, []
    return 0, [(slba, length) for _, length, slba in DSM_RANGE_FORMAT.iter_unpack(raw)]
