"""The chunk table (OCSSD 2.0 §2.6, decisions in §9); its state machine is the
transition table of chunk_states.py.

The table lives in the image's chunk log (32-byte descriptors, updated in place
so a crash of the server keeps them) with a Python copy of each field for the
per-command checks. Rules besides the states:
- Writes start at WP, in multiples of WS_MIN, and never pass CNLB; random-write
  chunks (type W_RAN) only need to be OPEN.
- A reset sets WP 0 and counts one erase. Without an endurance (--pe-cycles) WLI is
  the raw reset count, as qemu-nvme keeps it; with one, WLI is the share of it spent
  (ocssd/wear.py) and a chunk that used all its cycles fails its next reset.
- Erase counts persist in the chunk log's reserved bytes 4-7 (spec CHUNK_RECORD_FORMAT)
  once an endurance is given or a count was kept before; until then nothing there
  changes, so images served without --pe-cycles stay byte for byte what they were,
  and a count of 0 there means "the WLI byte is the count". The host never sees them:
  `descriptor` and `host_log` mask them.
- Readability: CLOSED below WP; OPEN below WP - MW_CUNITS (the device's write
  cache), except that the cache is volatile state: after a restart, a Flush or
  a shutdown every sector below WP is readable (§9, the reference got this wrong).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.ocssd.chunk_states import (
    CLOSED,
    FREE,
    OFFLINE,
    OPEN,
    Capability,
    Event,
    next_state,
    refusal,
)
from ocssd_vfu.ocssd.wear import reset_wears_out, wear_level_index
from ocssd_vfu.spec.ocssd import (
    CHUNK_DESCRIPTOR_FORMAT,
    CHUNK_DESCRIPTOR_SIZE,
    CHUNK_RECORD_FORMAT,
    ChunkType,
    Mccap,
)
from ocssd_vfu.spec.status import DNR, Status

OFFLINE_WP = 0xFFFF  # what qemu-nvme stores for an OFFLINE chunk's WP
MAX_WLI = 0xFF

SEQUENTIAL, RANDOM, SIZE_DEVIATES = (int(ChunkType.SEQUENTIAL_WRITE),
                                     int(ChunkType.RANDOM_WRITE),
                                     int(ChunkType.SIZE_DEVIATES))
MULTIPLE_RESETS = int(Mccap.MULTIPLE_RESETS)


def settled_limit(state: int, wp: int, cnlb: int) -> int:
    """Sectors of a chunk that hold data once the write cache is flushed."""
    return min(wp, cnlb) if state in (OPEN, CLOSED) else 0


class Problem(enum.Enum):
    """A broken rule of a chunk descriptor (`chunk_problems`)."""

    STATE = enum.auto()           # not exactly one state bit
    TYPE = enum.auto()            # neither sequential nor random, or unknown bits
    CNLB = enum.auto()            # not the geometry's CLBA, yet no "size deviates" bit
    FREE_WITH_WP = enum.auto()    # a FREE chunk holds no sectors
    WP_BEYOND_CNLB = enum.auto()  # an OPEN or CLOSED chunk's WP past its end
    FULL_BUT_OPEN = enum.auto()   # a sequential chunk closes when WP reaches CNLB
    OFFLINE_WP = enum.auto()      # an OFFLINE WP that is neither 0xFFFF, 0 nor <= CNLB


def chunk_problems(state: int, chunk_type: int, wp: int, cnlb: int, clba: int
                   ) -> list[Problem]:
    """The rules a descriptor breaks (the geometry's chunks have `clba` sectors)."""
    found = []
    if state not in (FREE, CLOSED, OPEN, OFFLINE):
        found.append(Problem.STATE)
    if chunk_type & (SEQUENTIAL | RANDOM) not in (SEQUENTIAL, RANDOM) \
            or chunk_type & ~(SEQUENTIAL | RANDOM | SIZE_DEVIATES):
        found.append(Problem.TYPE)
    if cnlb != clba and not chunk_type & SIZE_DEVIATES:
        found.append(Problem.CNLB)
    if state == FREE and wp:
        found.append(Problem.FREE_WITH_WP)
    if state in (OPEN, CLOSED) and wp > cnlb:
        found.append(Problem.WP_BEYOND_CNLB)
    if state == OPEN and wp >= cnlb and chunk_type & SEQUENTIAL:
        found.append(Problem.FULL_BUT_OPEN)
    if state == OFFLINE and wp not in (OFFLINE_WP, 0) and wp > cnlb:
        found.append(Problem.OFFLINE_WP)
    return found


@dataclass
class ChunkTable:
    log: memoryview
    geometry: OcssdGeometry
    early_reset: bool = True
    pe_cycles: int | None = None   # endurance (--pe-cycles); None: resets never wear out
    state: list[int] = field(init=False)
    type: list[int] = field(init=False)
    wli: list[int] = field(init=False)
    slba: list[int] = field(init=False)
    cnlb: list[int] = field(init=False)
    wp: list[int] = field(init=False)
    readable: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.capabilities = frozenset(
            ([Capability.EARLY_RESET] if self.early_reset else [])
            + ([Capability.MULTIPLE_RESETS] if self.geometry.mccap & MULTIPLE_RESETS else []))
        rows = list(CHUNK_RECORD_FORMAT.iter_unpack(self.log))
        self.state, self.type, self.wli, kept, self.slba, self.cnlb, self.wp = (
            list(column) for column in zip(*rows, strict=True))
        self.keeps_counts = self.pe_cycles is not None or any(kept)
        self.erases = [count or wli for count, wli in zip(kept, self.wli, strict=True)]
        self.flush_write_cache()

    def store(self, index: int) -> None:
        CHUNK_RECORD_FORMAT.pack_into(
            self.log, index * CHUNK_DESCRIPTOR_SIZE, self.state[index], self.type[index],
            self.wli[index], self.erases[index] if self.keeps_counts else 0,
            self.slba[index], self.cnlb[index], self.wp[index])

    def descriptor(self, index: int) -> bytes:
        """The chunk's descriptor as the host sees it."""
        return CHUNK_DESCRIPTOR_FORMAT.pack(self.state[index], self.type[index],
                                            self.wli[index], self.slba[index],
                                            self.cnlb[index], self.wp[index])

    def host_log(self, offset: int, length: int) -> bytes:
        """Bytes of the Chunk Information log page (CAh): the chunk log without the
        erase counts it keeps."""
        data = bytearray(self.log[offset:offset + length])
        if self.keeps_counts:
            first = offset - offset % CHUNK_DESCRIPTOR_SIZE
            for at in range(first + 4, offset + length, CHUNK_DESCRIPTOR_SIZE):
                lo, hi = max(at, offset), min(at + 4, offset + length)
                if lo < hi:
                    data[lo - offset:hi - offset] = bytes(hi - lo)
        return bytes(data)

    # -- writes -----------------------------------------------------------------------------
    def write_status(self, index: int, start: int, count: int, wp: int) -> int:
        """May `count` sectors be written at `start`, the chunk's WP being `wp` so far?"""
        state, cnlb = self.state[index], self.cnlb[index]
        if self.type[index] & RANDOM:
            refused = refusal(Event.RANDOM_WRITE, state, self.capabilities)
            if refused:
                return refused
            return Status.WRITE_FAULT | DNR if start + count > cnlb else Status.SUCCESS
        # A FILL is refused where a WRITE is: the table's WRITE rows cover every state.
        refused = refusal(Event.WRITE, state, self.capabilities)
        if refused or start != wp:
            return refused or Status.OUT_OF_ORDER_WRITE | DNR
        if count % self.geometry.ws_min:
            return Status.INVALID_FIELD | DNR
        if start + count > cnlb:
            return Status.WRITE_FAULT | DNR
        return Status.SUCCESS

    def written(self, index: int, end: int) -> None:
        """Sectors up to `end` now hold data (already in the image): move the WP."""
        wp = max(self.wp[index], end)
        self.wp[index] = wp
        if self.type[index] & RANDOM:
            event = Event.RANDOM_WRITE
        else:
            event = Event.FILL if wp >= self.cnlb[index] else Event.WRITE
        state = self.state[index] = next_state(event, self.state[index])
        if state == CLOSED:
            self.readable[index] = wp
        else:
            self.readable[index] = max(self.readable[index], wp - self.geometry.mw_cunits)
        self.store(index)

    def written_natively(self, index: int) -> None:
        """The C fast path wrote the chunk and stored its WP and state in the log
        (ocssd/fastpath.py): the Python copy follows, as `written` would leave it."""
        self.state[index], self.wp[index] = CHUNK_DESCRIPTOR_FORMAT.unpack_from(
            self.log, index * CHUNK_DESCRIPTOR_SIZE)[::5]
        wp = self.wp[index]
        if self.state[index] == CLOSED:
            self.readable[index] = wp
        else:
            self.readable[index] = max(self.readable[index], wp - self.geometry.mw_cunits)

    def close_early(self, index: int, wp: int) -> None:
        """A write failure at `wp`: the chunk is CLOSED there."""
        self.wp[index] = wp
        self.state[index] = next_state(Event.CLOSE_EARLY, self.state[index])
        self.readable[index] = wp
        self.store(index)

    def flush_write_cache(self) -> None:
        """Flush, shutdown: the write cache reaches the media, everything below WP reads."""
        self.readable = [settled_limit(*column)
                         for column in zip(self.state, self.wp, self.cnlb, strict=True)]

    # -- resets -----------------------------------------------------------------------------
    def reset_status(self, index: int) -> int:
        return refusal(Event.RESET, self.state[index], self.capabilities)

    def reset(self, index: int) -> None:
        self.state[index] = next_state(Event.RESET, self.state[index])
        self.wp[index] = 0
        self.readable[index] = 0
        self.erases[index] += 1
        if self.pe_cycles is None:
            self.wli[index] = min(self.wli[index] + 1, MAX_WLI)
        else:
            self.wli[index] = wear_level_index(self.erases[index], self.pe_cycles)
        self.store(index)

    def worn_out(self, index: int) -> bool:
        """Has the chunk used all its program/erase cycles (its next reset fails)?"""
        return reset_wears_out(self.erases[index], self.pe_cycles)

    def take_offline(self, index: int) -> None:
        self.state[index] = next_state(Event.RESET_FAILS, self.state[index])
        self.wp[index] = OFFLINE_WP
        self.readable[index] = 0
        self.store(index)

    def set(self, index: int, state: int, chunk_type: int, wp: int, wli: int) -> None:
        """Impose a state (a --chunk-state file line), persisted like any change."""
        self.state[index], self.type[index], self.wli[index] = state, chunk_type, wli
        self.wp[index] = OFFLINE_WP if state == OFFLINE else wp
        self.readable[index] = settled_limit(state, self.wp[index], self.cnlb[index])
        self.store(index)
