"""The SMART / Health log's counters (log page 02h) and the temperature it reports.

Counted (NVMe 1.4 5.14.1.2): a successful Read, Compare or vector read is a host
read command and adds its logical blocks (data only, no metadata) to the data
read; Write and vector write likewise for writes. Write Zeroes and Write
Uncorrectable count in neither, as the spec says. Data units are thousands of
512-byte units, rounded up: 1 means 1 to 1,000 units.

Power: each device reset (QEMU resets the device when its VM starts or reboots,
and the server when QEMU goes away) is a power cycle, and one that finds the
controller enabled without a completed shutdown (CC.SHN) is an unsafe shutdown.
Power-on hours count from the server's start.

Nothing of this persists: a raw file has no room beside the namespace's blocks,
and the OCSSD image format is qemu-nvme's, whose header has no field for it
(writing elsewhere would make images differ from the reference's). Every
counter starts at zero when the server starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocssd_vfu.spec.nvme import CriticalWarning, SmartHealthLog, blank

NOT_COUNTED, HOST_READ, HOST_WRITE = 0, 1, 2

COMPOSITE_TEMPERATURE = 313       # kelvin (40 C): the device does not heat up
WARNING_TEMPERATURE = 343         # WCTEMP, and the default over-temperature threshold
CRITICAL_TEMPERATURE = 373        # CCTEMP
AVAILABLE_SPARE = 100
AVAILABLE_SPARE_THRESHOLD = 10
SECONDS_PER_HOUR = 3600


def data_units(byte_count: int) -> int:
    """Thousands of 512-byte units, rounded up."""
    return -(-byte_count // (512 * 1000))


@dataclass
class Health:
    clock: Callable[[], float]
    # Indexed by HOST_READ / HOST_WRITE: commands, and bytes of data they moved; io.dispatch
    # adds to them after every successful read or write.
    commands: list[int] = field(default_factory=lambda: [0, 0, 0])
    transferred: list[int] = field(default_factory=lambda: [0, 0, 0])
    power_cycles: int = 0
    unsafe_shutdowns: int = 0
    powered_on_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.powered_on_at = self.clock()

    def power_cycle(self, unsafe: bool) -> None:
        self.power_cycles += 1
        self.unsafe_shutdowns += unsafe

    def log(self, over_threshold: int, under_threshold: int) -> bytes:
        """The log page, with the temperature warning when the composite temperature is at
        or above the over-temperature threshold, or at or below the under-temperature one."""
        page = blank(SmartHealthLog)
        too_hot = over_threshold <= COMPOSITE_TEMPERATURE
        too_cold = under_threshold >= COMPOSITE_TEMPERATURE
        page.update(dict(
            critical_warning=CriticalWarning.TEMPERATURE if too_hot or too_cold else 0,
            composite_temperature=COMPOSITE_TEMPERATURE,
            available_spare=AVAILABLE_SPARE,
            available_spare_threshold=AVAILABLE_SPARE_THRESHOLD,
            data_units_read=data_units(self.transferred[HOST_READ]),
            data_units_written=data_units(self.transferred[HOST_WRITE]),
            host_read_commands=self.commands[HOST_READ],
            host_write_commands=self.commands[HOST_WRITE],
            power_cycles=self.power_cycles,
            power_on_hours=int(self.clock() - self.powered_on_at) // SECONDS_PER_HOUR,
            unsafe_shutdowns=self.unsafe_shutdowns))
        return SmartHealthLog.build(page)
