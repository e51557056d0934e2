"""Choosing a GC victim.

Candidates are DATA chunks (written, not open) with room to win back: fewer valid
sectors than a chunk holds. RETIRED chunks that still hold valid data come first,
whatever the policy: their data must leave.

- greedy: the fewest valid sectors (FEMU, NVMeVirt).
- cost-benefit (Rosenblum and Ousterhout's LFS cleaner): the highest
  (1 - u) * age / (1 + u), u = valid / clba, age = sequence numbers since the
  chunk's last sector was placed; in integers, (clba - valid) * age / (clba + valid).
  Cold chunks are taken at a higher utilisation than hot ones, whose remaining
  valid data is likely to be overwritten soon anyway.
Ties go to the lowest chunk index.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ocssd_vfu.ftl.chunks import ChunkBook, Role


class GcPolicy(enum.Enum):
    GREEDY = "greedy"
    COST_BENEFIT = "cost-benefit"


def choose_victim(book: ChunkBook, valid: Sequence[int], now_seq: int,
                  policy: GcPolicy) -> int | None:
    clba = book.layout.clba
    retired = [chunk for chunk, role in enumerate(book.role)
               if role == Role.RETIRED and valid[chunk]]
    if retired:
        return retired[0]
    candidates = [chunk for chunk, role in enumerate(book.role)
                  if role == Role.DATA and valid[chunk] < clba]
    if not candidates:
        return None
    if policy == GcPolicy.GREEDY:
        return min(candidates, key=lambda chunk: (valid[chunk], chunk))

    def benefit(chunk: int) -> tuple[float, int]:
        age = now_seq - book.newest_seq[chunk]
        return (clba - valid[chunk]) * age / (clba + valid[chunk]), -chunk

    return max(candidates, key=benefit)
