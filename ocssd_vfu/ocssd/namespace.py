"""An OCSSD 2.0 namespace: vector reset, write and read over the image's views.

Every operation takes the decoded LBA list and returns (status, bitmap): bit i
of the bitmap set means the i-th LBA failed (CQE DW0-DW1). Checks run before
any byte moves, so a refused command changes neither the image nor the guest;
data and OOB land in the image before the chunk's WP moves (a crash of the
server never exposes a WP beyond the data).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ocssd_vfu.nvme.memory import DmaError, GuestMemory
from ocssd_vfu.nvme.prp import PrpError, transfer
from ocssd_vfu.ocssd.chunks import ChunkTable
from ocssd_vfu.ocssd.geometry import AddressFormat, OcssdGeometry
from ocssd_vfu.spec.nvme import IdentifyNamespace, blank
from ocssd_vfu.spec.ocssd import CHUNK_DESCRIPTOR_SIZE, Mccap
from ocssd_vfu.spec.status import DNR, Status

OOB_UNWRITTEN = 0xFF  # erased-flash OOB for sectors that hold no data
NSFEAT_DULBE = 1 << 2
DLFEAT_READS_ZEROES = 0x1
MC_SEPARATE_BUFFER = 1 << 1


@dataclass
class Faults:
    """Injected media failures (--write-fail, --reset-fail): probability in percent."""

    write_fail: dict[tuple[int, int], int] = field(default_factory=dict)  # (chunk, sec)
    reset_fail: dict[int, int] = field(default_factory=dict)              # chunk
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def hit(self, probability: int) -> bool:
        return self.rng.randrange(100) < probability


@dataclass
class Run:
    """Consecutive sectors of one chunk, at positions first..first+count-1 of the LBA list."""

    chunk: int
    start: int
    count: int
    first: int


class OcssdNamespace:
    def __init__(self, nsid: int, geometry: OcssdGeometry, chunk_log: memoryview,
                 data: memoryview, oob: memoryview, early_reset: bool = True,
                 faults: Faults | None = None) -> None:
        self.nsid = nsid
        self.geometry = geometry
        self.address = AddressFormat(geometry)
        self.chunks = ChunkTable(chunk_log, geometry, early_reset)
        self.data = data
        self.oob = oob
        self.faults = faults or Faults()
        self.lba_size = geometry.sec_size
        self.zeroes = memoryview(bytes(geometry.sec_size * 64))
        self.supports_dulbe = True

    # -- identification ---------------------------------------------------------------------
    def identify(self) -> bytes:
        g = self.geometry
        size = 1 << g.address_bits  # the whole (sparse) address space, as qemu-nvme reports
        ident = blank(IdentifyNamespace)
        ident.update(dict(nsze=size, ncap=size, nuse=size, nsfeat=NSFEAT_DULBE,
                          mc=MC_SEPARATE_BUFFER, dlfeat=DLFEAT_READS_ZEROES,
                          vs=b"\x01".ljust(3712, b"\0")))
        ident.lbaf[0].lbads = g.sec_size.bit_length() - 1
        ident.lbaf[0].ms = g.md_size
        return IdentifyNamespace.build(ident)

    def geometry_page(self) -> bytes:
        page = bytearray(self.geometry.to_bytes())
        if self.chunks.early_reset:
            mccap = int.from_bytes(page[16:20], "little") | Mccap.EARLY_RESET
            page[16:20] = mccap.to_bytes(4, "little")
        return bytes(page)

    def chunk_log(self) -> bytes:
        return bytes(self.chunks.log)

    def settle(self) -> None:
        self.chunks.settle()

    # -- addressing -------------------------------------------------------------------------
    def _runs(self, lbas: list[int]) -> tuple[list[Run], int]:
        """Group the list into per-chunk runs; the bitmap of LBAs outside the geometry."""
        runs: list[Run] = []
        bad = 0
        locate = self.address.locate
        for i, lba in enumerate(lbas):
            where = locate(lba)
            if where is None:
                bad |= 1 << i
                continue
            chunk, sec = where
            if runs:
                last = runs[-1]
                if last.chunk == chunk and last.start + last.count == sec \
                        and last.first + last.count == i:
                    last.count += 1
                    continue
            runs.append(Run(chunk, sec, 1, i))
        return runs, bad

    def _sectors(self, view: memoryview, unit: int, run: Run, count: int | None = None
                 ) -> memoryview:
        first = run.chunk * self.geometry.num_sec + run.start
        return view[first * unit:(first + (run.count if count is None else count)) * unit]

    @staticmethod
    def _bits(run: Run, skip: int = 0) -> int:
        return ((1 << (run.count - skip)) - 1) << (run.first + skip)

    def _oob_buffer(self, memory: GuestMemory, mptr: int, nlb: int, write: bool
                    ) -> memoryview | None:
        if not mptr or not self.geometry.md_size:
            return None
        return memory.view(mptr, nlb * self.geometry.md_size, write=write)

    # -- vector write -----------------------------------------------------------------------
    def write(self, memory: GuestMemory, page_size: int, lbas: list[int], prp1: int,
              prp2: int, mptr: int) -> tuple[int, int]:
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
        if status:
            return status, failed
        cut = self._injected_write_failures(runs)
        ss, ms = self.geometry.sec_size, self.geometry.md_size
        segments = []
        for run in runs:
            written = cut.get(id(run), run.count)
            segments.append(self._sectors(self.data, ss, run, written))
            if written < run.count:
                segments.append(memoryview(bytearray((run.count - written) * ss)))
        try:
            oob = self._oob_buffer(memory, mptr, len(lbas), write=False)
            transfer(memory, prp1, prp2, page_size, segments, to_guest=False)
        except DmaError:
            return Status.DATA_TRANSFER_ERROR, 0
        except PrpError as err:
            return err.status, 0
        for run in runs:
            written = cut.get(id(run), run.count)
            if ms:
                target = self._sectors(self.oob, ms, run, written)
                if oob is None:
                    target[:] = b"\xff" * len(target)
                else:
                    target[:] = oob[run.first * ms:(run.first + written) * ms]
            if written < run.count:
                table.close_early(run.chunk, run.start + written)
                failed |= self._bits(run, skip=written)
            else:
                table.written(run.chunk, run.start + run.count)
        if failed:
            return Status.WRITE_FAIL_CHUNK_EARLY_CLOSE | DNR, failed
        return Status.SUCCESS, 0

    def _injected_write_failures(self, runs: list[Run]) -> dict[int, int]:
        """Runs cut short by --write-fail: id(run) -> sectors written before the failure."""
        cut: dict[int, int] = {}
        if not self.faults.write_fail:
            return cut
        closed: set[int] = set()
        for run in runs:
            if run.chunk in closed:
                cut[id(run)] = 0  # an earlier run of this command closed the chunk
                continue
            for offset in range(run.count):
                probability = self.faults.write_fail.get((run.chunk, run.start + offset))
                if probability and self.faults.hit(probability):
                    cut[id(run)] = offset
                    closed.add(run.chunk)
                    break
        return cut

    # -- vector read ------------------------------------------------------------------------
    def read(self, memory: GuestMemory, page_size: int, lbas: list[int], prp1: int,
             prp2: int, mptr: int, dulbe: bool) -> tuple[int, int]:
        runs, bad = self._runs(lbas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        ss, ms = self.geometry.sec_size, self.geometry.md_size
        readable = self.chunks.readable
        pieces: list[tuple[Run, int]] = []  # (run, sectors of it that hold data)
        unwritten = 0
        for run in runs:
            valid = max(0, min(run.count, readable[run.chunk] - run.start))
            pieces.append((run, valid))
            if valid < run.count:
                unwritten |= self._bits(run, skip=valid)
        if unwritten and dulbe:
            return Status.DEALLOCATED_OR_UNWRITTEN, unwritten
        segments = []
        for run, valid in pieces:
            if valid:
                segments.append(self._sectors(self.data, ss, run, valid))
            for _ in range(run.count - valid):
                segments.append(self.zeroes[:ss])
        try:
            oob = self._oob_buffer(memory, mptr, len(lbas), write=True)
            transfer(memory, prp1, prp2, page_size, segments, to_guest=True)
        except DmaError:
            return Status.DATA_TRANSFER_ERROR, 0
        except PrpError as err:
            return err.status, 0
        if oob is not None:
            for run, valid in pieces:
                at = run.first * ms
                oob[at:at + valid * ms] = self._sectors(self.oob, ms, run, valid)
                oob[at + valid * ms:(run.first + run.count) * ms] = \
                    b"\xff" * ((run.count - valid) * ms)
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
            verdict = table.reset_status(chunk)
            if not verdict and self._reset_fails(chunk):
                table.take_offline(chunk)
                verdict = Status.OFFLINE_CHUNK | DNR
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

    def _reset_fails(self, chunk: int) -> bool:
        if chunk in self.chunks.fail_next_reset:
            return True
        probability = self.faults.reset_fail.get(chunk)
        return bool(probability) and self.faults.hit(probability or 0)

