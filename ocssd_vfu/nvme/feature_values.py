"""The current values of the features Get/Set Features reach (features.py has the
table of how each is read and set). A fresh Features() holds the defaults, which
are also the saved values."""

from __future__ import annotations

from dataclasses import dataclass

from ocssd_vfu.nvme import health

DULBE = 1 << 16                   # Error Recovery (05h) CDW11


@dataclass
class Features:
    arbitration: int = 0
    power_management: int = 0
    temperature_over: int = health.WARNING_TEMPERATURE
    temperature_under: int = 0
    error_recovery: int = 0
    volatile_write_cache: int = 1
    async_event_config: int = 0

    @property
    def dulbe(self) -> bool:
        """Error Recovery's DULBE: reads of deallocated or unwritten blocks fail."""
        return bool(self.error_recovery & DULBE)
