"""The device-side FTL through the flash timing model (serve --mode ftl --timing).

The FTL decides every command's outcome first; what it did on the media (its MediaOp
trace, ftl/trace.py: host reads and programs, GC reads, moves and erases, padding,
checkpoints) is then charged to the namespace's FlashModel at the command's `now`, and
the command completes when the last of those operations does in the model. Timing never
changes data or status.

How a MediaOp becomes model work (PU = chunk // num_chk, the model's numbering):
- READ: `read_sectors` of its sectors. A read of data still in the FTL's write buffer
  is no MediaOp (it costs nothing), and the model serves pages it still buffers without
  tRD.
- STAGE and PROGRAM (PROGRAM_FAILED too: the failed program took its time): each sector
  enters the model's write buffer once, when the FTL places it durably (a STAGE when a
  command ends inside a write unit, a PROGRAM when it fills one), so a host write
  completes when its sectors are admitted and the model programs each unit when it is
  full, as the model's write buffer does.
- RESET and RESET_FAILED: one `erase_blocks` of the chunk's PU.
A 2.0 chunk is the model's block and sector // ws_opt its page. A 1.2 chunk is a block
on all its planes, its sectors page by page, plane by plane within a page (the image's
order); an FTL write unit is one page on every plane, so it is a multi-plane program,
given to the model when the unit is whole (its staged part completes at once).

Work done outside host commands (Flush padding, background GC steps, shutdown) is charged
at the clock's time: it keeps PUs busy and delays the host commands that follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ocssd_vfu.ftl.flash import FlashLayout
from ocssd_vfu.ftl.trace import MediaOp, OpKind
from ocssd_vfu.timing.model import FlashModel, FlashPage

PROGRAMS = (OpKind.STAGE, OpKind.PROGRAM, OpKind.PROGRAM_FAILED)
ERASES = (OpKind.RESET, OpKind.RESET_FAILED)


class FtlTiming:
    def __init__(self, model: FlashModel, layout: FlashLayout, clock: Callable[[], int]
                 ) -> None:
        self.model = model
        self.layout = layout
        self.clock = clock                  # CLOCK_MONOTONIC ns, as the controller's
        self.planes = model.parameters.planes
        self.multi_plane = self.planes > 1
        self.admitted: dict[int, int] = {}  # chunk -> sectors given to the model so far

    def charge(self, ops: Iterable[MediaOp], now: int) -> int:
        """Give the model `ops` at `now`; when the last of them completes."""
        model, due = self.model, now
        for op in ops:
            pu = self.layout.parallel_unit(op.chunk)
            if op.kind == OpKind.READ:
                due = max(due, model.read_sectors(
                    now, self._sectors(pu, op.chk, op.sector, op.sector + op.sectors),
                    self.multi_plane))
            elif op.kind in PROGRAMS:
                first = max(op.sector, self.admitted.get(op.chunk, 0))
                end = op.sector + op.sectors
                if self.multi_plane:   # whole units only: the model's key names every plane
                    end -= end % self.layout.ws_min
                if end > first:
                    self.admitted[op.chunk] = end
                    due = max(due, model.program_sectors(
                        now, self._sectors(pu, op.chk, first, end), self.multi_plane))
            elif op.kind in ERASES:
                self.admitted.pop(op.chunk, None)
                due = max(due, model.erase_blocks(now, [pu]))
        return due

    def charge_now(self, ops: Iterable[MediaOp]) -> None:
        """Work no host command waits for (background GC, Flush padding)."""
        self.charge(ops, self.clock())

    def flush(self, now: int) -> int:
        """When every buffered unit is programmed (Flush, shutdown: nvme/state.py)."""
        return self.model.flush(now)

    def _sectors(self, pu: int, chk: int, first: int, end: int) -> list[tuple[int, FlashPage]]:
        ws_opt = self.layout.ws_opt
        if not self.multi_plane:
            return [(pu, FlashPage(chk, sector // ws_opt)) for sector in range(first, end)]
        per_page = self.layout.ws_min // self.planes   # sectors of one page of one plane
        planes = self.planes
        found = []
        for sector in range(first, end):
            unit = sector // per_page
            found.append((pu, FlashPage(chk, unit // planes, unit % planes)))
        return found
