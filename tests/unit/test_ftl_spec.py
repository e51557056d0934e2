"""The FTL's on-media formats and its log page: sizes, the struct twin of the OOB
record, annotated bytes."""

from __future__ import annotations

import zlib

from ocssd_vfu.ftl import stats
from ocssd_vfu.spec.ftl import (
    FTL_LOG_PAGE_SIZE,
    SECTOR_OOB_FORMAT,
    ChunkRecord,
    FtlLogPage,
    JournalSector,
    SectorOob,
    Superblock,
    sector_oob,
)
from tests.unit.test_ftl import blocks, fresh


def test_fixed_sizes() -> None:
    assert SectorOob.sizeof() == SECTOR_OOB_FORMAT.size == 16
    assert ChunkRecord.sizeof() == 16
    assert Superblock.sizeof() == 52
    assert FtlLogPage.sizeof() == FTL_LOG_PAGE_SIZE == 512


def test_sector_oob_bytes() -> None:
    data = b"\x5a" * 512
    crc = zlib.crc32(bytes.fromhex("07000000" "0900000000000000"), zlib.crc32(data))
    expected = (bytes.fromhex("07000000")              # lba 7
                + bytes.fromhex("0900000000000000")    # seq 9
                + crc.to_bytes(4, "little")            # CRC-32 of data, lba, seq
                + bytes(8))                            # the rest of a 24-byte OOB
    assert sector_oob(data, 7, 9, 24) == expected
    assert SectorOob.parse(expected[:16]) == dict(lba=7, seq=9, crc=crc)
    assert SECTOR_OOB_FORMAT.unpack(expected[:16]) == (7, 9, crc)


def test_journal_sector_bytes() -> None:
    raw = (b"OCFTL-TJ" + bytes.fromhex("0200" "000000000000")
           + bytes.fromhex("05000000" "03000000")      # slba 5, nlb 3
           + bytes.fromhex("00010000" "01000000"))     # slba 256, nlb 1
    parsed = JournalSector.parse(raw)
    assert [(r.slba, r.nlb) for r in parsed.ranges] == [(5, 3), (256, 1)]
    assert JournalSector.build(parsed) == raw


def test_log_page_of_a_written_ftl() -> None:
    _, ftl = fresh()
    ftl.write(0, blocks(0, 16))
    page = FtlLogPage.parse(stats.log_page(ftl))
    assert (page.version, page.op_percent, page.gc_policy, page.logical_blocks,
            page.mapped_blocks) == (1, 20, 0, 1561, 16)
    assert (page.counters.host_sectors, page.counters.media_sectors, page.waf_milli) == \
        (16, 24, 1500)
    # 64 chunks: superblock, checkpoint, 4 open, 58 free
    assert (page.free_chunks, page.data_chunks, page.retired_chunks) == (58, 4, 0)
    assert list(page.valid_histogram) == [0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]
