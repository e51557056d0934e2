"""Opening a formatted flash: the map as of the newest valid checkpoint, plus
everything placed after it, newest sequence number last.

1. The superblock: sector 0 of the first chunk (log order) that holds one.
2. Checkpoints: every chunk whose sector 0 is a checkpoint header; the newest whose
   whole body reads back (every sector CHECKPOINT, its seq C, CRC good) wins, so a
   torn checkpoint falls back to the one before; with none, C = 0 and an empty map
   (a full scan).
3. Records after C: each sector of any other chunk with seq > C (a chunk's sequence
   numbers grow with the sector, so a chunk whose last programmed sector is older
   than C is skipped), including the write unit beyond its write pointer, where the
   write buffer stages sectors (those need a good CRC: they may be torn); and the
   trim journal after the checkpoint's body. Applied in sequence order: newest wins.
   Bytes of an erased chunk's earlier life can be read there too: they are harmless,
   because a sector is erased only once every block it held has a newer record
   (written elsewhere, or trimmed in the journal) or the checkpoint covers it.
4. Staged sectors the map still points at are made programmed: in place, with the
   rest of their unit padded, if the chunk still takes writes; otherwise moved.
5. Open chunks are resumed (per PU, the fullest by the host stream, the next by
   the GC stream); CLOSED chunks with room left were closed by a failed program and
   stay retired, as do chunks the checkpoint marked so.
"""

from __future__ import annotations

import enum
from array import array
from typing import Any, NamedTuple

from construct import ConstructError

from ocssd_vfu.ftl.capacity import FtlPlan, ceil_div
from ocssd_vfu.ftl.chunks import ChunkBook, Role
from ocssd_vfu.ftl.core import COUNTER_NAMES, Ftl, FtlOptions
from ocssd_vfu.ftl.flash import Flash, FlashLayout
from ocssd_vfu.ftl.mapping import unmapped_array
from ocssd_vfu.ftl.trace import OpKind, Purpose
from ocssd_vfu.spec.ftl import (
    CHECKPOINT_MAGIC,
    FTL_VERSION,
    SECTOR_OOB_FORMAT,
    SUPERBLOCK_MAGIC,
    UNMAPPED,
    CheckpointHeader,
    ChunkFlag,
    ChunkRecord,
    JournalSector,
    Marker,
    Superblock,
    sector_crc,
    sector_oob,
)
from ocssd_vfu.spec.ocssd import ChunkState

PBLK_MAGIC = 0x70626C6B   # "pblk": a pblk line's smeta, u32 at byte 4 of its first sector


class Contents(enum.Enum):
    """What a flash holds, for the mode-switch rules (docs/ftl.md, phase 2)."""

    EMPTY = "nothing (every chunk free)"
    FTL = "an FTL"
    PBLK = "pblk data"
    OTHER = "Open-Channel data"


def contents(flash: Flash) -> Contents:
    if find_superblock(flash) is not None:
        return Contents.FTL
    found = Contents.EMPTY
    for chunk in range(flash.layout.chunks):
        state, wp, _ = flash.chunk_info(chunk)
        if state in (ChunkState.FREE, ChunkState.OFFLINE):
            continue
        found = Contents.OTHER
        if wp and int.from_bytes(flash.read(chunk, 0, 1)[0][4:8], "little") == PBLK_MAGIC:
            return Contents.PBLK
    return found


class NotFormatted(Exception):
    """The flash holds no FTL (or one this version cannot read); the message says why."""


class Sector(NamedTuple):
    lba: int
    seq: int
    intact: bool     # CRC good
    data: memoryview
    oob: memoryview


def read_sectors(flash: Flash, chunk: int, start: int, count: int) -> list[Sector]:
    g = flash.layout
    data, oob = flash.read(chunk, start, count)
    sectors = []
    for index in range(count):
        lba, seq, crc = SECTOR_OOB_FORMAT.unpack_from(oob, index * g.oob_size)
        view = data[index * g.sec_size:(index + 1) * g.sec_size]
        sectors.append(Sector(lba, seq, crc == sector_crc(view, lba, seq), view,
                              oob[index * g.oob_size:(index + 1) * g.oob_size]))
    return sectors


