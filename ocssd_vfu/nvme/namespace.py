"""A plain NVM namespace over a byte buffer (the mmap'd image, or a bytearray).

Reads and writes copy between guest ranges and the buffer; nothing here
blocks except page faults on the image, and syncing is the shell's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocssd_vfu.nvme import dptr
from ocssd_vfu.nvme.memory import GuestMemory
from ocssd_vfu.spec.nvme import IdentifyNamespace, blank
from ocssd_vfu.spec.status import DNR, Status


@dataclass
class PlainNamespace:
    nsid: int
    storage: memoryview
    lba_size: int
    nlbas: int = field(init=False)

    supports_dulbe = False  # no deallocated blocks to report (Set Features 05h, DULBE)

    def __post_init__(self) -> None:
        self.nlbas = len(self.storage) // self.lba_size

    @property
    def lba_shift(self) -> int:
        return self.lba_size.bit_length() - 1

    def identify(self) -> bytes:
        ident = blank(IdentifyNamespace)
        ident.update(dict(nsze=self.nlbas, ncap=self.nlbas, nuse=self.nlbas,
                          nvmcap=(self.nlbas * self.lba_size).to_bytes(16, "little")))
        ident.lbaf[0].lbads = self.lba_shift  # one LBA format (NLBAF 0), no metadata
        return IdentifyNamespace.build(ident)

    def settle(self) -> None:
        """Nothing is cached: every write is in the image when it completes."""

    def check_range(self, slba: int, nlb: int) -> int:
        if slba + nlb > self.nlbas:
            return Status.LBA_OUT_OF_RANGE | DNR
        return Status.SUCCESS

    def transfer(self, memory: GuestMemory, pointer: dptr.DataPointer, page_size: int,
                 slba: int, nlb: int, to_guest: bool) -> None:
        start = slba * self.lba_size
        segment = self.storage[start:start + nlb * self.lba_size]
        dptr.transfer(memory, pointer, page_size, [segment], to_guest)
