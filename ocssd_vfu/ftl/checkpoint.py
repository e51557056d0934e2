"""Writing the FTL's metadata: the superblock, checkpoints and the trim journal.

- Superblock: sector 0 of the first usable chunk (chunk-log order) at format, never
  rewritten: it says the image holds an FTL (magic, version, op_percent, capacity,
  geometry, how many chunks a checkpoint takes).
- Checkpoint (sequence number C): a header sector, the map, a record per chunk,
  written in whole units (the last padded) to the least-worn free chunks; only when
  it is complete are the previous checkpoint's chunks erased, so a torn checkpoint
  leaves the previous one readable. Every body sector's OOB says CHECKPOINT and C.
- Trim journal: deallocated ranges, after the body in the same chunks, one unit per
  record (OOB: JOURNAL, the record's own sequence number). A full journal, or a
  failed journal program, is answered by a new checkpoint instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from ocssd_vfu.ftl.capacity import ceil_div
from ocssd_vfu.ftl.chunks import Role
from ocssd_vfu.ftl.services import FtlServices
from ocssd_vfu.ftl.stream import NoSpace
from ocssd_vfu.ftl.trace import OpKind, Purpose
from ocssd_vfu.spec.ftl import (
    CHUNK_RECORD_SIZE,
    FTL_VERSION,
    JOURNAL_HEADER_SIZE,
    TRIM_RANGE_SIZE,
    CheckpointHeader,
    ChunkFlag,
    ChunkRecord,
    JournalSector,
    Marker,
    Superblock,
    sector_oob,
)
from ocssd_vfu.spec.ocssd import ChunkState

ROLE_STATE = {Role.FREE: ChunkState.FREE, Role.OPEN: ChunkState.OPEN,
              Role.DATA: ChunkState.CLOSED, Role.META: ChunkState.OPEN,
              Role.RETIRED: ChunkState.CLOSED, Role.OFFLINE: ChunkState.OFFLINE}


def write_superblock(ftl: FtlServices) -> int:
    """Write the superblock to the first free chunk that takes it; its index."""
    g = ftl.layout
    data = Superblock.build(dict(
        version=FTL_VERSION, op_percent=ftl.plan.op_percent,
        logical_blocks=ftl.logical_blocks, num_grp=g.num_grp, num_pu=g.num_pu,
        num_chk=g.num_chk, clba=g.clba, sec_size=g.sec_size, oob_size=g.oob_size,
        checkpoint_chunks=ftl.plan.checkpoint_chunks,
        usable_chunks=ftl.plan.usable_chunks)).ljust(g.sec_size, b"\0")
    for chunk in range(g.chunks):
        if ftl.chunks.role[chunk] != Role.FREE:
            continue
        ftl.chunks.set_role(chunk, Role.META)
        if _program(ftl, chunk, 0, [(Marker.SUPERBLOCK, ftl.next_seq(), data)],
                    Purpose.SUPERBLOCK):
            return chunk
        ftl.retire(chunk)
    raise NoSpace("no chunk takes the superblock")


def write_checkpoint(ftl: FtlServices) -> None:
    """A checkpoint of everything placed so far; then the previous one is erased."""
    state = ftl.checkpoint
    ftl.collect_until(ftl.plan.checkpoint_chunks)   # GC streams may have used the reserve
    seq = ftl.next_seq()
    while True:
        taken = _take_chunks(ftl)
        body = _body(ftl, seq, taken)
        if _program_sectors(ftl, taken, 0, [(Marker.CHECKPOINT, seq, s) for s in body],
                            Purpose.CHECKPOINT):
            break
    old, state.chunks, state.seq = state.chunks, taken, seq
    state.journal_at = ceil_div(len(body), ftl.layout.ws_min) * ftl.layout.ws_min
    state.placed_since = 0
    for chunk in old:
        if ftl.chunks.role[chunk] == Role.META:
            ftl.erase(chunk)


def record_trims(ftl: FtlServices, ranges: Sequence[tuple[int, int]]) -> None:
    """Make deallocated `ranges` durable: a journal record, or a checkpoint."""
    g, state = ftl.layout, ftl.checkpoint
    per_sector = (g.sec_size - JOURNAL_HEADER_SIZE) // TRIM_RANGE_SIZE
    sectors = [JournalSector.build(dict(
        count=len(group), ranges=[dict(slba=s, nlb=n) for s, n in group])).ljust(g.sec_size,
                                                                                 b"\0")
        for group in (ranges[i:i + per_sector] for i in range(0, len(ranges), per_sector))]
    needed = ceil_div(len(sectors), g.ws_min) * g.ws_min
    if state.journal_at + needed > len(state.chunks) * g.clba:
        write_checkpoint(ftl)
        return
    seq = ftl.next_seq()
    if _program_sectors(ftl, state.chunks, state.journal_at,
                        [(Marker.JOURNAL, seq, s) for s in sectors], Purpose.JOURNAL):
        state.journal_at += needed
    else:
        write_checkpoint(ftl)


# -- internals ---------------------------------------------------------------------------------
def _take_chunks(ftl: FtlServices) -> list[int]:
    taken = []
    for _ in range(ftl.plan.checkpoint_chunks):
        chunk = ftl.chunks.take_least_worn(Role.META)
        if chunk is None:
            raise NoSpace("no free chunk for a checkpoint")
        taken.append(chunk)
    return taken


def _body(ftl: FtlServices, seq: int, taken: list[int]) -> list[bytes]:
    g = ftl.layout
    map_bytes = ftl.mapping.forward.tobytes()
    records = b"".join(_chunk_record(ftl, chunk) for chunk in range(g.chunks))
    header = CheckpointHeader.build(dict(
        version=FTL_VERSION, seq=seq, logical_blocks=ftl.logical_blocks,
        map_sectors=ceil_div(len(map_bytes), g.sec_size),
        record_sectors=ceil_div(len(records), g.sec_size),
        counters=ftl.counters, num_chunks=len(taken), chunks=taken))
    return [header.ljust(g.sec_size, b"\0"), *_split(map_bytes, g.sec_size),
            *_split(records, g.sec_size)]


def _chunk_record(ftl: FtlServices, chunk: int) -> bytes:
    book = ftl.chunks
    record = ChunkRecord.build(dict(
        state=ROLE_STATE[book.role[chunk]],
        flags=ChunkFlag.RETIRED if book.role[chunk] == Role.RETIRED else 0,
        wear=min(book.wear[chunk], 0xFFFF), valid=ftl.mapping.valid[chunk],
        newest_seq=book.newest_seq[chunk]))
    assert len(record) == CHUNK_RECORD_SIZE
    return record


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[at:at + size].ljust(size, b"\0") for at in range(0, len(data), size)]


def _program_sectors(ftl: FtlServices, chunks: list[int], start: int,
                     sectors: list[tuple[int, int, bytes]], purpose: Purpose) -> bool:
    """Program `sectors` (marker, seq, data) from sector `start` over `chunks` taken as
    one run, a unit at a time. A failed program retires its chunk: False."""
    g = ftl.layout
    for offset in range(0, len(sectors), g.ws_min):
        at = start + offset
        chunk = chunks[at // g.clba]
        if not _program(ftl, chunk, at % g.clba, sectors[offset:offset + g.ws_min], purpose):
            ftl.retire(chunk)
            for other in chunks:
                if ftl.chunks.role[other] == Role.META and other not in ftl.checkpoint.chunks:
                    ftl.chunks.close(other)   # partly written: GC erases it
            return False
    return True


def _program(ftl: FtlServices, chunk: int, sector: int, sectors: list[tuple[int, int, bytes]],
             purpose: Purpose) -> bool:
    """Program one unit: `sectors`, completed with padding."""
    g = ftl.layout
    sectors = list(sectors)
    zero = bytes(g.sec_size)
    while len(sectors) < g.ws_min:
        sectors.append((Marker.PADDING, ftl.next_seq(), zero))
    ok = ftl.flash.write(chunk, b"".join(data for _, _, data in sectors),
                         b"".join(sector_oob(data, marker, seq, g.oob_size)
                                  for marker, seq, data in sectors))
    ftl.record(OpKind.PROGRAM if ok else OpKind.PROGRAM_FAILED, purpose, chunk, sector,
               g.ws_min)
    if ok:
        ftl.chunks.programmed[chunk] = sector + g.ws_min
        ftl.count_programmed(g.ws_min, meta=True)
    return ok
