"""The device-side FTL's on-media formats and its vendor log page (docs/ftl.md).

Every sector the FTL programs carries a 16-byte record at the start of its OOB:
the logical block it holds (or a marker for FTL metadata and padding), a sequence
number that only grows, and a CRC-32 over the sector's data and those two fields,
so a torn sector is told from a written one. The rest of a larger OOB is zero.
The per-sector path uses SECTOR_OOB_FORMAT, the `struct` twin of SectorOob
(tests/unit/test_ftl_spec.py checks one against the other).

Metadata sectors (superblock, checkpoint, trim journal) start with an 8-byte
magic; every multi-byte field is little-endian.
"""

from __future__ import annotations

import enum
import struct
import zlib

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

FTL_VERSION = 1
SUPERBLOCK_MAGIC = b"OCFTL-SB"
CHECKPOINT_MAGIC = b"OCFTL-CP"
JOURNAL_MAGIC = b"OCFTL-TJ"

SECTOR_OOB_SIZE = 16
UNMAPPED = 0xFFFFFFFF          # a map entry (logical -> physical sector) with no data
MAX_LOGICAL_BLOCKS = 0xFFFFFFF0  # the values above are the markers below
FTL_LOG_PAGE_ID = 0xC0         # vendor specific (C0h-FFh); D0h is OCSSD 2.0's Chunk Notification


class Marker(enum.IntEnum):
    """OOB `lba` values that are not logical blocks."""

    SUPERBLOCK = 0xFFFFFFFC
    JOURNAL = 0xFFFFFFFD
    CHECKPOINT = 0xFFFFFFFE
    PADDING = 0xFFFFFFFF


SectorOob = Struct(
    "lba" / Int32ul,              # 0: logical block, or a Marker
    "seq" / Int64ul,              # 4: sequence number of the placement
    "crc" / Int32ul,              # 12: CRC-32 of data || lba || seq
)
SECTOR_OOB_FORMAT = struct.Struct("<IQI")
_OOB_FIELDS = struct.Struct("<IQ")


def sector_crc(data: bytes | memoryview, lba: int, seq: int) -> int:
    return zlib.crc32(_OOB_FIELDS.pack(lba, seq), zlib.crc32(data))


def sector_oob(data: bytes | memoryview, lba: int, seq: int, oob_size: int) -> bytes:
    """The OOB bytes of a sector holding `data` for `lba` at `seq`."""
    record = SECTOR_OOB_FORMAT.pack(lba, seq, sector_crc(data, lba, seq))
    return record + bytes(oob_size - SECTOR_OOB_SIZE)


# Sector 0 of the superblock chunk: what the image is, written once at format.
Superblock = Struct(
    "magic" / Const(SUPERBLOCK_MAGIC),   # 0
    "version" / Int16ul,                 # 8
    "op_percent" / Int8ul,               # 10
    Padding(5),
    "logical_blocks" / Int64ul,          # 16
    "num_grp" / Int16ul,                 # 24
    "num_pu" / Int16ul,                  # 26
    "num_chk" / Int32ul,                 # 28
    "clba" / Int32ul,                    # 32
    "sec_size" / Int32ul,                # 36
    "oob_size" / Int32ul,                # 40
    "checkpoint_chunks" / Int32ul,       # 44: chunks one checkpoint (and its journal) takes
    "usable_chunks" / Int32ul,           # 48: chunks not OFFLINE at format
)

# Counters kept across restarts (as of the checkpoint: later ones are lost in a crash).
Counters = Struct(
    "host_sectors" / Int64ul,
    "media_sectors" / Int64ul,
    "gc_sectors" / Int64ul,
    "pad_sectors" / Int64ul,
    "meta_sectors" / Int64ul,
    "gc_runs" / Int64ul,
    "chunks_erased" / Int64ul,
)

# Sector 0 of a checkpoint's first chunk. The body follows: the map (one u32 physical
# sector per logical block, UNMAPPED for none), then one ChunkRecord per chunk; every
# body sector's OOB has lba = CHECKPOINT and this seq. The trim journal follows the body.
CheckpointHeader = Struct(
    "magic" / Const(CHECKPOINT_MAGIC),   # 0
    "version" / Int16ul,                 # 8
    Padding(6),
    "seq" / Int64ul,                     # 16
    "logical_blocks" / Int64ul,          # 24
    "map_sectors" / Int32ul,             # 32
    "record_sectors" / Int32ul,          # 36
    "counters" / Counters,               # 40 (56 bytes)
    "num_chunks" / Int16ul,              # 96
    Padding(6),
    "chunks" / Array(lambda this: this.num_chunks, Int32ul),   # 104: in writing order
)


class ChunkFlag(enum.IntFlag):
    RETIRED = 1 << 0      # a program failed: never written or erased again


ChunkRecord = Struct(
    "state" / Int8ul,                    # 0: ChunkState as the media reported it
    "flags" / Int8ul,                    # 1: ChunkFlag
    "wear" / Int16ul,                    # 2
    "valid" / Int32ul,                   # 4: valid sectors
    "newest_seq" / Int64ul,              # 8: sequence number of its last sector
)
CHUNK_RECORD_SIZE = 16

TrimRange = Struct(
    "slba" / Int32ul,
    "nlb" / Int32ul,
)
TRIM_RANGE_SIZE = 8

# A trim journal sector (OOB lba = JOURNAL): deallocated ranges, applied in seq order.
JournalSector = Struct(
    "magic" / Const(JOURNAL_MAGIC),      # 0
    "count" / Int16ul,                   # 8
    Padding(6),
    "ranges" / Array(lambda this: this.count, TrimRange),   # 16
)
JOURNAL_HEADER_SIZE = 16


class GcPolicyCode(enum.IntEnum):
    GREEDY = 0
    COST_BENEFIT = 1


VALID_HISTOGRAM_BUCKETS = 11   # data chunks by valid sectors: 0 %, then (0,10] % ... (90,100] %

# Get Log Page C0h "FTL statistics", 512 bytes.
FtlLogPage = Struct(
    "version" / Int16ul,                 # 0
    "op_percent" / Int8ul,               # 2
    "gc_policy" / Int8ul,                # 3: GcPolicyCode
    "gc_threshold" / Int32ul,            # 4: free chunks below which background GC runs
    "logical_blocks" / Int64ul,          # 8
    "mapped_blocks" / Int64ul,           # 16
    "counters" / Counters,               # 24 (56 bytes)
    "waf_milli" / Int32ul,               # 80: media / host sectors x 1000 (0 before a write)
    "free_chunks" / Int32ul,             # 84
    "data_chunks" / Int32ul,             # 88
    "retired_chunks" / Int32ul,          # 92
    "offline_chunks" / Int32ul,          # 96
    "wear_min" / Int32ul,                # 100
    "wear_max" / Int32ul,                # 104
    "wear_avg_milli" / Int32ul,          # 108
    "valid_histogram" / Array(VALID_HISTOGRAM_BUCKETS, Int32ul),   # 112 (44 bytes)
    "reserved" / Bytes(356),             # 156
)
FTL_LOG_PAGE_SIZE = 512
