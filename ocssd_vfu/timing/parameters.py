"""What the flash timing model is told: times per operation, bus speed, buffer, layout.

Times are integer nanoseconds. A "PU" is a parallel unit (OCSSD 2.0) or a LUN (1.2);
PUs are numbered 0..pus-1 channel after channel, so PU p sits on channel
p // pus_per_channel (a 2.0 group or a 1.2 channel is one channel).
"""

from __future__ import annotations

from dataclasses import dataclass

# ONFI 4.x / Toggle 3 buses run at 800 MT/s on 8 bits; NVMeVirt's Samsung 970 PRO
# configuration uses the same 800 MB/s per channel. MB is 10**6 bytes, so 4 KiB crosses
# in 5,120 ns.
DEFAULT_CHANNEL_MBPS = 800


class TimingError(ValueError):
    """Impossible timing parameters; the message names the parameter."""


def default_buffer_sectors(mw_cunits: int, ws_opt: int) -> int:
    """Write-buffer sectors per PU: the MW_CUNITS cache window (at least one write unit)
    plus one write unit being programmed. With MW_CUNITS 0 that is two write units per
    PU, the size NVMeVirt gives its write buffer (two one-shot pages per LUN)."""
    return max(mw_cunits, ws_opt) + ws_opt


def ocssd12_cache_units(sec_per_pg: int) -> int:
    """The MW_CUNITS Linux derives for a 1.2 device (8 pages' sectors, ocssd-spec §3)."""
    return 8 * sec_per_pg


@dataclass(frozen=True)
class Layout:
    channels: int
    pus_per_channel: int

    @property
    def pus(self) -> int:
        return self.channels * self.pus_per_channel

    def channel_of(self, pu: int) -> int:
        return pu // self.pus_per_channel


@dataclass(frozen=True)
class TimingParameters:
    """One device's timing.

    read_ns: tRD, one page read (2.0 TRDT, 1.2 tRDT); program_ns: tPROG, one program unit
    (2.0 TWRT, 1.2 tPRT); erase_ns: tBERS, one chunk reset or block erase (2.0 TCRST,
    1.2 tBET). page_sectors: sectors of one page of one plane, the unit one tRD reads and
    one tPROG programs (2.0: ws_opt; 1.2: sectors per page). planes: planes a multi-plane
    operation covers in one tRD/tPROG/tBERS (2.0: 1). buffer_sectors_per_pu: write-buffer
    capacity of each PU; 0 means no buffer (a write completes when it is programmed).
    """

    read_ns: int
    program_ns: int
    erase_ns: int
    sector_bytes: int
    page_sectors: int
    buffer_sectors_per_pu: int
    planes: int = 1
    channel_mbps: int = DEFAULT_CHANNEL_MBPS

    def __post_init__(self) -> None:
        for name in ("read_ns", "program_ns", "erase_ns", "buffer_sectors_per_pu"):
            if getattr(self, name) < 0:
                raise TimingError(f"{name}={getattr(self, name)}: must not be negative")
        for name in ("sector_bytes", "page_sectors", "planes", "channel_mbps"):
            if getattr(self, name) < 1:
                raise TimingError(f"{name}={getattr(self, name)}: must be at least 1")
        unit = self.page_sectors * self.planes
        if 0 < self.buffer_sectors_per_pu < unit:
            raise TimingError(f"buffer_sectors_per_pu={self.buffer_sectors_per_pu}: must be 0 "
                              f"or hold one program unit of all planes ({unit} sectors)")

    def transfer_ns(self, sectors: int) -> int:
        """Time `sectors` take to cross a channel, rounded up to whole nanoseconds."""
        return -(-sectors * self.sector_bytes * 1000 // self.channel_mbps)
