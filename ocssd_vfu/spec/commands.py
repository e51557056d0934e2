"""Command dword layouts (NVMe 1.4 §5, §6; OCSSD 2.0 §2.4, 1.2 §3.3), declared once.

Each layout lists its bitfields from bit 0 up (spec/bitfields.py). Cold-path
handlers read fields through the layout (`get`, `parse`); the hot path's
decoders below (`lba_range`, `block_count`, `vector_count`) use shifts, and
tests/unit/test_spec_commands.py checks each of them against its layout.
"""

from __future__ import annotations

from ocssd_vfu.spec.bitfields import Bitfields, reserved

# -- NVM command set (NVMe 1.4 §6) --------------------------------------------------------
# Read, Write, Compare, Write Uncorrectable: CDW10-11 SLBA, CDW12 as below (NLB 0-based).
ReadWriteCdw12 = Bitfields(("nlb", 16), reserved(4, 16), ("dtype", 4), ("stc", 1),
                             reserved(1, 25), ("prinfo", 4), ("fua", 1), ("lr", 1))
WriteZeroesCdw12 = Bitfields(("nlb", 16), reserved(9, 16), ("deac", 1), ("prinfo", 4),
                               ("fua", 1), ("lr", 1))
DatasetManagementCdw10 = Bitfields(("nr", 8), reserved(24, 8))     # ranges, 0-based
DatasetManagementCdw11 = Bitfields(("idr", 1), ("idw", 1), ("ad", 1), reserved(29, 3))

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
VectorCdw12 = Bitfields(("nlb", 16), ("control", 16))   # 1.2: control bits 1:0 plane mode
OCSSD12_CONTROL_SHIFT = VectorCdw12.shifts["control"][0]


def vector_count(cdw12: int) -> int:
    """Addresses of a vector command (NLB + 1): hot path."""
    return (cdw12 & 0xFFFF) + 1


def ocssd12_control(cdw12: int) -> int:
    return cdw12 >> 16


# OCSSD 1.2 Set Bad Block Table (F1h): CDW10-11 a PPA or the list, CDW12 as below.
SetBadBlocksCdw12 = Bitfields(("nlb", 16), ("value", 8), reserved(8, 24))

# -- Admin commands (NVMe 1.4 §5) ---------------------------------------------------------
FormatNvmCdw10 = Bitfields(("lbaf", 4), ("mset", 1), ("pi", 3), ("pil", 1), ("ses", 3),
                             reserved(20, 12))
IdentifyCdw10 = Bitfields(("cns", 8), reserved(8, 8), ("cntid", 16))
GetLogPageCdw10 = Bitfields(("lid", 8), ("lsp", 4), reserved(3, 12), ("rae", 1), ("numdl", 16))
GetLogPageCdw11 = Bitfields(("numdu", 16), ("lsi", 16))
# Create I/O CQ / SQ, Delete I/O CQ / SQ
QueueCdw10 = Bitfields(("qid", 16), ("qsize", 16))             # QSIZE 0-based
CreateIoCqCdw11 = Bitfields(("pc", 1), ("ien", 1), reserved(14, 2), ("iv", 16))
CreateIoSqCdw11 = Bitfields(("pc", 1), ("qprio", 2), reserved(13, 3), ("cqid", 16))
FeaturesCdw10 = Bitfields(("fid", 8), ("sel", 3), reserved(20, 11), ("sv", 1))

# Feature values (Get/Set Features CDW11, Get Features' result)
ArbitrationValue = Bitfields(("ab", 3), reserved(5, 3), ("lpw", 8), ("mpw", 8), ("hpw", 8))
PowerManagementValue = Bitfields(("ps", 5), ("wh", 3), reserved(24, 8))
TemperatureThresholdValue = Bitfields(("tmpth", 16), ("tmpsel", 4), ("thsel", 2),
                                      reserved(10, 22))
ErrorRecoveryValue = Bitfields(("tler", 16), ("dulbe", 1), reserved(15, 17))
VolatileWriteCacheValue = Bitfields(("wce", 1), reserved(31, 1))
NumberOfQueuesValue = Bitfields(("nsqr", 16), ("ncqr", 16))   # 0-based; FFFFh is invalid
InterruptCoalescingValue = Bitfields(("thr", 8), ("time", 8), reserved(16, 16))
InterruptVectorConfigurationValue = Bitfields(("iv", 16), ("cd", 1), reserved(15, 17))
AsyncEventConfigurationValue = Bitfields(("smart", 8), ("nan", 1), ("fa", 1), reserved(22, 10))

