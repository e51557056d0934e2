"""Interrupt Coalescing (Feature 08h) and Interrupt Vector Configuration (09h).

Rules (NVMe 1.4 5.21.1.8, 5.21.1.9):
- 08h CDW11: THR (7:0) the completion entries to aggregate per vector before an
  interrupt, 0's based; TIME (15:8) the longest delay in 100 us units, 0 = no
  delay. Both 0 after a reset, which means an interrupt per batch.
- It applies to I/O completion queues only, on vectors whose CD bit (09h CDW11
  bit 16, set per vector in IV, bits 15:0) is clear. The admin queue's interrupt
  is never delayed.
- A vector then interrupts when THR + 1 entries wait, or when TIME has passed
  since the first of them was posted. The controller never sleeps: `deadline()`
  tells the shell when to call `expire()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocssd_vfu.nvme.command import Result, fail_no_retry
from ocssd_vfu.spec.nvme import FeatureId
from ocssd_vfu.spec.status import Status

TIME_UNIT = 100e-6  # seconds
CD = 1 << 16


@dataclass
class Coalescing:
    trigger: Callable[[int], None]
    vectors: int
    setting: int = 0                            # Feature 08h CDW11, THR | TIME << 8
    disabled: set[int] = field(default_factory=set)  # vectors with CD set (09h)
    waiting: dict[int, int] = field(default_factory=dict)     # vector -> entries not signalled
    deadlines: dict[int, float] = field(default_factory=dict)  # vector -> time to interrupt

    def applies(self, qid: int, vector: int) -> bool:
        return qid != 0 and self.setting >> 8 & 0xFF != 0 and vector not in self.disabled

    def posted(self, vector: int, now: float) -> None:
        """An entry was posted to a coalesced CQ: interrupt now or later."""
        count = self.waiting.get(vector, 0) + 1
        if count > (self.setting & 0xFF):
            self.fire(vector)
            return
        self.waiting[vector] = count
        self.deadlines.setdefault(vector, now + (self.setting >> 8 & 0xFF) * TIME_UNIT)

    def fire(self, vector: int) -> None:
        self.waiting.pop(vector, None)
        self.deadlines.pop(vector, None)
        self.trigger(vector)

    def deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)

    def expire(self, now: float) -> None:
        for vector in [v for v, due in self.deadlines.items() if due <= now]:
            self.fire(vector)

    # -- Get/Set Features ----------------------------------------------------------------
    def set_feature(self, fid: int, value: int) -> Result:
        if fid == FeatureId.INTERRUPT_COALESCING:
            self.setting = value & 0xFFFF
            return (Status.SUCCESS, 0)
        vector = value & 0xFFFF
        if vector >= self.vectors:
            return fail_no_retry(Status.INVALID_FIELD)
        if value & CD:
            self.disabled.add(vector)
        else:
            self.disabled.discard(vector)
        return (Status.SUCCESS, 0)

    def get_feature(self, fid: int, cdw11: int) -> Result:
        if fid == FeatureId.INTERRUPT_COALESCING:
            return (Status.SUCCESS, self.setting)
        vector = cdw11 & 0xFFFF
        if vector >= self.vectors:
            return fail_no_retry(Status.INVALID_FIELD)
        return (Status.SUCCESS, vector | (CD if vector in self.disabled else 0))

