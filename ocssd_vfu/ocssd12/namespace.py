"""An OCSSD 1.2 namespace: physical page erase, write and read, and the bad-block
tables, over the image's views (ocssd-spec §3).

Every operation takes the decoded PPA list and returns (status, bitmap): bit i
set means the i-th PPA failed (CQE DW0-DW1). Checks run before any byte moves;
data and OOB land in the image before a page counts as programmed.

Plane modes (control bits 1:0): single-plane commands are always accepted;
dual or quad only when MPOS offers them for the operation (this device offers
exactly its own plane count). A multi-plane write programs each page it names
on every plane; a multi-plane erase erases the block on every plane; a
multi-plane read may name any pages (Linux's chunk scan sends one PPA).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from ocssd_vfu.dma import dptr
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry, PpaFormat12
from ocssd_vfu.nvme.kind import NamespaceKind
from ocssd_vfu.ocssd12.bad_blocks import READ_STATUSES, ocssd12_space
from ocssd_vfu.ocssd12.blocks import VALUES, BlockTable
from ocssd_vfu.openchannel.faults import Fault, FaultBook
from ocssd_vfu.openchannel.identify import identify_namespace
from ocssd_vfu.openchannel.oob import OOB_UNWRITTEN, filled_buffer, store_oob
from ocssd_vfu.spec.ocssd import MAX_VECTOR_LBAS
from ocssd_vfu.spec.ocssd12 import (
    BBT_VERSION,
    CONTROL_PLANE_MASK,
    MPOS_ERASE_SHIFT,
    MPOS_PROGRAM_SHIFT,
    MPOS_READ_SHIFT,
    PLANES_OF_MODE,
    BadBlockTableHeader,
    BlockValue,
    PlaneMode,
)
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.timing.model import FlashModel

Placed = tuple[int, int, int]   # (plane block, page, sector index in the namespace)


class Ocssd12Namespace:
    kind: ClassVar[NamespaceKind]  # its command table: commands.py registers it
    supports_dulbe = False  # erased pages have their own status (Empty Page)

    def __init__(self, nsid: int, geometry: Ocssd12Geometry, bbt: memoryview,
                 records: memoryview, data: memoryview, oob: memoryview,
                 faults: FaultBook | None = None, timing: FlashModel | None = None,
                 pe_cycles: int | None = None,
                 reserve: Callable[[int, int], bool] | None = None) -> None:
        self.nsid = nsid
        self.timing = timing  # serve --timing: the flash model its commands' times come from
        self.geometry = geometry
        self.reserve = reserve  # space in the image for (first sector, count), before writing
        self.address = PpaFormat12(geometry)
        self.blocks = BlockTable(bbt, records, geometry)
        self.data = data
        self.oob = oob
        self.faults = faults if faults is not None else FaultBook(ocssd12_space(geometry))
        self.pe_cycles = pe_cycles   # endurance: an erase after that many fails
        # Told when an erase fails and retires a block: watcher(block index, reason).
        self.watchers: list[Callable[[int, str], None]] = []
        self.failed_program: set[int] = set()  # plane blocks, until their next erase
        self.lba_size = geometry.sec_size
        self.zeroes = filled_buffer(0, geometry.sec_size * MAX_VECTOR_LBAS)
        self.erased_oob = filled_buffer(OOB_UNWRITTEN, geometry.md_size * MAX_VECTOR_LBAS)

    # -- identification ---------------------------------------------------------------------
    def identify(self) -> bytes:
        g = self.geometry
        return identify_namespace(g.sectors, g.sec_size, g.md_size, dulbe=False)

    def geometry_page(self) -> bytes:
        """Admin E2h: the Device Identification, version 1."""
        return self.geometry.to_bytes()

    def flush_write_cache(self) -> None:
        """No write cache: a programmed page is readable at once."""

    # -- addressing -------------------------------------------------------------------------
    def planes(self, control: int, mpos_shift: int) -> int | None:
        """Planes a command drives, or None if the device does not offer its plane mode."""
        try:
            mode = PlaneMode(control & CONTROL_PLANE_MASK)
        except ValueError:
            return None
        if mode != PlaneMode.SINGLE and not self.geometry.mpos >> mpos_shift & 1 << mode:
            return None  # MPOS bit i: the mode of value i (dual 1, quad 2)
        return PLANES_OF_MODE[mode]

    def _place(self, ppas: list[int]) -> tuple[list[Placed], int]:
        """Each PPA's plane block, page and sector index; or, if some PPAs are outside the
        geometry, nothing and the bitmap of those."""
        g = self.geometry
        locate, pln, spp, num_pg = self.address.locate, g.num_pln, g.sec_per_pg, g.num_pg
        placed: list[Placed] = []
        bad = 0
        for i, ppa in enumerate(ppas):
            where = locate(ppa)
            if where is None:
                bad |= 1 << i
                continue
            block, pg, pl, sec = where
            placed.append((block * pln + pl, pg, ((block * num_pg + pg) * pln + pl) * spp + sec))
        return ([] if bad else placed), bad

    def _segments(self, view: memoryview, unit: int, runs: list[tuple[int, int]]
                  ) -> list[memoryview]:
        return [view[start * unit:(start + count) * unit] for start, count in runs]

    # -- write ------------------------------------------------------------------------------
    def write(self, memory: GuestMemory, page_size: int, ppas: list[int],
              pointer: dptr.DataPointer, control: int) -> tuple[int, int]:
        planes = self.planes(control, MPOS_PROGRAM_SHIFT)
        if planes is None:
            return Status.INVALID_FIELD | DNR, 0
        placed, bad = self._place(ppas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        pages, refused = self._pages(placed, planes)
        if refused:
            return refused
        table, spp, ss = self.blocks, self.geometry.sec_per_pg, self.lba_size
        bad_pages: set[int] = set()   # list positions of pages whose block refuses them
        injected: dict[int, int] = {}  # plane block -> list position of its failed page
        for first, plane_block, page, _ in pages:
            if self._refuses_programs(plane_block) or plane_block in injected:
                bad_pages.add(first)
            elif self.faults.has("write") and self._fault("write", plane_block, page):
                injected[plane_block] = first
        failed_pages = bad_pages.union(injected.values())
        pieces: list[list[int]] = []  # [first sector, count]; -1: a failed page's bytes
        for first, _, _, start in pages:
            if first in failed_pages:
                pieces.append([-1, spp])
            elif pieces and pieces[-1][0] >= 0 and sum(pieces[-1]) == start:
                pieces[-1][1] += spp
            else:
                pieces.append([start, spp])
        if self.reserve is not None and not all(self.reserve(s, c) for s, c in pieces if s >= 0):
            return Status.CAPACITY_EXCEEDED | DNR, (1 << len(ppas)) - 1  # the disk is full
        segments = [self.data[s * ss:(s + c) * ss] if s >= 0 else memoryview(bytearray(c * ss))
                    for s, c in pieces]
        status, oob = dptr.move(memory, pointer, page_size, segments,
                                len(ppas) * self.geometry.md_size, to_guest=False)
        if status:
            return status, 0
        ms = self.geometry.md_size
        failed = 0
        for first, plane_block, page, start in pages:
            if first in failed_pages:
                failed |= ((1 << spp) - 1) << first
                if injected.get(plane_block) == first:
                    self.failed_program.add(plane_block)
                continue
            if ms:
                store_oob(self.oob[start * ms:(start + spp) * ms], oob, first * ms,
                          self.erased_oob)
            table.programmed(plane_block, page)
        if failed:
            return Status.OCSSD12_WRITE_FAIL | DNR, failed
        return Status.SUCCESS, 0

    def _refuses_programs(self, plane_block: int) -> bool:
        return plane_block in self.failed_program or self.blocks.unusable(plane_block)

    def _pages(self, placed: list[Placed], planes: int
               ) -> tuple[list[tuple[int, int, int, int]], tuple[int, int] | None]:
        """Whole pages, each programmed next in its plane block (multi-plane: on every
        plane): (first list position, plane block, page, first sector) each; or the
        status and bitmap of the first broken rule."""
        spp, table = self.geometry.sec_per_pg, self.blocks
        pages = []
        projected: dict[int, int] = {}
        for first in range(0, len(placed), spp):
            plane_block, page, start = placed[first]
            bits = ((1 << spp) - 1) << first
            run = placed[first:first + spp]
            if start % spp or len(run) < spp or any(
                    s != start + k or pb != plane_block for k, (pb, _, s) in enumerate(run)):
                return [], (Status.INVALID_FIELD | DNR, bits)  # not one whole page
            if page != projected.get(plane_block, table.pages[plane_block]) \
                    and not self._refuses_programs(plane_block):  # such blocks fail as media
                return [], (Status.INVALID_FIELD | DNR, bits)  # programmed, or skips pages
            projected[plane_block] = page + 1
            pages.append((first, plane_block, page, start))
        if planes > 1:
            pln = self.geometry.num_pln
            per_page = Counter((pb // pln, page) for _, pb, page, _ in pages)
            if any(count != pln for count in per_page.values()):
                return [], (Status.INVALID_FIELD | DNR, (1 << len(placed)) - 1)
        return pages, None

    # -- read -------------------------------------------------------------------------------
    def read(self, memory: GuestMemory, page_size: int, ppas: list[int],
             pointer: dptr.DataPointer, control: int) -> tuple[int, int]:
        if self.planes(control, MPOS_READ_SHIFT) is None:
            return Status.INVALID_FIELD | DNR, 0
        placed, bad = self._place(ppas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        programmed = self.blocks.pages
        empty = 0
        runs: list[tuple[int, int]] = []
        for i, (plane_block, page, sector) in enumerate(placed):
            if page >= programmed[plane_block]:
                empty |= 1 << i
            elif runs and runs[-1][0] + runs[-1][1] == sector:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((sector, 1))
        if empty:  # the kernel's chunk scan tells erased pages by this status
            return Status.OCSSD12_EMPTY_PAGE | DNR, empty
        injected, bits = self._injected_read_failure(placed) if self.faults.has("read") \
            else (0, 0)
        if injected & ~DNR == Status.UNRECOVERED_READ:  # no data for an ECC failure
            return injected, bits
        status, oob = dptr.move(memory, pointer, page_size,
                                self._segments(self.data, self.lba_size, runs),
                                len(ppas) * self.geometry.md_size, to_guest=True)
        if status:
            return status, 0
        if oob is not None:
            ms, at = self.geometry.md_size, 0
            for piece in self._segments(self.oob, ms, runs):
                oob.view[at:at + len(piece)] = piece
                at += len(piece)
            oob.commit()
        return (injected, bits) if injected else (Status.SUCCESS, 0)

    def _injected_read_failure(self, placed: list[Placed]) -> tuple[int, int]:
        """(status, bitmap) of --read-fail pages among the PPAs: an ECC failure wins over
        high ECC (data read, near its limit); (0, 0) if none."""
        verdicts: dict[tuple[int, int], int] = {}
        worst, bits = 0, 0
        for i, (plane_block, page, _) in enumerate(placed):
            unit = (plane_block, page)
            if unit not in verdicts:  # one draw per page
                fault = self._fault("read", plane_block, page)
                verdicts[unit] = READ_STATUSES[fault.status or "ECC"] if fault else 0
            status = verdicts[unit]
            if status:
                bits |= 1 << i
                if not worst or status & ~DNR == Status.UNRECOVERED_READ:
                    worst = status
        return worst, bits

    def read_linear(self, memory: GuestMemory, page_size: int, slba: int, nlb: int,
                    pointer: dptr.DataPointer) -> int:
        """NVMe Read (02h) of the raw namespace: sectors in the image's order, erased
        ones as zeroes (the partition scan reads sector 0)."""
        g = self.geometry
        if slba + nlb > g.sectors:
            return Status.LBA_OUT_OF_RANGE | DNR
        segments = []
        for sector in range(slba, slba + nlb):
            unit = sector // g.sec_per_pg
            plane_block = unit // (g.num_pln * g.num_pg) * g.num_pln + unit % g.num_pln
            page = unit // g.num_pln % g.num_pg
            if page < self.blocks.pages[plane_block]:
                segments.append(self.data[sector * self.lba_size:(sector + 1) * self.lba_size])
            else:
                segments.append(self.zeroes[:self.lba_size])
        return dptr.move_data(memory, pointer, page_size, segments, to_guest=True)

    # -- erase ------------------------------------------------------------------------------
    def erase(self, ppas: list[int], control: int) -> tuple[int, int]:
        planes = self.planes(control, MPOS_ERASE_SHIFT)
        if planes is None:
            return Status.INVALID_FIELD | DNR, 0
        placed, bad = self._place(ppas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        table, pln = self.blocks, self.geometry.num_pln
        failed = 0
        for i, (plane_block, _, _) in enumerate(placed):
            block = plane_block // pln
            targets = range(block * pln, block * pln + pln) if planes > 1 else [plane_block]
            if any(table.unusable(t) for t in targets):
                failed |= 1 << i
            elif reason := self._erase_failure(block, targets):
                for t in targets:  # a failed erase retires the block
                    table.erase_failed(t)
                    self.failed_program.discard(t)
                failed |= 1 << i
                for watcher in self.watchers:
                    watcher(block, reason)
            else:
                for t in targets:
                    table.erase(t)
        if failed:
            return Status.OCSSD12_WRITE_FAIL | DNR, failed
        return Status.SUCCESS, 0

    def _fault(self, op: str, plane_block: int, page: int) -> Fault | None:
        block, pln = divmod(plane_block, self.geometry.num_pln)
        return self.faults.fires(op, self.geometry.block_position(block), (pln, page))

    def _erase_failure(self, block: int, targets: range | list[int]) -> str | None:
        """Why this erase fails (and retires the block), or None."""
        if self.faults.fires("reset", self.geometry.block_position(block)):
            return "injected-fault"
        if self.failed_program.intersection(targets):
            return "write-failure"
        if self.pe_cycles is not None and any(self.blocks.erases[t] >= self.pe_cycles
                                              for t in targets):
            return "worn-out"
        return None

    # -- bad-block tables -------------------------------------------------------------------
    def bad_block_table(self, ppa: int) -> bytes | None:
        """Get Bad Block Table (F2h) of the LUN `ppa` names; None if it names none."""
        address = self.address.unpack(ppa)
        g = self.geometry
        if address.ch >= g.num_ch or address.lun >= g.num_lun:
            return None
        table = self.blocks.lun_table(address.ch * g.num_lun + address.lun)
        header = BadBlockTableHeader.build(dict(
            verid=BBT_VERSION, revid=0, tblks=len(table),
            tfact=table.count(BlockValue.FACTORY), tgrown=table.count(BlockValue.GROWN),
            tdresv=table.count(BlockValue.DEVICE), thresv=table.count(BlockValue.HOST)))
        return header + table

    def set_bad_blocks(self, ppas: list[int], value: int) -> tuple[int, int]:
        """Set Bad Block Table (F1h): every listed block of a plane gets `value`."""
        if value not in VALUES:
            return Status.INVALID_FIELD | DNR, 0
        placed, bad = self._place(ppas)
        if bad:
            return Status.LBA_OUT_OF_RANGE | DNR, bad
        for plane_block, _, _ in placed:
            self.blocks.mark(plane_block, value)
        return Status.SUCCESS, 0
