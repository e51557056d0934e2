"""The flash timing model: media operations in, completion times out.

The caller passes `now` (ns, any monotonic clock) and gets back the time the operation
completes in the model. The model never sees data or statuses: the caller decides a
command's outcome when it arrives and only holds its completion until that time.

Rules (README "Timing model" says why):
- A PU does one flash operation at a time, in the order the calls reserve them (FIFO, no
  read priority, no suspend). A read senses a page (read_ns), then its sectors cross the
  channel; the PU stays busy until they have crossed. A program moves its unit across the
  channel, then programs it (program_ns). An erase takes erase_ns and no channel time.
- A channel moves one transfer at a time. Its transfers are reserved as intervals, so a
  transfer fits into any idle gap before transfers reserved later in time.
- A multi-plane read or program covers the same page of every named plane in one
  read_ns / program_ns; a multi-plane erase is one `erase` call.
- Write buffer, per PU: a write completes when its sectors are in the buffer. A program
  unit (one page, or one page of every plane for a multi-plane write) is programmed as
  soon as it is full; its space is freed when its program ends. A write that finds the
  buffer full waits for space (admissions are FIFO per PU); if only partly filled units
  hold the space, the oldest is programmed padded. A read of a page whose unit is still in
  the buffer costs no read_ns and no channel time. `flush` programs every partly filled
  unit and returns when the last program ends.
- Each PU adds up the time it is busy (`busy_ns`: sensing and its transfer out, a unit's
  transfer in and programming, erasing), scheduled work included: the control socket's
  query-stats reports it per PU.

How a kind times its media operations (the hook; OCSSD 2.0 and 1.2 in ocssd/timed.py and
ocssd12/timed.py, the device-side FTL the same way):
- build one model per namespace (timing/geometries.py, or TimingParameters + Layout) and
  keep it as the namespace's `timing` attribute: the NVMe core then never runs a fast path
  for it, and Flush and shutdown wait for `flush(now)`;
- in the command's `run`, decide its outcome first (data, tables, status), then, unless it
  was refused as invalid, call `read_sectors` / `program_sectors` (one (pu, FlashPage) per
  sector, any PUs, in the command's order) or `erase_blocks` (one PU per block) with
  `now=ctx.now_ns`, and `ctx.hold_until(the time returned)` (nvme/kind.py: Time);
- an FTL maps a host read to `read_sectors` of the physical pages (unmapped: nothing, it
  completes at once), a host write to `program_sectors` (the buffer is its DRAM), and
  garbage collection to `read_sectors` + `program_sectors` of the valid pages and
  `erase_blocks` of the victim at the `now` of the command that triggered it, so GC takes
  PU time from host commands.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ocssd_vfu.timing.parameters import Layout, TimingParameters


class FlashPage(NamedTuple):
    """One page of one plane, as the caller names it within its PU: `block` is a chunk
    (2.0) or block (1.2) number, `page` the page (2.0: the ws_opt unit) in it."""

    block: int
    page: int
    plane: int = 0


@dataclass(slots=True, eq=False)
class BufferedUnit:
    """A program unit held in a PU's write buffer."""

    pages: tuple[FlashPage, ...]
    capacity: int                      # sectors that fill it
    sectors: int = 0
    release_ns: int | None = None      # its program's end; None while it is still filling


@dataclass(slots=True)
class Channel:
    """A bus: reserved transfer intervals (start, end), sorted by start."""

    intervals: list[tuple[int, int]] = field(default_factory=list)

    def reserve(self, earliest: int, duration: int) -> int:
        """Reserve `duration` ns in the first idle gap from `earliest`; return its start."""
        intervals = self.intervals
        start = earliest
        # intervals do not overlap, so their ends are sorted too: skip those before `start`
        at = max(bisect.bisect_left(intervals, (start,)) - 1, 0)
        for busy_start, busy_end in intervals[at:]:
            if busy_end <= start:
                continue
            if busy_start >= start + duration:
                break
            start = busy_end
        bisect.insort(intervals, (start, start + duration))
        return start

    def forget_before(self, now: int) -> None:
        intervals = self.intervals
        done = 0
        while done < len(intervals) and intervals[done][1] <= now:
            done += 1
        del intervals[:done]


