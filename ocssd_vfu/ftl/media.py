"""The Flash interface over an image's namespace: OCSSD 2.0 chunks or OCSSD 1.2 blocks.

Both keep their state where the Open-Channel modes keep it (the 2.0 chunk log, the
1.2 bad-block table and block records), with the same injected failures, so
`image info` reads an FTL image like any other. Data and OOB reach the image
before the state that makes them count (the WP, the pages programmed), as in the
Open-Channel namespaces: a SIGKILL never shows a programmed sector without its
bytes. `stage` writes the bytes of sectors beyond the WP and touches no state.

A program failure leaves the whole unit unprogrammed: a 2.0 chunk is closed at its
old WP (the namespace closes it at the failing sector, which need not end a unit);
a 1.2 block takes no more programs until it is erased, and that erase fails and
marks it grown bad, as in the 1.2 namespace.
"""

from __future__ import annotations

from ocssd_vfu.ftl.flash import ChunkInfo, FlashLayout
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.ocssd.chunks import RANDOM, ChunkTable
from ocssd_vfu.ocssd.faults import ocssd20_space
from ocssd_vfu.ocssd12.bad_blocks import ocssd12_space
from ocssd_vfu.ocssd12.blocks import BlockTable
from ocssd_vfu.openchannel.faults import FaultBook
from ocssd_vfu.spec.ocssd import ChunkState
from ocssd_vfu.spec.ocssd12 import BlockValue
from ocssd_vfu.spec.status import Status


class _SectorBytes:
    """The data and OOB bytes of the namespace, chunk after chunk, as both media lay
    them out: the part of Flash that is the same for 2.0 and 1.2."""

    layout: FlashLayout
    data: memoryview
    oob: memoryview

    def stage(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None:
        self._store(chunk, sector, data, oob)

    def read(self, chunk: int, sector: int, count: int) -> tuple[memoryview, memoryview]:
        g = self.layout
        first = chunk * g.clba + sector
        return (self.data[first * g.sec_size:(first + count) * g.sec_size],
                self.oob[first * g.oob_size:(first + count) * g.oob_size])

    def _store(self, chunk: int, sector: int, data: bytes, oob: bytes) -> None:
        g = self.layout
        first = chunk * g.clba + sector
        self.data[first * g.sec_size:first * g.sec_size + len(data)] = data
        self.oob[first * g.oob_size:first * g.oob_size + len(oob)] = oob


class Ocssd20Flash(_SectorBytes):
    def __init__(self, geometry: OcssdGeometry, log: memoryview, data: memoryview,
                 oob: memoryview, faults: FaultBook | None = None) -> None:
        g = geometry
        self.geometry = geometry
        self.layout = FlashLayout(g.num_grp, g.num_pu, g.num_chk, g.num_sec, g.ws_min,
                                  g.ws_opt, g.sec_size, g.md_size)
        self.table = ChunkTable(log, geometry)
        self.data, self.oob = data, oob
        self.faults = faults if faults is not None else FaultBook(ocssd20_space(geometry))

    def chunk_info(self, chunk: int) -> ChunkInfo:
        """A random-write chunk (a --chunk-state W_RAN line) counts as OFFLINE: the FTL
        writes sequentially and a W_RAN chunk's rules (written only while OPEN, never
        CLOSED) are not the interface's."""
        t = self.table
        state = ChunkState(t.state[chunk])
        if state == ChunkState.OFFLINE or t.type[chunk] & RANDOM:
            return ChunkInfo(ChunkState.OFFLINE, 0, t.wli[chunk])
        return ChunkInfo(state, t.wp[chunk], t.wli[chunk])

    def write(self, chunk: int, data: bytes, oob: bytes) -> bool:
        g, t = self.layout, self.table
        count, wp = len(data) // g.sec_size, t.wp[chunk]
        verdict = t.write_status(chunk, wp, count, wp)
        assert verdict == Status.SUCCESS, f"FTL write to chunk {chunk}: status {verdict:#x}"
        position = self.geometry.chunk_position(chunk)
        if any(self.faults.fires("write", position, (sector,))
               for sector in range(wp, wp + count)):
            t.close_early(chunk, wp)
            return False
        self._store(chunk, wp, data, oob)
        t.written(chunk, wp + count)
        return True

    def reset(self, chunk: int) -> bool:
        t = self.table
        verdict = t.reset_status(chunk)
        assert verdict == Status.SUCCESS, f"FTL reset of chunk {chunk}: status {verdict:#x}"
        if self.faults.fires("reset", self.geometry.chunk_position(chunk)):
            t.take_offline(chunk)
            return False
        t.reset(chunk)
        return True


class Ocssd12Flash(_SectorBytes):
    """Chunk b is block b on all its planes (group = channel, PU = LUN); a write unit
    is one page on every plane."""

    def __init__(self, geometry: Ocssd12Geometry, bbt: memoryview, records: memoryview,
                 data: memoryview, oob: memoryview, faults: FaultBook | None = None) -> None:
        g = geometry
        page = g.num_pln * g.sec_per_pg
        self.geometry = g
        self.layout = FlashLayout(g.num_ch, g.num_lun, g.num_blk, g.clba, page, page,
                                  g.sec_size, g.md_size)
        self.blocks = BlockTable(bbt, records, geometry)
        self.data, self.oob = data, oob
        self.faults = faults if faults is not None else FaultBook(ocssd12_space(geometry))
        self.failed_program: set[int] = set()   # blocks, until their next erase

    def _planes(self, block: int) -> range:
        pln = self.geometry.num_pln
        return range(block * pln, (block + 1) * pln)

    def chunk_info(self, chunk: int) -> ChunkInfo:
        b = self.blocks
        planes = self._planes(chunk)
        wear = max(b.erases[p] for p in planes)
        if any(b.unusable(p) for p in planes):
            return ChunkInfo(ChunkState.OFFLINE, 0, wear)
        pages = min(b.pages[p] for p in planes)
        wp = pages * self.layout.ws_min
        if chunk in self.failed_program or pages == self.geometry.num_pg:
            return ChunkInfo(ChunkState.CLOSED, wp, wear)
        return ChunkInfo(ChunkState.OPEN if pages else ChunkState.FREE, wp, wear)

    def write(self, chunk: int, data: bytes, oob: bytes) -> bool:
        g, b = self.layout, self.blocks
        state, wp, _ = self.chunk_info(chunk)
        assert state in (ChunkState.FREE, ChunkState.OPEN), f"FTL write to block {chunk}"
        first_page, pages = wp // g.ws_min, len(data) // (g.ws_min * g.sec_size)
        position = self.geometry.block_position(chunk)
        num_pln = self.geometry.num_pln
        if any(self.faults.fires("write", position, (plane_block % num_pln, page))
               for page in range(first_page, first_page + pages)
               for plane_block in self._planes(chunk)):
            self.failed_program.add(chunk)
            return False
        self._store(chunk, wp, data, oob)
        for page in range(first_page, first_page + pages):
            for plane_block in self._planes(chunk):
                b.programmed(plane_block, page)
        return True

    def reset(self, chunk: int) -> bool:
        assert self.chunk_info(chunk).state != ChunkState.OFFLINE
        if chunk in self.failed_program or self.faults.fires(
                "reset", self.geometry.block_position(chunk)):
            for plane_block in self._planes(chunk):   # a failed erase retires the block
                self.blocks.mark(plane_block, BlockValue.GROWN)
            self.failed_program.discard(chunk)
            return False
        for plane_block in self._planes(chunk):
            self.blocks.erase(plane_block)
        return True

