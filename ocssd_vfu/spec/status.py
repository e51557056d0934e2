"""NVMe completion status: (SCT << 8) | SC, with DNR and More as flag bits.

The CQE's status field is this value shifted left by one (bit 0 is the phase tag).
"""

from __future__ import annotations

import enum

DNR = 0x4000
MORE = 0x2000


class Status(enum.IntEnum):
    # SCT 0h: generic command status
    SUCCESS = 0x0000
    INVALID_OPCODE = 0x0001
    INVALID_FIELD = 0x0002
    CID_CONFLICT = 0x0003
    DATA_TRANSFER_ERROR = 0x0004
    ABORTED_POWER_LOSS = 0x0005
    INTERNAL_ERROR = 0x0006
    ABORTED_BY_REQUEST = 0x0007
    ABORTED_SQ_DELETION = 0x0008
    INVALID_NAMESPACE = 0x000B
    COMMAND_SEQUENCE_ERROR = 0x000C
    INVALID_SGL_DESCRIPTOR = 0x000D
    INVALID_PRP_OFFSET = 0x0013
    LBA_OUT_OF_RANGE = 0x0080
    CAPACITY_EXCEEDED = 0x0081
    NAMESPACE_NOT_READY = 0x0082
    # SCT 1h: command specific
    INVALID_CQ = 0x0100
    INVALID_QID = 0x0101
    INVALID_QUEUE_SIZE = 0x0102
    ABORT_LIMIT_EXCEEDED = 0x0103
    ASYNC_EVENT_LIMIT_EXCEEDED = 0x0105
    INVALID_LOG_PAGE = 0x0109
    INVALID_INTERRUPT_VECTOR = 0x0108
    INVALID_QUEUE_DELETION = 0x010C
    FEATURE_NOT_SAVEABLE = 0x010D
    FEATURE_NOT_CHANGEABLE = 0x010E
    # SCT 2h: media and data integrity errors
    WRITE_FAULT = 0x0280
    UNRECOVERED_READ = 0x0281
    COMPARE_FAILURE = 0x0285
    ACCESS_DENIED = 0x0286
    DEALLOCATED_OR_UNWRITTEN = 0x0287
    # OCSSD 2.0 (SCT 2h)
    OFFLINE_CHUNK = 0x02C0
    INVALID_RESET = 0x02C1
    HIGH_ECC = 0x02D0
    WRITE_FAIL_WRITE_NEXT_UNIT = 0x02F0
    WRITE_FAIL_CHUNK_EARLY_CLOSE = 0x02F1
    OUT_OF_ORDER_WRITE = 0x02F2
    OCSSD12_EMPTY_PAGE = 0x02FF

    @property
    def sct(self) -> int:
        return (self >> 8) & 0x7

    @property
    def sc(self) -> int:
        return self & 0xFF


def describe(value: int) -> str:
    """A readable name for a status word as posted (DNR/More flags allowed)."""
    base = value & 0x7FF
    try:
        name = Status(base).name
    except ValueError:
        name = f"SCT{(base >> 8) & 7:x}h/SC{base & 0xff:02x}h"
    flags = "|DNR" if value & DNR else ""
    flags += "|MORE" if value & MORE else ""
    return name + flags