@dataclass(slots=True)
class ParallelUnit:
    busy_until: int = 0
    busy_ns: int = 0                   # modelled time it was or will be busy, all told
    admit_after: int = 0               # the last write's admission into the buffer
    units: list[BufferedUnit] = field(default_factory=list)       # held, oldest first
    filling: dict[tuple[FlashPage, ...], BufferedUnit] = field(default_factory=dict)
    holder: dict[FlashPage, BufferedUnit] = field(default_factory=dict)  # latest unit of a page

    def occupied(self, at: int) -> int:
        return sum(u.sectors for u in self.units if u.release_ns is None or u.release_ns > at)


def program_units(pages: Iterable[tuple[FlashPage, int]], multi_plane: bool
                  ) -> dict[tuple[FlashPage, ...], int]:
    """Sectors per program unit, in order of first mention: one page, or (multi-plane)
    the same page of every plane named."""
    pages = list(pages)
    planes: dict[tuple[int, int], set[FlashPage]] = {}
    if multi_plane:
        for page, _ in pages:
            planes.setdefault((page.block, page.page), set()).add(page)
    units: dict[tuple[FlashPage, ...], int] = {}
    for page, sectors in pages:
        key = tuple(sorted(planes[(page.block, page.page)])) if multi_plane else (page,)
        units[key] = units.get(key, 0) + sectors
    return units


def _per_pu(sectors: Iterable[tuple[int, FlashPage]]) -> dict[int, dict[FlashPage, int]]:
    """Sectors per page per PU, in order of first mention."""
    grouped: dict[int, dict[FlashPage, int]] = {}
    for pu, page in sectors:
        pages = grouped.setdefault(pu, {})
        pages[page] = pages.get(page, 0) + 1
    return grouped