def find_superblock(flash: Flash) -> tuple[int, Any] | None:
    """(chunk, parsed superblock) of the first chunk that holds one, else None."""
    for chunk in range(flash.layout.chunks):
        state, wp, _ = flash.chunk_info(chunk)
        if state == ChunkState.OFFLINE or wp == 0:
            continue
        first = read_sectors(flash, chunk, 0, 1)[0]
        if first.intact and first.lba == Marker.SUPERBLOCK \
                and bytes(first.data[:8]) == SUPERBLOCK_MAGIC:
            return chunk, Superblock.parse(first.data)
    return None


def plan_of(layout: FlashLayout, superblock: Any) -> FtlPlan:
    """The plan the superblock describes, checked against the flash's geometry."""
    if superblock.version != FTL_VERSION:
        raise NotFormatted(f"FTL version {superblock.version}: this build reads version "
                           f"{FTL_VERSION}")
    stored = tuple(superblock[name] for name in ("num_grp", "num_pu", "num_chk", "clba",
                                                 "sec_size", "oob_size"))
    actual = (layout.num_grp, layout.num_pu, layout.num_chk, layout.clba, layout.sec_size,
              layout.oob_size)
    if stored != actual:
        raise NotFormatted(f"FTL formatted for geometry {stored}, the media has {actual}")
    plan = FtlPlan(layout, superblock.usable_chunks, superblock.op_percent)
    if (plan.logical_blocks, plan.checkpoint_chunks) != (superblock.logical_blocks,
                                                         superblock.checkpoint_chunks):
        raise NotFormatted("superblock capacity does not match its own formula")
    return plan


class Checkpoint(NamedTuple):
    seq: int
    header: Any
    body: list[Sector]


def newest_checkpoint(flash: Flash, book: ChunkBook) -> Checkpoint | None:
    """The newest checkpoint that reads back whole."""
    headers = []
    for chunk in range(flash.layout.chunks):
        if book.role[chunk] == Role.OFFLINE or book.programmed[chunk] == 0:
            continue
        first = read_sectors(flash, chunk, 0, 1)[0]
        if first.intact and first.lba == Marker.CHECKPOINT \
                and bytes(first.data[:8]) == CHECKPOINT_MAGIC:
            try:
                headers.append(CheckpointHeader.parse(first.data))
            except ConstructError:
                continue
    for header in sorted(headers, key=lambda h: h.seq, reverse=True):
        body = _read_body(flash, book, header)
        if body is not None:
            return Checkpoint(header.seq, header, body)
    return None


def _read_body(flash: Flash, book: ChunkBook, header: Any) -> list[Sector] | None:
    clba = flash.layout.clba
    length = 1 + header.map_sectors + header.record_sectors
    body: list[Sector] = []
    for index, chunk in enumerate(header.chunks):
        count = min(clba, length - index * clba)
        if count <= 0:
            break
        if chunk >= flash.layout.chunks or book.role[chunk] == Role.OFFLINE \
                or book.programmed[chunk] < count:
            return None
        body += read_sectors(flash, chunk, 0, count)
    if len(body) != length or any(not s.intact or s.lba != Marker.CHECKPOINT
                                  or s.seq != header.seq for s in body):
        return None
    return body


