"""Endurance and chunk notifications (research-features §5).

With `--pe-cycles N` every reset (1.2: erase) spends one of a chunk's N program/erase
cycles. The chunk descriptor's WLI is then the share of endurance spent, 0 to 255:
min(255, ceil(255 x resets / N)), so it reaches 255 by the N-th reset at the latest. A chunk
that has used its N cycles fails its next reset and goes OFFLINE (N = 3: the fourth
reset fails). Without --pe-cycles WLI stays the raw reset count (saturating at 255),
as the reference emulator keeps it.

When the device changes a chunk on its own it posts a Chunk Notification log entry
(LID D0h) and an Asynchronous Event of the vendor-specific type naming that log:
`NotificationLog` is the ring the log page is read from, sans I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocssd_vfu.spec.ocssd import (
    CHUNK_NOTIFICATION_LID,
    CHUNK_NOTIFICATION_SIZE,
    ChunkNotification,
    NotificationMask,
    NotificationState,
)

MAX_WLI = 255
VENDOR_SPECIFIC_EVENT = 7      # AER completion event type (NVMe: "Vendor Specific")
NOTIFICATION_ENTRIES = 64      # SPDK's bdev reads 64 at a time


def wear_level_index(resets: int, pe_cycles: int | None) -> int:
    """The WLI a chunk reports after `resets` resets."""
    if pe_cycles is None:
        return min(resets, MAX_WLI)
    return min(MAX_WLI, -(-MAX_WLI * resets // pe_cycles))


def reset_wears_out(resets: int, pe_cycles: int | None) -> bool:
    """Does the next reset fail because the chunk has used all its cycles?"""
    return pe_cycles is not None and resets >= pe_cycles


def async_event_dw0(event_type: int, info: int, log_page: int) -> int:
    """An AER completion's DW0: type in bits 2:0, info in 15:8, log page id in 23:16."""
    return (event_type & 0x7) | (info & 0xFF) << 8 | (log_page & 0xFF) << 16


CHUNK_NOTIFICATION_AEN = async_event_dw0(VENDOR_SPECIFIC_EVENT, 0, CHUNK_NOTIFICATION_LID)


@dataclass
class NotificationLog:
    """The D0h ring: the newest `capacity` entries, NC counting every one ever posted."""

    capacity: int = NOTIFICATION_ENTRIES
    count: int = 0
    entries: list[bytes] = field(default_factory=list)
    # Told of every entry posted, as its fields (the control socket's events).
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def post(self, nsid: int, lba: int, state: NotificationState,
             mask: NotificationMask = NotificationMask.CHUNK, nlb: int = 0) -> bytes:
        self.count += 1
        fields = dict(nc=self.count, lba=lba, nsid=nsid, state=int(state), mask=int(mask),
                      nlb=nlb)
        entry = ChunkNotification.build(fields)
        for listener in self.listeners:
            listener(fields)
        slot = (self.count - 1) % self.capacity
        if slot < len(self.entries):
            self.entries[slot] = entry
        else:
            self.entries.append(entry)
        return entry

    @property
    def size(self) -> int:
        return self.capacity * CHUNK_NOTIFICATION_SIZE

    def page(self, offset: int, length: int) -> bytes | None:
        """`length` bytes of the log from `offset` (zeros past the posted entries), or
        None when the offset lies beyond the log (Invalid Field)."""
        if offset > self.size:
            return None
        whole = b"".join(self.entries).ljust(self.size, b"\0")
        return whole[offset:offset + length].ljust(length, b"\0")

    def worn_out(self, nsid: int, chunk_lba: int) -> bytes:
        """The entry for a chunk that wore out (as Jensen's device posts it)."""
        return self.post(nsid, chunk_lba, NotificationState.WEAR_LEVEL_OUTSIDE_WIT)
