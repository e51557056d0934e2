"""Open-Channel SSD 1.2 structures (ocssd-spec §3): Device Identification (admin E2h,
version 1), its PPA format, the bad-block table (admin F2h) and the per-block
record of the 1.2 image.

Declared once, named as the 1.2 specification and Linux's nvme_nvm_id12 name them;
absolute offsets in the comments. Per-command fields (the control word's plane
mode, the image's block records) also have `struct` twins checked in the tests.
"""

from __future__ import annotations

import enum
import struct

from construct import Const, Int8ul, Int16ul, Int32ul, Padding, Struct

IDENTITY_SIZE = 4096
BBT_MAGIC = b"BBLT"
BBT_VERSION = 1


class BlockValue(enum.IntEnum):
    """A bad-block table entry, one per block and plane."""

    GOOD = 0
    FACTORY = 1      # factory bad
    GROWN = 2        # grown bad
    DEVICE = 4       # reserved by the device
    HOST = 8         # reserved by the host




class PlaneMode(enum.IntEnum):
    """Control word (CDW12[17:16]) bits 1:0: how many planes one command drives."""

    SINGLE = 0
    DUAL = 1
    QUAD = 2


PLANES_OF_MODE = {PlaneMode.SINGLE: 1, PlaneMode.DUAL: 2, PlaneMode.QUAD: 4}
# MPOS: bit 0/1/2 read single/dual/quad, bit 8/9/10 program, bit 16/17/18 erase.
MPOS_OF_PLANES = {1: 0x010101, 2: 0x020202, 4: 0x040404}
MPOS_READ_SHIFT, MPOS_PROGRAM_SHIFT, MPOS_ERASE_SHIFT = 0, 8, 16
CAP_BAD_BLOCK_TABLE = 1 << 0
# The control word's other bits (0x80 suspend, 0x100 SLC mode, 0x200 scramble) are hints.
CONTROL_PLANE_MASK = 0x3

PpaFormat = Struct(
    "ch_offset" / Int8ul, "ch_len" / Int8ul,          # 12
    "lun_offset" / Int8ul, "lun_len" / Int8ul,        # 14
    "pln_offset" / Int8ul, "pln_len" / Int8ul,        # 16
    "blk_offset" / Int8ul, "blk_len" / Int8ul,        # 18
    "pg_offset" / Int8ul, "pg_len" / Int8ul,          # 20
    "sec_offset" / Int8ul, "sec_len" / Int8ul,        # 22
    Padding(4),                                       # 24
)

# Admin opcode E2h "Device Identification", version 1, exactly 4096 bytes, one group.
Identity = Struct(
    "ver_id" / Int8ul,            # 0: 1
    "vmnt" / Int8ul,              # 1
    "cgrps" / Int8ul,             # 2: configuration groups, 1 (Linux requires it)
    Padding(1),
    "cap" / Int32ul,              # 4
    "dom" / Int32ul,              # 8: bit 0 hybrid (device L2P), 0 for pblk
    "ppaf" / PpaFormat,           # 12
    Padding(228),                 # 28
    "mtype" / Int8ul,             # 256: 0 NAND
    "fmtype" / Int8ul,            # 257: 0 SLC, 1 MLC, 2 TLC
    Padding(2),
    "num_ch" / Int8ul,            # 260
    "num_lun" / Int8ul,           # 261
    "num_pln" / Int8ul,           # 262
    Padding(1),
    "num_blk" / Int16ul,          # 264
    "num_pg" / Int16ul,           # 266
    "fpg_sz" / Int16ul,           # 268: bytes per flash page
    "csecs" / Int16ul,            # 270
    "sos" / Int16ul,              # 272
    Padding(2),
    "trdt" / Int32ul,             # 276
    "trdm" / Int32ul,             # 280
    "tprt" / Int32ul,             # 284
    "tprm" / Int32ul,             # 288
    "tbet" / Int32ul,             # 292
    "tbem" / Int32ul,             # 296
    "mpos" / Int32ul,             # 300
    "mccap" / Int32ul,            # 304
    "cpar" / Int16ul,             # 308
    Padding(906),                 # 310: reserved, lower-page table (Linux ignores it)
    Padding(2880),                # 1216
)

# Admin opcode F2h "Get Bad Block Table": this header, then one byte per block and plane.
BadBlockTableHeader = Struct(
    "tblid" / Const(BBT_MAGIC),   # 0
    "verid" / Int16ul,            # 4: 1
    "revid" / Int16ul,            # 6
    Padding(4),                   # 8
    "tblks" / Int32ul,            # 12: blocks x planes
    "tfact" / Int32ul,            # 16: factory bad
    "tgrown" / Int32ul,           # 20: grown bad
    "tdresv" / Int32ul,           # 24: device reserved
    "thresv" / Int32ul,           # 28: host reserved
    Padding(32),                  # 32
)

# The 1.2 image's record of one block of one plane (docs/image-format.md).
BlockRecord = Struct(
    "pages" / Int16ul,            # 0: pages programmed, in order, since the last erase
    "erases" / Int16ul,           # 2: erase count (wear)
)
BLOCK_RECORD_FORMAT = struct.Struct("<HH")
BLOCK_RECORD_SIZE = 4
