"""A plain NVM namespace over a byte buffer (the mmap'd image, or a bytearray).

Reads and writes copy between guest ranges and the buffer; nothing here
blocks except page faults on the image, and syncing is the shell's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocssd_vfu.nvme.memory import DmaError, GuestMemory
from ocssd_vfu.nvme.prp import PrpError
from ocssd_vfu.spec.nvme import IdentifyNamespace
from ocssd_vfu.spec.status import DNR, Status


@dataclass
class PlainNamespace:
    nsid: int
    storage: memoryview
    lba_size: int

    @property
    def lba_shift(self) -> int:
        return self.lba_size.bit_length() - 1

    @property
    def nlbas(self) -> int:
        return len(self.storage) // self.lba_size

    def identify(self) -> bytes:
        lbaf = [dict(ms=0, lbads=0, rp=0) for _ in range(16)]
        lbaf[0] = dict(ms=0, lbads=self.lba_shift, rp=0)
        return IdentifyNamespace.build(dict(
            nsze=self.nlbas, ncap=self.nlbas, nuse=self.nlbas, nsfeat=0, nlbaf=0, flbas=0,
            mc=0, dpc=0, dps=0, nmic=0, rescap=0, fpi=0, dlfeat=0, nawun=0, nawupf=0, nacwu=0,
            nabsn=0, nabo=0, nabspf=0, noiob=0,
            nvmcap=(self.nlbas * self.lba_size).to_bytes(16, "little"),
            npwg=0, npwa=0, npdg=0, npda=0, nows=0, anagrpid=0, nsattr=0, nvmsetid=0, endgid=0,
            nguid=bytes(16), eui64=bytes(8), lbaf=lbaf, vs=bytes(3712)))

    def check_range(self, slba: int, nlb: int) -> int:
        if slba + nlb > self.nlbas:
            return Status.LBA_OUT_OF_RANGE | DNR
        return Status.SUCCESS

    def read(self, memory: GuestMemory, ranges: list[tuple[int, int]], slba: int) -> None:
        offset = slba * self.lba_size
        try:
            for addr, length in ranges:
                memory.view(addr, length, write=True)[:] = self.storage[offset:offset + length]
                offset += length
        except DmaError as exc:
            raise PrpError(Status.DATA_TRANSFER_ERROR) from exc

    def write(self, memory: GuestMemory, ranges: list[tuple[int, int]], slba: int) -> None:
        offset = slba * self.lba_size
        try:
            views = [memory.view(addr, length) for addr, length in ranges]
        except DmaError as exc:
            raise PrpError(Status.DATA_TRANSFER_ERROR) from exc
        for view in views:
            self.storage[offset:offset + len(view)] = view
            offset += len(view)
