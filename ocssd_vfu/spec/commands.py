"""Command dword layouts (NVMe 1.4 §5, §6; OCSSD 2.0 §2.4, 1.2 §3.3), declared once.

Each layout lists its bitfields from bit 0 up, as (name, width); names starting
with "_" are reserved. `DwordLayout.parse` (construct) serves the cold path; the
hot path's decoders below (`lba_range`, `vector_count`) use shifts, and
tests/unit/test_spec_commands.py checks every one of them against its layout.
"""

from __future__ import annotations

from construct import BitsInteger, BitStruct, ByteSwapped, Container


class DwordLayout:
    """The bitfields of one 32-bit command dword, low bits first."""

    def __init__(self, *fields: tuple[str, int]) -> None:
        assert sum(width for _, width in fields) == 32, fields
        self.fields = fields
        self.struct = ByteSwapped(BitStruct(*(name / BitsInteger(width)
                                             for name, width in reversed(fields))))
        self.shifts: dict[str, tuple[int, int]] = {}
        at = 0
        for name, width in fields:
            self.shifts[name] = (at, (1 << width) - 1)
            at += width

    def parse(self, value: int) -> Container:
        return self.struct.parse(value.to_bytes(4, "little"))

    def build(self, **values: int) -> int:
        every = {name: values.pop(name, 0) for name, _ in self.fields}
        assert not values, f"no such fields: {values}"
        return int.from_bytes(self.struct.build(every), "little")

    def get(self, value: int, name: str) -> int:
        shift, mask = self.shifts[name]
        return (value >> shift) & mask


def _reserved(width: int, at: int) -> tuple[str, int]:
    return (f"_reserved{at}", width)


# -- NVM command set (NVMe 1.4 §6) --------------------------------------------------------
# Read, Write, Compare, Write Uncorrectable: CDW10-11 SLBA, CDW12 as below (NLB 0-based).
ReadWriteCdw12 = DwordLayout(("nlb", 16), _reserved(4, 16), ("dtype", 4), ("stc", 1),
                             _reserved(1, 25), ("prinfo", 4), ("fua", 1), ("lr", 1))
WriteZeroesCdw12 = DwordLayout(("nlb", 16), _reserved(9, 16), ("deac", 1), ("prinfo", 4),
                               ("fua", 1), ("lr", 1))
DatasetManagementCdw10 = DwordLayout(("nr", 8), _reserved(24, 8))     # ranges, 0-based
DatasetManagementCdw11 = DwordLayout(("idr", 1), ("idw", 1), ("ad", 1), _reserved(29, 3))

WRITE_ZEROES_DEAC = 1 << WriteZeroesCdw12.shifts["deac"][0]
DSM_DEALLOCATE = 1 << DatasetManagementCdw11.shifts["ad"][0]


def lba_range(cdw10: int, cdw11: int, cdw12: int) -> tuple[int, int]:
    """SLBA (CDW10-11) and the number of blocks (NLB + 1) of a block command: hot path."""
    return cdw10 | cdw11 << 32, (cdw12 & 0xFFFF) + 1


def block_count(cdw12: int) -> int:
    """NLB + 1: blocks of a block command, LBAs of a vector command (SMART counters)."""
    return (cdw12 & 0xFFFF) + 1


def dsm_ranges(cdw10: int) -> int:
    return (cdw10 & 0xFF) + 1


# -- OCSSD vector commands (2.0 §2.4; 1.2 §3.3: physical page erase, write, read) --------
# CDW10-11: the LBA/PPA itself when NLB is 0, else the address of the NLB + 1 u64 list.
VectorCdw12 = DwordLayout(("nlb", 16), ("control", 16))   # 1.2: control bits 1:0 plane mode
OCSSD12_CONTROL_SHIFT = VectorCdw12.shifts["control"][0]


def vector_count(cdw12: int) -> int:
    """Addresses of a vector command (NLB + 1): hot path."""
    return (cdw12 & 0xFFFF) + 1


def ocssd12_control(cdw12: int) -> int:
    return cdw12 >> 16


# OCSSD 1.2 Set Bad Block Table (F1h): CDW10-11 a PPA or the list, CDW12 as below.
SetBadBlocksCdw12 = DwordLayout(("nlb", 16), ("value", 8), _reserved(8, 24))

# -- Admin commands (NVMe 1.4 §5) ---------------------------------------------------------
FormatNvmCdw10 = DwordLayout(("lbaf", 4), ("mset", 1), ("pi", 3), ("pil", 1), ("ses", 3),
                             _reserved(20, 12))

