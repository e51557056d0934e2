"""What the FTL did on the media, for --trace and for tests: one MediaOp per flash
operation, tagged with why it happened."""

from __future__ import annotations

import enum
from typing import NamedTuple


class OpKind(enum.Enum):
    PROGRAM = "program"
    PROGRAM_FAILED = "program-failed"
    STAGE = "stage"          # into the power-loss-protected write buffer
    READ = "read"
    RESET = "reset"
    RESET_FAILED = "reset-failed"


class Purpose(enum.Enum):
    HOST = "host"            # the host's data
    GC = "gc"                # valid data moved out of a GC victim
    RELOCATE = "relocate"    # data moved off a chunk whose program failed
    PAD = "pad"              # a partial write unit completed at Flush / shutdown
    CHECKPOINT = "checkpoint"
    JOURNAL = "journal"      # trim records
    SUPERBLOCK = "superblock"


class MediaOp(NamedTuple):
    kind: OpKind
    purpose: Purpose
    chunk: int
    grp: int
    pu: int
    chk: int
    sector: int
    sectors: int

    def __str__(self) -> str:
        return (f"{self.kind.value} {self.purpose.value} grp {self.grp} pu {self.pu} "
                f"chk {self.chk} sectors {self.sector}+{self.sectors}")
