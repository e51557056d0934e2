"""An OCSSD 2.0 namespace: vector reset, write and read over the image's views.

Every operation takes the decoded LBA list and returns (status, bitmap): bit i
of the bitmap set means the i-th LBA failed (CQE DW0-DW1). Checks run before
any byte moves, so a refused command changes neither the image nor the guest;
data and OOB land in the image before the chunk's WP moves (a crash of the
server never exposes a WP beyond the data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ocssd_vfu.dma import dptr
from ocssd_vfu.dma.memory import DmaError, GuestMemory
from ocssd_vfu.geometry.ocssd20 import AddressFormat, OcssdGeometry
from ocssd_vfu.nvme.kind import NamespaceKind
from ocssd_vfu.ocssd.chunks import ChunkTable
from ocssd_vfu.ocssd.faults import ocssd20_space
from ocssd_vfu.ocssd.wear import NotificationLog
from ocssd_vfu.openchannel.faults import FaultBook
from ocssd_vfu.openchannel.identify import identify_namespace
from ocssd_vfu.openchannel.oob import OOB_UNWRITTEN, fill_from, filled_buffer, store_oob
from ocssd_vfu.spec.ocssd import (
    CHUNK_DESCRIPTOR_SIZE,
    MAX_VECTOR_LBAS,
    NotificationMask,
    NotificationState,
)
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.timing.model import FlashModel


@dataclass(slots=True)
class Run:
    """Consecutive sectors of one chunk, at positions first..first+count-1 of the LBA list.
    `written`: how many of them, from the first, a write lands (fewer after an injected
    failure) or a read finds holding data."""

    chunk: int
    start: int
    count: int
    first: int
    written: int = 0


class OcssdNamespace:
    kind: ClassVar[NamespaceKind]  # its command table: commands.py registers it
    supports_dulbe = True

    def __init__(self, nsid: int, geometry: OcssdGeometry, chunk_log: memoryview,
                 data: memoryview, oob: memoryview, early_reset: bool = True,
                 faults: FaultBook | None = None, timing: FlashModel | None = None,
                 pe_cycles: int | None = None,
                 notifications: NotificationLog | None = None,
                 reserve: Callable[[int], bool] | None = None) -> None:
        self.nsid = nsid
        self.timing = timing  # serve --timing: the flash model its commands' times come from
        self.reserve = reserve  # a chunk's space in the image, as it opens (media/watch.py)
        self.geometry = geometry
        self.address = AddressFormat(geometry)
        self.chunks = ChunkTable(chunk_log, geometry, early_reset, pe_cycles)
        self.data = data
        self.oob = oob
        self.faults = faults if faults is not None else FaultBook(ocssd20_space(geometry))
        self.fail_next_reset: set[int] = set()  # chunks closed by an injected write failure
        # Chunks the device changed on its own: entries of the D0h log, an AER still to
        # post for them (commands.py), and who else wants to know (the control socket:
        # watcher(chunk index, reason)).
        self.notifications = notifications if notifications is not None else NotificationLog()
        self.unannounced = False
        # Reads, writes and resets per PU (one per chunk a command touches), for statistics.
        self.pu_operations = [0] * (geometry.num_grp * geometry.num_pu)
        self.watchers: list[Callable[[int, str], None]] = []
        self.lba_size = geometry.sec_size
        self.zeroes = filled_buffer(0, geometry.sec_size * MAX_VECTOR_LBAS)
        self.erased_oob = filled_buffer(OOB_UNWRITTEN, geometry.md_size * MAX_VECTOR_LBAS)

    # -- identification ---------------------------------------------------------------------
    def identify(self) -> bytes:
        g = self.geometry
        # The whole (sparse) address space, as qemu-nvme reports it.
        return identify_namespace(1 << g.address_bits, g.sec_size, g.md_size, dulbe=True)

    def geometry_page(self) -> bytes:
        return self.geometry.to_bytes(early_reset=self.chunks.early_reset)

    def flush_write_cache(self) -> None:
        self.chunks.flush_write_cache()

    # -- addressing -------------------------------------------------------------------------
    def _runs(self, lbas: list[int]) -> tuple[list[Run], int]:
        """Group the list into per-chunk runs; or, if some LBAs are outside the
        geometry, no runs and the bitmap of those LBAs."""
        runs: list[Run] = []
        bad = 0
        locate = self.address.locate
        num_sec, num_chk = self.geometry.num_sec, self.geometry.num_chk
        follows = stop = -1  # the LBA that extends the last run; the first past its chunk
        for i, lba in enumerate(lbas):
            if lba == follows and lba < stop:  # the sector field is the lowest: same chunk
                follows += 1
                continue
            where = locate(lba)
            if where is None:
                bad |= 1 << i
                continue
            chunk, sec = where
            runs.append(Run(chunk, sec, 0, i))
            self.pu_operations[chunk // num_chk] += 1
            follows, stop = lba + 1, lba - sec + num_sec
        if bad:
            return [], bad
        end = len(lbas)  # every LBA is in a run: each one ends where the next starts
        for run in reversed(runs):
            run.count, end = end - run.first, run.first
        return runs, 0

    def _sectors(self, view: memoryview, unit: int, run: Run, count: int) -> memoryview:
        first = run.chunk * self.geometry.num_sec + run.start
        return view[first * unit:(first + count) * unit]

    @staticmethod
    def _bits(run: Run, skip: int = 0) -> int:
        return ((1 << (run.count - skip)) - 1) << (run.first + skip)

    # -- vector write -----------------------------------------------------------------------
    def write(self, memory: GuestMemory, page_size: int, lbas: list[int],
              pointer: dptr.DataPointer) -> tuple[int, int]:
        runs, bad = self._runs(lbas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        table = self.chunks
        projected: dict[int, int] = {}
        status: int = Status.SUCCESS
        failed = 0
        for run in runs:
            wp = projected.get(run.chunk, table.wp[run.chunk])
            verdict = table.write_status(run.chunk, run.start, run.count, wp)
            if verdict:
                status, failed = status or verdict, failed | self._bits(run)
            projected[run.chunk] = run.start + run.count
            run.written = run.count
        if status:
            return status, failed
        if self.reserve is not None and any(
                run.start == 0 and table.wp[run.chunk] == 0 and not self.reserve(run.chunk)
                for run in runs):  # the disk is full: the chunk stays free
            return Status.CAPACITY_EXCEEDED | DNR, (1 << len(lbas)) - 1
        closing = self._injected_write_failures(runs) if self.faults.has("write") else {}
        ss, ms = self.geometry.sec_size, self.geometry.md_size
        segments = []
        for run in runs:
            if run.written:
                segments.append(self._sectors(self.data, ss, run, run.written))
            if run.written < run.count:  # the guest's data for the failed sectors goes nowhere
                segments.append(memoryview(bytearray((run.count - run.written) * ss)))
        status, oob = dptr.move(memory, pointer, page_size, segments,
                                len(lbas) * self.geometry.md_size, to_guest=False)
        if status:
            return status, 0
        for run in runs:
            if ms:
                store_oob(self._sectors(self.oob, ms, run, run.written), oob, run.first * ms,
                          self.erased_oob)
            if run.written < run.count:
                failed |= self._bits(run, skip=run.written)
                if closing.get(run.chunk) is run:
                    table.close_early(run.chunk, run.start + run.written)
                    self.fail_next_reset.add(run.chunk)  # the block went bad, as in qemu-nvme
            else:
                table.written(run.chunk, run.start + run.count)
        if failed:
            return Status.WRITE_FAIL_CHUNK_EARLY_CLOSE | DNR, failed
        return Status.SUCCESS, 0

    def _injected_write_failures(self, runs: list[Run]) -> dict[int, Run]:
        """Cut runs short at --write-fail sectors: the chunk closes at the first failure
        and later runs of it in the command write nothing. chunk -> the run that fails."""
        closing: dict[int, Run] = {}
        for run in runs:
            if run.chunk in closing:
                run.written = 0
                continue
            position = self.geometry.chunk_position(run.chunk)
            for offset in range(run.count):
                if self.faults.fires("write", position, (run.start + offset,)):
                    run.written = offset
                    closing[run.chunk] = run
                    break
        return closing

    # -- vector read ------------------------------------------------------------------------
    def read(self, memory: GuestMemory, page_size: int, lbas: list[int],
             pointer: dptr.DataPointer, dulbe: bool) -> tuple[int, int]:
        runs, bad = self._runs(lbas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        ss, ms = self.geometry.sec_size, self.geometry.md_size
        readable = self.chunks.readable
        unwritten = 0
        for run in runs:  # `written`: the sectors that hold data
            run.written = max(0, min(run.count, readable[run.chunk] - run.start))
            if run.written < run.count:
                unwritten |= self._bits(run, skip=run.written)
        if unwritten and dulbe:
            return Status.DEALLOCATED_OR_UNWRITTEN | DNR, unwritten
        zeroes = self.zeroes
        segments = []
        for run in runs:
            if run.written:
                segments.append(self._sectors(self.data, ss, run, run.written))
            left = (run.count - run.written) * ss  # predefined data: zeroes
            while left:
                piece = min(left, len(zeroes))
                segments.append(zeroes[:piece])
                left -= piece
        status, oob = dptr.move(memory, pointer, page_size, segments,
                                len(lbas) * self.geometry.md_size, to_guest=True)
        if status:
            return status, 0
        if oob is not None:
            for run in runs:
                at, end = run.first * ms, (run.first + run.written) * ms
                oob.view[at:end] = self._sectors(self.oob, ms, run, run.written)
                fill_from(oob.view[end:(run.first + run.count) * ms], self.erased_oob)
            oob.commit()
        return Status.SUCCESS, 0

    # -- vector reset -----------------------------------------------------------------------
    def reset(self, memory: GuestMemory, lbas: list[int], mptr: int) -> tuple[int, int]:
        table, failed = self.chunks, 0
        status: int = Status.SUCCESS
        descriptors = []
        for i, lba in enumerate(lbas):
            where = self.address.locate(lba)
            if where is None:
                status, failed = status or Status.LBA_OUT_OF_RANGE | DNR, failed | 1 << i
                descriptors.append(bytes(CHUNK_DESCRIPTOR_SIZE))
                continue
            chunk = where[0]
            self.pu_operations[chunk // self.geometry.num_chk] += 1
            verdict = table.reset_status(chunk)
            failure = None if verdict else self._reset_failure(chunk)
            if failure is not None:
                table.take_offline(chunk)
                self.fail_next_reset.discard(chunk)
                verdict = Status.OFFLINE_CHUNK | DNR
                self.went_offline(chunk, failure)
            elif not verdict:
                table.reset(chunk)
            if verdict:
                status, failed = status or verdict, failed | 1 << i
            descriptors.append(table.descriptor(chunk))
        if mptr:
            try:
                memory.write(mptr, b"".join(descriptors))
            except DmaError:
                return status or Status.DATA_TRANSFER_ERROR, failed
        return status, failed

    def _reset_failure(self, chunk: int) -> str | None:
        """Why this reset fails (and the chunk goes OFFLINE), or None."""
        if chunk in self.fail_next_reset:
            return "write-failure"   # the block went bad, as in qemu-nvme
        if self.chunks.worn_out(chunk):
            return "worn-out"
        if self.faults.fires("reset", self.geometry.chunk_position(chunk)):
            return "injected-fault"
        return None

    # -- changes on the device's own account -------------------------------------------------
    def went_offline(self, chunk: int, reason: str) -> None:
        """A chunk went OFFLINE without the host asking: a D0h entry, an AER to post."""
        state = NotificationState.WEAR_LEVEL_OUTSIDE_WIT if reason == "worn-out" \
            else NotificationState.ERROR_RATE_UNRECOVERABLE
        self.notify(self.chunks.slba[chunk], state)
        for watcher in self.watchers:
            watcher(chunk, reason)

    def notify(self, lba: int, state: NotificationState,
               mask: NotificationMask = NotificationMask.CHUNK, nlb: int = 0) -> None:
        """Post a Chunk Notification entry (a media-feedback event: refreshed data, an
        error rate) for a chunk, a PU or a range of sectors."""
        self.notifications.post(self.nsid, lba, state, mask, nlb)
        self.unannounced = True

    def take_announcement(self) -> bool:
        """Whether entries were posted since the last AER for them (and it is now due)."""
        due, self.unannounced = self.unannounced, False
        return due

