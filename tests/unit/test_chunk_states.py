"""The chunk state machine (ocssd/chunk_states.py): one test per row of its table,
driven through the chunk table as commands drive it (a 32-sector chunk, WS_MIN 4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media.ocssd_image import fresh_chunk_log
from ocssd_vfu.ocssd.chunk_states import TRANSITIONS, Event
from ocssd_vfu.ocssd.chunks import ChunkTable
from ocssd_vfu.spec.ocssd import ChunkState, ChunkType, Mccap

FREE, CLOSED, OPEN, OFFLINE = (ChunkState.FREE, ChunkState.CLOSED, ChunkState.OPEN,
                               ChunkState.OFFLINE)
SEQ, RAN = ChunkType.SEQUENTIAL_WRITE, ChunkType.RANDOM_WRITE
OUT_OF_ORDER_WRITE_DNR = 0x42F2
INVALID_RESET_DNR = 0x42C1
OFFLINE_CHUNK_DNR = 0x42C0


def table(state: int, chunk_type: int = SEQ, wp: int = 0, early_reset: bool = True,
          mccap: int = 0) -> ChunkTable:
    geometry = OcssdGeometry(num_grp=1, num_pu=1, num_chk=1, num_sec=32, mw_cunits=8,
                             mccap=mccap)
    chunks = ChunkTable(memoryview(bytearray(fresh_chunk_log(geometry))), geometry,
                        early_reset)
    chunks.set(0, state, chunk_type, wp, 0)
    return chunks


def write(chunks: ChunkTable, count: int) -> int | None:
    """A write of `count` sectors at the WP: its status, and if it may, it lands."""
    status = chunks.write_status(0, chunks.wp[0], count, chunks.wp[0])
    if not status:
        chunks.written(0, chunks.wp[0] + count)
    return status


def reset(chunks: ChunkTable) -> int | None:
    status = chunks.reset_status(0)
    if not status:
        chunks.reset(0)
    return status


def close_early(chunks: ChunkTable) -> None:
    chunks.close_early(0, chunks.wp[0] + 2)      # an injected write failure


def fail_reset(chunks: ChunkTable) -> None:
    chunks.take_offline(0)                       # an injected reset failure


Action = Callable[[ChunkTable], "int | None"]
WRITE_4: Action = lambda chunks: write(chunks, 4)  # noqa: E731
WRITE_TO_END: Action = lambda chunks: write(chunks, 32 - chunks.wp[0])  # noqa: E731

# (event, state before) -> (chunk type, WP, MCCAP, action, status (None: none), state after)
ROWS: dict[tuple[Event, int], tuple[int, int, int, Action, int | None, int]] = {
    (Event.WRITE, FREE): (SEQ, 0, 0, WRITE_4, 0, OPEN),
    (Event.WRITE, OPEN): (SEQ, 8, 0, WRITE_4, 0, OPEN),
    (Event.WRITE, CLOSED): (SEQ, 32, 0, WRITE_4, OUT_OF_ORDER_WRITE_DNR, CLOSED),
    (Event.WRITE, OFFLINE): (SEQ, 0, 0, WRITE_4, OUT_OF_ORDER_WRITE_DNR, OFFLINE),
    (Event.FILL, FREE): (SEQ, 0, 0, WRITE_TO_END, 0, CLOSED),
    (Event.FILL, OPEN): (SEQ, 28, 0, WRITE_TO_END, 0, CLOSED),
    (Event.RANDOM_WRITE, OPEN): (RAN, 28, 0, WRITE_TO_END, 0, OPEN),
    (Event.RANDOM_WRITE, FREE): (RAN, 0, 0, WRITE_4, OUT_OF_ORDER_WRITE_DNR, FREE),
    (Event.RANDOM_WRITE, CLOSED): (RAN, 32, 0, WRITE_4, OUT_OF_ORDER_WRITE_DNR, CLOSED),
    (Event.RANDOM_WRITE, OFFLINE): (RAN, 0, 0, WRITE_4, OUT_OF_ORDER_WRITE_DNR, OFFLINE),
    (Event.CLOSE_EARLY, FREE): (SEQ, 0, 0, close_early, None, CLOSED),
    (Event.CLOSE_EARLY, OPEN): (SEQ, 8, 0, close_early, None, CLOSED),
    (Event.RESET, CLOSED): (SEQ, 32, 0, reset, 0, FREE),
    (Event.RESET, OPEN): (SEQ, 8, 0, reset, 0, FREE),
    (Event.RESET, FREE): (SEQ, 0, Mccap.MULTIPLE_RESETS, reset, 0, FREE),
    (Event.RESET, OFFLINE): (SEQ, 0, 0, reset, OFFLINE_CHUNK_DNR, OFFLINE),
    (Event.RESET_FAILS, FREE): (SEQ, 0, 0, fail_reset, None, OFFLINE),
    (Event.RESET_FAILS, OPEN): (SEQ, 8, 0, fail_reset, None, OFFLINE),
    (Event.RESET_FAILS, CLOSED): (SEQ, 32, 0, fail_reset, None, OFFLINE),
}


def test_every_row_has_its_test() -> None:
    assert set(ROWS) == set(TRANSITIONS)


@pytest.mark.parametrize("row", list(ROWS), ids=lambda row: f"{row[0].name}-{row[1]}")
def test_row(row: tuple[Event, int]) -> None:
    chunk_type, wp, mccap, action, status, after = ROWS[row]
    chunks = table(row[1], chunk_type, wp, mccap=mccap)
    assert action(chunks) == status
    assert chunks.state[0] == after


def test_reset_of_an_open_chunk_needs_early_reset() -> None:
    chunks = table(OPEN, wp=8, early_reset=False)
    assert reset(chunks) == INVALID_RESET_DNR and chunks.state[0] == OPEN


def test_reset_of_a_free_chunk_needs_multiple_resets() -> None:
    chunks = table(FREE)
    assert reset(chunks) == INVALID_RESET_DNR and chunks.state[0] == FREE
