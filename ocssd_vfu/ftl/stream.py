"""A write stream: sectors placed one after another into write units striped over PUs.

The host's writes and GC's moves each have a stream (so data GC found still valid,
which is cold, does not share chunks with fresh host data). A stream has one open
chunk per PU; consecutive write units go to consecutive PUs in the layout's stripe
order. A sector gets its physical place and its sequence number when it is placed,
so within a chunk sequence numbers grow with the sector. A unit is programmed as
soon as it is full; until then its sectors wait in the write buffer (served from
there to reads), and `sync` stages those not yet staged so they are durable.
Only a Flush or shutdown (`pad`) programs a partial unit, filled with padding.

A program failure retires the chunk and places the unit's still-valid sectors
again; they are durable at their new places before the operation returns.
"""

from __future__ import annotations

from typing import NamedTuple

from ocssd_vfu.ftl.services import FtlServices
from ocssd_vfu.ftl.trace import OpKind, Purpose
from ocssd_vfu.spec.ftl import Marker, sector_oob


class NoSpace(Exception):
    """No chunk can be opened even after GC: the media has too many bad chunks."""


class Buffered(NamedTuple):
    lba: int           # or Marker.PADDING
    data: bytes
    oob: bytes


class WriteStream:
    def __init__(self, ftl: FtlServices, purpose: Purpose) -> None:
        self.ftl = ftl
        self.purpose = purpose
        self.open: dict[int, int] = {}        # PU -> open chunk
        self.order = ftl.layout.stripe_order()
        self.cursor = 0                       # index into `order` of the next unit's PU
        self.unit_chunk = -1                  # chunk of the unit being filled, -1 for none
        self.unit_start = 0
        self.pending: list[Buffered] = []
        self.staged = 0

    # -- placing ----------------------------------------------------------------------------
    def place(self, lba: int, data: bytes, purpose: Purpose | None = None) -> None:
        """Give `lba` (data of one sector) its next place in the stream."""
        ftl = self.ftl
        if self.unit_chunk < 0:
            self._start_unit()
        phys = self.unit_chunk * ftl.layout.clba + self.unit_start + len(self.pending)
        seq = ftl.next_seq()
        if lba != Marker.PADDING:
            ftl.mapping.place(lba, phys)
        ftl.count_placed(purpose or self.purpose, 1)
        self.pending.append(Buffered(lba, data, sector_oob(data, lba, seq,
                                                          ftl.layout.oob_size)))
        ftl.chunks.newest_seq[self.unit_chunk] = seq
        if len(self.pending) == ftl.layout.ws_min:
            self._program()

    def sync(self) -> None:
        """Make every placed sector durable (stage what is not yet)."""
        if self.staged == len(self.pending):
            return
        new = self.pending[self.staged:]
        sector = self.unit_start + self.staged
        self.ftl.flash.stage(self.unit_chunk, sector, b"".join(b.data for b in new),
                             b"".join(b.oob for b in new))
        self.ftl.record(OpKind.STAGE, self.purpose, self.unit_chunk, sector, len(new))
        self.staged = len(self.pending)

    def pad(self) -> None:
        """Program the partial unit, completed with padding (Flush, shutdown)."""
        if self.pending:
            zero = bytes(self.ftl.layout.sec_size)
            while self.pending:
                self.place(Marker.PADDING, zero, Purpose.PAD)

    def buffered(self, phys: int) -> bytes | None:
        """The data of `phys` if it is waiting in this stream's buffer."""
        clba = self.ftl.layout.clba
        if phys // clba != self.unit_chunk:
            return None
        index = phys % clba - self.unit_start
        return self.pending[index].data if 0 <= index < len(self.pending) else None

    def holds_open(self, chunk: int) -> bool:
        return chunk in self.open.values()

    def resume(self, pu: int, chunk: int) -> None:
        """Continue writing `chunk` (open before a restart) for PU `pu`."""
        self.open[pu] = chunk

    # -- internals --------------------------------------------------------------------------
    def _start_unit(self) -> None:
        """Open the unit on the next PU (in stripe order) that has or gets a chunk."""
        ftl = self.ftl
        for step in range(len(self.order)):
            index = (self.cursor + step) % len(self.order)
            pu = self.order[index]
            chunk = self.open.get(pu)
            if chunk is None:
                chunk = ftl.allocate(pu, self.purpose)
                if chunk is None:
                    continue
                self.open[pu] = chunk
            self.cursor = index
            self.unit_chunk = chunk
            self.unit_start = ftl.chunks.programmed[chunk]
            return
        raise NoSpace("no free chunk left on any PU, and GC found nothing to reclaim")

    def _program(self) -> None:
        ftl = self.ftl
        chunk, start, units = self.unit_chunk, self.unit_start, self.pending
        self.unit_chunk, self.pending, self.staged = -1, [], 0
        self.cursor = (self.cursor + 1) % len(self.order)
        pu = ftl.layout.parallel_unit(chunk)
        ok = ftl.flash.write(chunk, b"".join(b.data for b in units),
                             b"".join(b.oob for b in units))
        kind = OpKind.PROGRAM if ok else OpKind.PROGRAM_FAILED
        purpose = Purpose.PAD if units[-1].lba == Marker.PADDING else self.purpose
        ftl.record(kind, purpose, chunk, start, len(units))
        if ok:
            ftl.count_programmed(len(units))
            ftl.chunks.programmed[chunk] = start + len(units)
            if start + len(units) == ftl.layout.clba:
                del self.open[pu]
                ftl.chunks.close(chunk)
            return
        del self.open[pu]
        ftl.retire(chunk)
        # Unmapped before they are placed again: placing may run GC, which must not take
        # the retired chunk's unprogrammed sectors for valid data.
        base = chunk * ftl.layout.clba + start
        again = [sector for offset, sector in enumerate(units)
                 if sector.lba != Marker.PADDING and ftl.mapping.holds(base + offset) == sector.lba]
        for sector in again:
            ftl.mapping.unmap(sector.lba)
        for sector in again:
            self.place(sector.lba, sector.data, Purpose.RELOCATE)
