"""What the write streams and the checkpoint writer need of the FTL.

`Ftl` (ocssd_vfu.ftl.core) owns the streams and writes checkpoints, so those modules
must not import it: they see the FTL through `FtlServices`, which `Ftl` satisfies.
The checkpoint state lives here too, since both sides hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ocssd_vfu.ftl.capacity import FtlPlan
from ocssd_vfu.ftl.chunks import ChunkBook
from ocssd_vfu.ftl.flash import Flash, FlashLayout
from ocssd_vfu.ftl.mapping import Mapping
from ocssd_vfu.ftl.trace import OpKind, Purpose


@dataclass
class CheckpointState:
    chunks: list[int] = field(default_factory=list)   # the current checkpoint's, in order
    seq: int = 0
    journal_at: int = 0      # where the next journal unit goes, in sectors over `chunks`
    placed_since: int = 0    # sectors placed since it was written


class FtlServices(Protocol):
    flash: Flash
    layout: FlashLayout
    plan: FtlPlan
    chunks: ChunkBook
    mapping: Mapping
    logical_blocks: int
    counters: dict[str, int]
    checkpoint: CheckpointState

    def next_seq(self) -> int: ...

    def allocate(self, pu: int, purpose: Purpose) -> int | None:
        """A fresh chunk on `pu` for a stream, or None."""

    def collect_until(self, free: int) -> None:
        """Foreground GC until `free` chunks are free (or no victim is left)."""

    def erase(self, chunk: int) -> bool: ...

    def retire(self, chunk: int) -> None: ...

    def count_placed(self, purpose: Purpose, count: int) -> None: ...

    def count_programmed(self, count: int, meta: bool = False) -> None: ...

    def record(self, kind: OpKind, purpose: Purpose, chunk: int, sector: int,
               count: int) -> None: ...
