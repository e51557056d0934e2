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
from ocssd_vfu.spec.bitfields import fields_mask
from ocssd_vfu.spec.commands import (
    InterruptCoalescingValue,
    InterruptVectorConfigurationValue,
)
from ocssd_vfu.spec.nvme import FeatureId
from ocssd_vfu.spec.status import Status

TIME_UNIT = 100e-6  # seconds
CD = InterruptVectorConfigurationValue.mask("cd")


@dataclass
class Coalescing:
    trigger: Callable[[int], None]
    vectors: int
    setting: int = 0                            # Feature 08h CDW11, THR | TIME << 8
    threshold: int = 0                          # its THR: entries to aggregate, 0's based
    time: int = 0                               # its TIME: the longest delay in TIME_UNITs
    disabled: set[int] = field(default_factory=set)  # vectors with CD set (09h)
    waiting: dict[int, int] = field(default_factory=dict)     # vector -> entries not signalled
    deadlines: dict[int, float] = field(default_factory=dict)  # vector -> time to interrupt

    def applies(self, qid: int, vector: int) -> bool:
        return qid != 0 and self.time != 0 and vector not in self.disabled

    def posted(self, vector: int, now: float) -> None:
        """An entry was posted to a coalesced CQ: interrupt now or later."""
        count = self.waiting.get(vector, 0) + 1
        if count > self.threshold:
            self.fire(vector)
            return
        self.waiting[vector] = count
        self.deadlines.setdefault(vector, now + self.time * TIME_UNIT)

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
            self.setting = value & fields_mask(InterruptCoalescingValue)
            # Decoded once here: `applies` and `posted` run for every completion.
            self.threshold = InterruptCoalescingValue.get(value, "thr")
            self.time = InterruptCoalescingValue.get(value, "time")
            return (Status.SUCCESS, 0)
        vector = InterruptVectorConfigurationValue.get(value, "iv")
        if vector >= self.vectors:
            return fail_no_retry(Status.INVALID_FIELD)
        if InterruptVectorConfigurationValue.get(value, "cd"):
            self.disabled.add(vector)
        else:
            self.disabled.discard(vector)
        return (Status.SUCCESS, 0)

    def get_feature(self, fid: int, cdw11: int) -> Result:
        if fid == FeatureId.INTERRUPT_COALESCING:
            return (Status.SUCCESS, self.setting)
        vector = InterruptVectorConfigurationValue.get(cdw11, "iv")
        if vector >= self.vectors:
            return fail_no_retry(Status.INVALID_FIELD)
        return (Status.SUCCESS, vector | (CD if vector in self.disabled else 0))