class FlashModel:
    def __init__(self, parameters: TimingParameters, layout: Layout) -> None:
        self.parameters = parameters
        self.layout = layout
        self.pus = [ParallelUnit() for _ in range(layout.pus)]
        self.channels = [Channel() for _ in range(layout.channels)]
        self.now = 0

    # -- operations -------------------------------------------------------------------------
    def read(self, now: int, pu: int, pages: Iterable[tuple[FlashPage, int]],
             multi_plane: bool = False) -> int:
        """Read `sectors` from each page (a page may appear once); multi-plane: one sensing
        for the same page of all planes named. Returns when the last sector has crossed."""
        now = self._settle(now, pu)
        unit = self.pus[pu]
        groups: dict[tuple[int, int] | FlashPage, int] = {}
        for page, sectors in pages:
            held = unit.holder.get(page)
            if held is not None and (held.release_ns is None or held.release_ns > now):
                continue  # served from the write buffer
            key = (page.block, page.page) if multi_plane else page
            groups[key] = groups.get(key, 0) + sectors
        done = now
        channel = self.channels[self.layout.channel_of(pu)]
        p = self.parameters
        for sectors in groups.values():
            start = max(now, unit.busy_until)
            transfer = p.transfer_ns(sectors)
            done = channel.reserve(start + p.read_ns, transfer) + transfer
            unit.busy_until = done
            unit.busy_ns += done - start
        return done

    def program(self, now: int, pu: int, pages: Iterable[tuple[FlashPage, int]],
                multi_plane: bool = False) -> int:
        """Write `sectors` into each page, in order; multi-plane: the same page of every
        plane named is one program unit. Returns when the write is in the buffer (or, with
        no buffer, when its last unit is programmed)."""
        now = self._settle(now, pu)
        unit = self.pus[pu]
        groups = program_units(pages, multi_plane)
        if self.parameters.buffer_sectors_per_pu == 0:
            return self._write_through(now, pu, groups)
        at = max(now, unit.admit_after)
        for key, sectors in groups.items():
            at = self._admit(pu, key, sectors, at)
        unit.admit_after = at
        return at

    def erase(self, now: int, pu: int) -> int:
        """One chunk reset or block erase (multi-plane: all its planes)."""
        now = self._settle(now, pu)
        unit = self.pus[pu]
        unit.busy_until = max(now, unit.busy_until) + self.parameters.erase_ns
        unit.busy_ns += self.parameters.erase_ns
        return unit.busy_until

    def flush(self, now: int) -> int:
        """Program every partly filled unit; when the whole buffer is programmed."""
        now = self._settle(now)
        done = now
        for index, unit in enumerate(self.pus):
            for held in list(unit.filling.values()):
                self._schedule(index, held, max(now, unit.admit_after))
            for held in unit.units:
                done = max(done, held.release_ns or now)
        return done

    # -- one command's media work over any PUs (the hook of the module docstring) ----------
    def read_sectors(self, now: int, sectors: Iterable[tuple[int, FlashPage]],
                     multi_plane: bool = False) -> int:
        """Read one sector per (pu, page); when the last has crossed its channel."""
        return max((self.read(now, pu, pages.items(), multi_plane)
                    for pu, pages in _per_pu(sectors).items()), default=now)

    def program_sectors(self, now: int, sectors: Iterable[tuple[int, FlashPage]],
                        multi_plane: bool = False) -> int:
        """Write one sector per (pu, page), in order; when the last PU has admitted them."""
        return max((self.program(now, pu, pages.items(), multi_plane)
                    for pu, pages in _per_pu(sectors).items()), default=now)

    def erase_blocks(self, now: int, pus: Iterable[int]) -> int:
        """One erase per entry (a PU may appear once per block it erases)."""
        return max((self.erase(now, pu) for pu in pus), default=now)

    # -- what the buffer holds (for tests and benches) ---------------------------------------
    def buffered_sectors(self, pu: int, now: int) -> int:
        return self.pus[pu].occupied(max(now, self.now))

    # -- internals --------------------------------------------------------------------------
    def _settle(self, now: int, pu: int | None = None) -> int:
        """Forget what PU `pu` (None: every PU) and its channel finished by `now`; calls
        never go back in time."""
        now = max(now, self.now)
        self.now = now
        for index in range(len(self.pus)) if pu is None else (pu,):
            unit = self.pus[index]
            if any(u.release_ns is not None and u.release_ns <= now for u in unit.units):
                kept = []
                for held in unit.units:
                    if held.release_ns is not None and held.release_ns <= now:
                        for page in held.pages:
                            if unit.holder.get(page) is held:
                                del unit.holder[page]
                    else:
                        kept.append(held)
                unit.units = kept
            self.channels[self.layout.channel_of(index)].forget_before(now)
        return now

    def _admit(self, pu: int, key: tuple[FlashPage, ...], sectors: int, at: int) -> int:
        """Put `sectors` of unit `key` into the buffer from time `at`, waiting for space;
        return the time the last one is in."""
        unit = self.pus[pu]
        capacity = self.parameters.buffer_sectors_per_pu
        while sectors:
            free = capacity - unit.occupied(at)
            if free <= 0:
                at = self._make_room(pu, at)
                continue
            held = unit.filling.get(key)
            if held is None:
                held = BufferedUnit(key, self.parameters.page_sectors * len(key))
                unit.filling[key] = held
                unit.units.append(held)
                for page in key:
                    unit.holder[page] = held
            taken = min(free, sectors, held.capacity - held.sectors)
            held.sectors += taken
            sectors -= taken
            if held.sectors == held.capacity:
                self._schedule(pu, held, at)
        return at

    def _make_room(self, pu: int, at: int) -> int:
        """The next time space frees in a full buffer; if only filling units hold it, the
        oldest is programmed padded now."""
        unit = self.pus[pu]
        releases = [u.release_ns for u in unit.units
                    if u.release_ns is not None and u.release_ns > at]
        if releases:
            return min(releases)
        oldest = next(u for u in unit.units if u.release_ns is None)
        self._schedule(pu, oldest, at)
        return at

    def _schedule(self, pu: int, held: BufferedUnit, at: int) -> None:
        """Program `held` (padded to a full unit) once the PU is free: the unit crosses the
        channel, then program_ns."""
        unit = self.pus[pu]
        unit.filling.pop(held.pages, None)
        p = self.parameters
        transfer = p.transfer_ns(held.capacity)
        channel = self.channels[self.layout.channel_of(pu)]
        free = max(at, unit.busy_until)
        start = channel.reserve(free, transfer)
        unit.busy_until = start + transfer + p.program_ns
        unit.busy_ns += unit.busy_until - free
        held.release_ns = unit.busy_until

    def _write_through(self, now: int, pu: int, groups: dict[tuple[FlashPage, ...], int]
                       ) -> int:
        """No buffer: each unit is programmed in turn; done when the last one is."""
        done = now
        unit = self.pus[pu]
        for key in groups:
            held = BufferedUnit(key, self.parameters.page_sectors * len(key))
            self._schedule(pu, held, now)
            done = unit.busy_until
        return done
