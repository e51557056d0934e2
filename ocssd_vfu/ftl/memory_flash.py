"""Flash in memory, for tests and for trying the FTL without an image.

It enforces the rules of ocssd_vfu.ftl.flash (an FTL that breaks one gets an
AssertionError, not silently wrong data), injects the same failures as the
image-backed devices (MemoryFaults: a write failure at a sector
fails the program of the unit holding it; a reset failure takes the chunk
OFFLINE), and can cut the power: after `power_budget` more operations the next
one tears (a prefix of its sectors lands, the last of them possibly half) and
raises PowerCut. Everything in it survives the cut, as an mmap'd image survives
a SIGKILL of the server: a new FTL recovers from the same object.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ocssd_vfu.ftl.flash import ChunkInfo, FlashLayout
from ocssd_vfu.spec.ocssd import ChunkState


class PowerCut(Exception):
    """The power went while a flash operation ran."""


@dataclass
class MemoryFaults:
    """Injected failures of the in-memory flash, in percent: a program failure at (chunk,
    sector), a reset failure of a chunk. The image-backed flashes take the device's
    FaultBook instead (the `--write-fail`/`--reset-fail` files, the control socket)."""

    write_fail: dict[tuple[int, int], int] = field(default_factory=dict)
    reset_fail: dict[int, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def write_fails(self, chunk: int, sector: int) -> bool:
        return self._hit(self.write_fail.get((chunk, sector), 0))

    def reset_fails(self, chunk: int) -> bool:
        return self._hit(self.reset_fail.get(chunk, 0))

    def _hit(self, probability: int) -> bool:
        # No draw where nothing is listed: the sequence depends only on listed failures.
        return probability > 0 and self.rng.randrange(100) < probability


class MemoryFlash:
    def __init__(self, layout: FlashLayout, faults: MemoryFaults | None = None) -> None:
        self.layout = layout
        self.faults = faults or MemoryFaults()
        self.data = bytearray(layout.sectors * layout.sec_size)
        self.oob = bytearray(layout.sectors * layout.oob_size)
        self.state = [ChunkState.FREE] * layout.chunks
        self.wp = [0] * layout.chunks
        self.wear = [0] * layout.chunks
        self.power_budget: int | None = None
        self.rng = random.Random(0)

    # -- the Flash interface ----------------------------------------------------------------
    def chunk_info(self, chunk: int) -> ChunkInfo:
        return ChunkInfo(self.state[chunk], self.wp[chunk], self.wear[chunk])

    def write(self, chunk: int, data: bytes, oob: bytes) -> bool:
        g = self.layout
        count = len(data) // g.sec_size
        wp = self.wp[chunk]
        assert self.state[chunk] in (ChunkState.FREE, ChunkState.OPEN), \
            f"write to chunk {chunk} in state {self.state[chunk]!r}"
        assert count and count % g.ws_min == 0 and len(oob) == count * g.oob_size
        assert wp + count <= g.clba, f"write past the end of chunk {chunk}"
        self._spend_power(chunk, wp, data, oob)
        if any(self.faults.write_fails(chunk, sector) for sector in range(wp, wp + count)):
            self.state[chunk] = ChunkState.CLOSED
            return False
        self._store(chunk, wp, data, oob)
        self.wp[chunk] = wp + count
        self.state[chunk] = ChunkState.CLOSED if wp + count == g.clba else ChunkState.OPEN
        return True

    def stage(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None:
        g = self.layout
        wp = self.wp[chunk]
        assert self.state[chunk] in (ChunkState.FREE, ChunkState.OPEN)
        assert wp <= sector and sector + len(data) // g.sec_size < wp + g.ws_min, \
            f"stage of chunk {chunk} at {sector} outside its open write unit (wp {wp})"
        self._spend_power(chunk, sector, data, oob)
        self._store(chunk, sector, data, oob)

    def read(self, chunk: int, sector: int, count: int) -> tuple[memoryview, memoryview]:
        g = self.layout
        assert self.state[chunk] != ChunkState.OFFLINE, f"read of OFFLINE chunk {chunk}"
        assert sector + count <= min(g.clba, self.wp[chunk] + g.ws_min), \
            f"read of chunk {chunk} sectors {sector}+{count} past wp {self.wp[chunk]}"
        first = chunk * g.clba + sector
        return (memoryview(self.data)[first * g.sec_size:(first + count) * g.sec_size],
                memoryview(self.oob)[first * g.oob_size:(first + count) * g.oob_size])

    def reset(self, chunk: int) -> bool:
        assert self.state[chunk] != ChunkState.OFFLINE
        self._spend_power(chunk, 0, b"", b"")
        if self.faults.reset_fails(chunk):
            self.state[chunk] = ChunkState.OFFLINE
            return False
        self.state[chunk] = ChunkState.FREE
        self.wp[chunk] = 0
        self.wear[chunk] += 1
        return True

    # -- test helpers -----------------------------------------------------------------------
    def set_offline(self, chunk: int) -> None:
        """A chunk that went bad (a --chunk-state file's OFFLINE line)."""
        self.state[chunk] = ChunkState.OFFLINE

    def _store(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None:
        g = self.layout
        first = chunk * g.clba + sector
        self.data[first * g.sec_size:first * g.sec_size + len(data)] = data
        self.oob[first * g.oob_size:first * g.oob_size + len(oob)] = oob

    def _spend_power(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None:
        if self.power_budget is None:
            return
        if self.power_budget > 0:
            self.power_budget -= 1
            return
        self.power_budget = None
        # A torn operation: some whole sectors, then maybe part of one (data before OOB,
        # the order a memcpy into the image follows per sector).
        g = self.layout
        count = len(data) // g.sec_size
        whole = self.rng.randrange(count + 1) if count else 0
        self._store(chunk, sector, data[:whole * g.sec_size], oob[:whole * g.oob_size])
        if whole < count and self.rng.randrange(2):
            half = g.sec_size // 2
            start = (whole) * g.sec_size
            self._store(chunk, sector + whole, data[start:start + half], b"")
        raise PowerCut(f"power cut at chunk {chunk} sector {sector}")
