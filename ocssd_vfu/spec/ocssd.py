"""Open-Channel SSD 2.0 structures and qemu-nvme's `ocssd` image header.

Declared once, named as the OCSSD 2.0 specification (and qemu-nvme's
block/ocssd.c for the image header) name them; offsets in the comments.
The chunk descriptor is also read and written per command, so its `struct`
twin (CHUNK_DESCRIPTOR_FORMAT) is checked against the declaration in the tests.
"""

from __future__ import annotations

import enum
import struct

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

GEOMETRY_SIZE = 4096
CHUNK_DESCRIPTOR_SIZE = 32
MAX_VECTOR_LBAS = 64          # NLB is 0-based in CDW12[5:0]
IMAGE_MAGIC = 0x4C4E564D      # "LNVM" read as a little-endian u32: the file starts b"MVNL"
IMAGE_VERSION = 1


class ChunkState(enum.IntFlag):
    FREE = 1 << 0
    CLOSED = 1 << 1
    OPEN = 1 << 2
    OFFLINE = 1 << 3


class ChunkType(enum.IntFlag):
    SEQUENTIAL_WRITE = 1 << 0
    RANDOM_WRITE = 1 << 1
    SIZE_DEVIATES = 1 << 4


class Mccap(enum.IntFlag):
    VECTOR_COPY = 1 << 0
    MULTIPLE_RESETS = 1 << 1
    EARLY_RESET = 1 << 2      # qemu-nvme's private bit: reset of an OPEN chunk


LbaFormat20 = Struct(
    "grp_len" / Int8ul,
    "pu_len" / Int8ul,
    "chk_len" / Int8ul,
    "lbk_len" / Int8ul,
)

# Admin opcode E2h "Geometry" (OCSSD 2.0 §2.1), exactly 4096 bytes.
Geometry = Struct(
    "mjr" / Int8ul,               # 0
    "mnr" / Int8ul,               # 1
    Padding(6),
    "lbaf" / LbaFormat20,         # 8
    Padding(4),
    "mccap" / Int32ul,            # 16
    Padding(12),
    "wit" / Int8ul,               # 32
    Padding(31),
    "num_grp" / Int16ul,          # 64
    "num_pu" / Int16ul,           # 66
    "num_chk" / Int32ul,          # 68
    "clba" / Int32ul,             # 72
    Padding(52),
    "ws_min" / Int32ul,           # 128
    "ws_opt" / Int32ul,           # 132
    "mw_cunits" / Int32ul,        # 136
    "maxoc" / Int32ul,            # 140
    "maxocpu" / Int32ul,          # 144
    Padding(44),
    "trdt" / Int32ul,             # 192
    "trdm" / Int32ul,             # 196
    "twrt" / Int32ul,             # 200
    "twrm" / Int32ul,             # 204
    "tcrst" / Int32ul,            # 208
    "tcrsm" / Int32ul,            # 212
    Padding(40),
    Padding(2816),                # 256
    "vs" / Bytes(1024),           # 3072
)

# Log page CAh "Chunk Information", one per chunk (grp, then pu, then chk order).
ChunkDescriptor = Struct(
    "cs" / Int8ul,                # 0: ChunkState, one bit set
    "ct" / Int8ul,                # 1: ChunkType
    "wli" / Int8ul,               # 2: wear-level index
    Padding(5),
    "slba" / Int64ul,             # 8
    "cnlb" / Int64ul,             # 16
    "wp" / Int64ul,               # 24: LBAs written in the chunk (Linux and qemu-nvme)
)
CHUNK_DESCRIPTOR_FORMAT = struct.Struct("<BBB5xQQQ")
# How the image's chunk log keeps a descriptor: the reserved bytes 4-7 hold the chunk's
# erase count (ocssd_vfu's own, never shown to the host; 0 = not kept, the WLI byte is
# then a raw reset count, as qemu-nvme writes it). See ocssd/chunks.py.
CHUNK_RECORD_FORMAT = struct.Struct("<BBBxIQQQ")

# qemu-nvme block/ocssd.c header (natural alignment, 40 bytes) at file offset 0.
ImageHeader = Struct(
    "magic" / Const(IMAGE_MAGIC, Int32ul),   # 0
    "version" / Int32ul,                     # 4
    "num_namespaces" / Int32ul,              # 8
    Padding(4),
    "sector_size" / Int64ul,                 # 16
    "md_size" / Int32ul,                     # 24
    Padding(4),
    "ns_size" / Int64ul,                     # 32
)
IMAGE_HEADER_SIZE = 40

# Log page D0h "Chunk Notification" (OCSSD 2.0 §2.8, research-features §5.2): a ring of
# 64-byte entries the device posts when it changes a chunk on its own.
CHUNK_NOTIFICATION_LID = 0xD0
CHUNK_NOTIFICATION_SIZE = 64


class NotificationState(enum.IntFlag):
    ERROR_RATE_LOW = 1 << 0
    ERROR_RATE_MEDIUM = 1 << 1
    ERROR_RATE_HIGH = 1 << 2
    ERROR_RATE_UNRECOVERABLE = 1 << 3
    REFRESHED = 1 << 4
    WEAR_LEVEL_OUTSIDE_WIT = 1 << 8


class NotificationMask(enum.IntFlag):
    LOGICAL_BLOCKS = 1 << 0   # LBA and NLB name a range within one chunk
    CHUNK = 1 << 1            # LBA names a chunk
    PARALLEL_UNIT = 1 << 2    # LBA names a PU: all its chunks


ChunkNotification = Struct(
    "nc" / Int64ul,               # 0: notification count, from 1, one per unique event
    "lba" / Int64ul,              # 8
    "nsid" / Int32ul,             # 16
    "state" / Int16ul,            # 20: NotificationState
    "mask" / Int8ul,              # 22: NotificationMask
    Padding(9),
    "nlb" / Int16ul,              # 32: 0-based, with mask LOGICAL_BLOCKS only
    Padding(30),
)
IMAGE_MAGIC_BYTES = Int32ul.build(IMAGE_MAGIC)   # how an image file starts: b"MVNL"