def open_ftl(flash: Flash, options: FtlOptions | None = None) -> Ftl:
    """The FTL of a formatted flash, recovered; NotFormatted if it holds none."""
    options = options or FtlOptions()
    g = flash.layout
    found = find_superblock(flash)
    if found is None:
        raise NotFormatted("no FTL superblock on the media")
    superblock_chunk, superblock = found
    plan = plan_of(g, superblock)
    book = ChunkBook.from_media(flash)
    ftl = Ftl(flash, plan, options, book, superblock_chunk)
    book.set_role(superblock_chunk, Role.META)
    forward = unmapped_array(plan.logical_blocks)
    events: list[tuple[int, int, int, int]] = []   # (seq, lba or -1 for a trim, phys/slba, nlb)
    retired: set[int] = set()
    newest = _load_checkpoint(ftl, newest_checkpoint(flash, book), forward, events, retired)
    base_seq = ftl.checkpoint.seq
    for chunk in range(g.chunks):
        if book.role[chunk] in (Role.OFFLINE, Role.META):
            continue
        newest = max(newest, _scan_chunk(ftl, chunk, base_seq, events))
    for seq, lba, where, nlb in sorted(events):
        if lba >= 0:
            forward[lba] = where
        else:
            forward[where:where + nlb] = unmapped_array(nlb)
        newest = max(newest, seq)
    ftl.seq = newest + 1
    ftl.mapping.load(forward)
    ftl.checkpoint.placed_since = len(events)
    _assign_roles(ftl, retired)
    _settle_staged(ftl)
    return ftl


def _load_checkpoint(ftl: Ftl, checkpoint: Checkpoint | None, forward: array[int],
                     events: list[tuple[int, int, int, int]], retired: set[int]) -> int:
    """Take the checkpoint's map, counters, retired chunks and journal; its newest seq."""
    if checkpoint is None:
        return 0
    g, header, body = ftl.layout, checkpoint.header, checkpoint.body
    state = ftl.checkpoint
    state.chunks, state.seq = list(header.chunks), checkpoint.seq
    for chunk in state.chunks:
        ftl.chunks.set_role(chunk, Role.META)
    map_bytes = b"".join(bytes(s.data) for s in body[1:1 + header.map_sectors])
    forward[:] = array("I", map_bytes[:4 * ftl.logical_blocks])
    records = b"".join(bytes(s.data) for s in body[1 + header.map_sectors:])
    for chunk in range(g.chunks):
        record = ChunkRecord.parse(records[chunk * 16:(chunk + 1) * 16])
        if record.flags & ChunkFlag.RETIRED:
            retired.add(chunk)
        ftl.chunks.newest_seq[chunk] = record.newest_seq
    ftl.counters.update({name: header.counters[name] for name in COUNTER_NAMES})
    return max(checkpoint.seq, _read_journal(ftl, len(body), events))


def _read_journal(ftl: Ftl, body_length: int, events: list[tuple[int, int, int, int]]) -> int:
    g, state = ftl.layout, ftl.checkpoint
    at = ceil_div(body_length, g.ws_min) * g.ws_min
    newest = 0
    for index, chunk in enumerate(state.chunks):
        programmed = ftl.chunks.programmed[chunk]
        start = max(0, at - index * g.clba)
        if start < programmed:
            for sector in read_sectors(ftl.flash, chunk, start, programmed - start):
                if sector.intact and sector.lba == Marker.JOURNAL and sector.seq > state.seq:
                    record = JournalSector.parse(sector.data)
                    events += [(sector.seq, -1, r.slba, r.nlb) for r in record.ranges]
                if sector.intact:
                    newest = max(newest, sector.seq)
        if programmed < g.clba:
            state.journal_at = index * g.clba + programmed
            return newest
    state.journal_at = len(state.chunks) * g.clba
    return newest


def _scan_chunk(ftl: Ftl, chunk: int, base_seq: int,
                events: list[tuple[int, int, int, int]]) -> int:
    """Add the chunk's records newer than `base_seq`; its newest seq. Programmed
    sectors are whole (their bytes land before the WP moves), so only staged ones,
    beyond the WP, need their CRC checked: the data of the others is not even read."""
    g = ftl.layout
    programmed = ftl.chunks.programmed[chunk]
    end = min(g.clba, programmed + g.ws_min)
    data, oob = ftl.flash.read(chunk, 0, end)
    newest = 0
    start = programmed
    if programmed:
        newest = SECTOR_OOB_FORMAT.unpack_from(oob, (programmed - 1) * g.oob_size)[1]
        ftl.chunks.newest_seq[chunk] = newest
        if newest > base_seq:
            start = 0
    phys, size = chunk * g.clba, g.sec_size
    for sector in range(start, end):
        lba, seq, crc = SECTOR_OOB_FORMAT.unpack_from(oob, sector * g.oob_size)
        if seq <= base_seq:
            continue
        if sector >= programmed \
                and crc != sector_crc(data[sector * size:(sector + 1) * size], lba, seq):
            continue
        newest = max(newest, seq)
        if lba < ftl.logical_blocks:
            events.append((seq, lba, phys + sector, 1))
    return newest


