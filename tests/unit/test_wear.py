"""Wear-level index, worn-out resets, the Chunk Notification log and its AER dword."""

from __future__ import annotations

import pytest

from ocssd_vfu.ocssd.wear import (
    CHUNK_NOTIFICATION_AEN,
    NotificationLog,
    reset_wears_out,
    wear_level_index,
)
from ocssd_vfu.spec.ocssd import ChunkNotification, NotificationMask, NotificationState


@pytest.mark.parametrize(("resets", "pe_cycles", "wli"), [
    (0, 3, 0), (1, 3, 85), (2, 3, 170), (3, 3, 255), (4, 3, 255),
    (1, 1000, 1), (3, 1000, 1), (4, 1000, 2), (999, 1000, 255), (1000, 1000, 255),
    (1, 255, 1), (128, 256, 128), (0, None, 0), (7, None, 7), (300, None, 255),
])
def test_wear_level_index(resets: int, pe_cycles: int | None, wli: int) -> None:
    assert wear_level_index(resets, pe_cycles) == wli


def test_the_reset_after_the_last_cycle_fails() -> None:
    assert [reset_wears_out(resets, 3) for resets in range(5)] == [
        False, False, False, True, True]
    assert not reset_wears_out(10_000, None)


def test_chunk_notification_layout() -> None:
    entry = ChunkNotification.build(dict(nc=1, lba=0x1234_0000, nsid=1, state=0x100, mask=2,
                                         nlb=0))
    assert entry == bytes.fromhex(
        "0100000000000000" "0000341200000000" "01000000" "0001" "02" + "00" * 9
        + "0000" + "00" * 30)
    assert ChunkNotification.sizeof() == 64


def test_aen_dword_names_the_vendor_log() -> None:
    assert CHUNK_NOTIFICATION_AEN == 0x00D00007


def test_notification_log_is_a_ring_read_at_any_offset() -> None:
    log = NotificationLog(capacity=2)
    first = log.worn_out(1, 0x40)
    assert ChunkNotification.parse(first) == ChunkNotification.parse(bytes.fromhex(
        "0100000000000000" "4000000000000000" "01000000" "0001" "02" + "00" * 41))
    log.post(2, 0x80, NotificationState.ERROR_RATE_HIGH, NotificationMask.PARALLEL_UNIT)
    third = log.post(1, 0xC0, NotificationState.REFRESHED,
                     NotificationMask.LOGICAL_BLOCKS, nlb=3)
    page = log.page(0, 128)
    assert page is not None
    assert [ChunkNotification.parse(page[i:i + 64]).nc for i in (0, 64)] == [3, 2]
    assert page[:64] == third
    assert log.page(120, 16) == page[120:128] + bytes(8)
    assert log.page(129, 4) is None
    assert log.page(128, 4) == bytes(4)