def _assign_roles(ftl: Ftl, retired: set[int]) -> None:
    g, book = ftl.layout, ftl.chunks
    open_by_pu: dict[int, list[int]] = {}
    for chunk in range(g.chunks):
        if book.role[chunk] != Role.DATA:
            continue
        state = ftl.flash.chunk_info(chunk).state
        if chunk in retired or (state == ChunkState.CLOSED and book.programmed[chunk] < g.clba):
            book.set_role(chunk, Role.RETIRED)
        elif state == ChunkState.OPEN:
            open_by_pu.setdefault(g.parallel_unit(chunk), []).append(chunk)
    for pu, chunks in open_by_pu.items():
        chunks.sort(key=lambda c: (-book.programmed[c], c))
        for stream, chunk in zip((ftl.host, ftl.gc), chunks, strict=False):
            book.set_role(chunk, Role.OPEN)
            stream.resume(pu, chunk)


def _settle_staged(ftl: Ftl) -> None:
    """Program, or move, the staged sectors the map points at (step 4)."""
    g, book, reverse = ftl.layout, ftl.chunks, ftl.mapping.reverse
    moves: list[tuple[int, bytes]] = []
    for chunk in range(g.chunks):
        if book.role[chunk] in (Role.OFFLINE, Role.META):
            continue
        wp = book.programmed[chunk]
        base = chunk * g.clba + wp
        live = [i for i in range(min(g.ws_min, g.clba - wp)) if reverse[base + i] != UNMAPPED]
        if not live:
            continue
        staged = read_sectors(ftl.flash, chunk, wp, live[-1] + 1)
        if book.role[chunk] in (Role.FREE, Role.OPEN, Role.DATA) \
                and ftl.flash.chunk_info(chunk).state in (ChunkState.FREE, ChunkState.OPEN) \
                and _program_in_place(ftl, chunk, staged):
            continue
        moves += [(reverse[base + i], bytes(staged[i].data)) for i in live]
    for lba, data in moves:
        ftl.gc.place(lba, data, Purpose.RELOCATE)
    ftl.gc.sync()


def _program_in_place(ftl: Ftl, chunk: int, staged: list[Sector]) -> bool:
    g, book = ftl.layout, ftl.chunks
    wp = book.programmed[chunk]
    zero = bytes(g.sec_size)
    padding = [ftl.next_seq() for _ in range(g.ws_min - len(staged))]
    data = b"".join(bytes(s.data) for s in staged) + zero * len(padding)
    oob = b"".join(bytes(s.oob) for s in staged) + b"".join(
        sector_oob(zero, Marker.PADDING, seq, g.oob_size) for seq in padding)
    ok = ftl.flash.write(chunk, data, oob)
    ftl.record(OpKind.PROGRAM if ok else OpKind.PROGRAM_FAILED, Purpose.PAD, chunk, wp,
               g.ws_min)
    if not ok:
        if book.role[chunk] == Role.OPEN:
            for stream in (ftl.host, ftl.gc):
                stream.open = {pu: c for pu, c in stream.open.items() if c != chunk}
        book.set_role(chunk, Role.RETIRED)
        return False
    ftl.count_programmed(g.ws_min)
    book.programmed[chunk] = wp + g.ws_min
    if padding:
        book.newest_seq[chunk] = padding[-1]
    if book.role[chunk] == Role.FREE:
        book.set_role(chunk, Role.DATA)
    if wp + g.ws_min == g.clba:
        for stream in (ftl.host, ftl.gc):
            stream.open = {pu: c for pu, c in stream.open.items() if c != chunk}
        book.set_role(chunk, Role.DATA)
    return True
