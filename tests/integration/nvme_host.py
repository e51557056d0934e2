"""The host side of an NVMe controller over a vfio-user connection: guest RAM
as a memfd (shared with the server through DMA_MAP), the admin queue pair in
it, BAR0 register access and doorbells, the way a driver does it.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.vfio_user_client import Region, VfioUserClient

# BAR0 registers (NVMe 1.4 3.1)
CAP, VS, INTMS, INTMC, CC = 0x00, 0x08, 0x0C, 0x10, 0x14
CSTS, AQA, ASQ, ACQ = 0x1C, 0x24, 0x28, 0x30
ADMIN_SQ_DOORBELL = 0x1000           # SQ 0 tail (DSTRD = 0)
ADMIN_CQ_DOORBELL = 0x1004           # CQ 0 head
CC_ENABLE = 1 | 6 << 16 | 4 << 20    # EN, IOSQES = 64 B, IOCQES = 16 B, MPS 4 KiB, NVM command set
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1

SQE = struct.Struct("<BBHIIIQQQIIIIII")  # 64 bytes
CQE = struct.Struct("<IIHHHH")           # 16 bytes
IDENTIFY = 0x06
CNS_CONTROLLER = 0x01
PAGE = 4096

GENERIC_SUCCESS = 0x00
DATA_TRANSFER_ERROR = 0x04           # generic command status (SCT 0)


class GuestRam:
    """Guest RAM as QEMU gives it: a memfd whose pieces are DMA-mapped at IOVAs."""

    def __init__(self, size: int) -> None:
        self.fd = os.memfd_create("ovfu-test-ram", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.mem = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self.maps: list[tuple[int, int, int]] = []  # (iova, ram offset, size)

    def close(self) -> None:
        self.mem.close()
        os.close(self.fd)

    def map(self, client: VfioUserClient, iova: int, offset: int, size: int) -> None:
        client.dma_map(iova, size, self.fd, offset)
        self.maps.append((iova, offset, size))

    def unmap(self, client: VfioUserClient, iova: int) -> None:
        entry = next(m for m in self.maps if m[0] == iova)
        client.dma_unmap(iova, entry[2])
        self.maps.remove(entry)

    def _offset(self, iova: int, length: int) -> int:
        for start, offset, size in self.maps:
            if start <= iova and iova + length <= start + size:
                return offset + iova - start
        raise ValueError(f"IOVA {iova:#x}+{length:#x} is not mapped by the test")

    def read(self, iova: int, length: int) -> bytes:
        offset = self._offset(iova, length)
        return self.mem[offset:offset + length]

    def write(self, iova: int, data: bytes) -> None:
        offset = self._offset(iova, len(data))
        self.mem[offset:offset + len(data)] = data

    def read_at(self, offset: int, length: int) -> bytes:
        """Bytes of the memfd itself (also where nothing is mapped any more)."""
        return self.mem[offset:offset + length]


@dataclass(frozen=True)
class Completion:
    dw0: int
    dw1: int
    sqhd: int
    sqid: int
    cid: int
    status: int  # the 15-bit status field: SC 7:0, SCT 10:8, CRD, More 13, DNR 14

    @property
    def sc(self) -> int:
        return self.status & 0xFF

    @property
    def sct(self) -> int:
        return (self.status >> 8) & 0x7


class AdminQueues:
    """The admin SQ/CQ in guest RAM and the driver's view of them."""

    def __init__(self, client: VfioUserClient, ram: GuestRam, sq_iova: int, cq_iova: int,
                 entries: int = 8) -> None:
        self.client, self.ram = client, ram
        self.sq_iova, self.cq_iova, self.entries = sq_iova, cq_iova, entries
        self.sq_tail = self.cq_head = 0
        self.phase = 1
        self.next_cid = 1

    def enable(self, timeout: float = 5.0) -> None:
        """Program AQA/ASQ/ACQ (64-bit registers as two dword writes, like Linux),
        set CC.EN and wait for CSTS.RDY."""
        self.ram.write(self.cq_iova, bytes(self.entries * CQE.size))  # no stale phase bits
        self.sq_tail = self.cq_head = 0
        self.phase = 1
        c = self.client
        c.write32(Region.BAR0, AQA, (self.entries - 1) << 16 | (self.entries - 1))
        for register, value in ((ASQ, self.sq_iova), (ACQ, self.cq_iova)):
            c.write32(Region.BAR0, register, value & 0xFFFFFFFF)
            c.write32(Region.BAR0, register + 4, value >> 32)
        c.write32(Region.BAR0, CC, CC_ENABLE)
        deadline = time.monotonic() + timeout
        while True:
            csts = c.read32(Region.BAR0, CSTS)
            if csts & CSTS_CFS:
                raise AssertionError(f"controller fatal status on enable: CSTS={csts:#x}")
            if csts & CSTS_RDY:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"CSTS.RDY not set after {timeout} s (CSTS={csts:#x})")
            time.sleep(0.001)

    def submit(self, opc: int, nsid: int = 0, prp1: int = 0, prp2: int = 0, cdw10: int = 0,
               cdw11: int = 0, posted: bool = True) -> int:
        """Write an SQE at the tail and ring the SQ doorbell (posted, as QEMU sends
        BAR writes, unless `posted` is False)."""
        cid = self.next_cid
        self.next_cid = (self.next_cid + 1) & 0xFFFF
        sqe = SQE.pack(opc, 0, cid, nsid, 0, 0, 0, prp1, prp2, cdw10, cdw11, 0, 0, 0, 0)
        self.ram.write(self.sq_iova + self.sq_tail * SQE.size, sqe)
        self.sq_tail = (self.sq_tail + 1) % self.entries
        self.client.write32(Region.BAR0, ADMIN_SQ_DOORBELL, self.sq_tail, posted=posted)
        return cid

    def wait(self, cid: int, timeout: float = 5.0,
             server_alive: Callable[[], bool] | None = None) -> Completion:
        """Poll the CQ head entry until its phase tag flips, then consume it
        (giving up early if `server_alive` says the server is gone)."""
        address = self.cq_iova + self.cq_head * CQE.size
        deadline = time.monotonic() + timeout
        while True:
            dw0, dw1, sqhd, sqid, got_cid, status = CQE.unpack(self.ram.read(address, CQE.size))
            if status & 1 == self.phase:
                break
            if server_alive is not None and not server_alive():
                raise AssertionError(f"the server died while cid {cid} was outstanding")
            if time.monotonic() > deadline:
                raise AssertionError(f"no completion for cid {cid} after {timeout} s")
            time.sleep(0.001)
        self.cq_head = (self.cq_head + 1) % self.entries
        if self.cq_head == 0:
            self.phase ^= 1
        self.client.write32(Region.BAR0, ADMIN_CQ_DOORBELL, self.cq_head, posted=True)
        completion = Completion(dw0, dw1, sqhd, sqid, got_cid, status >> 1)
        assert completion.cid == cid, completion
        assert completion.sqid == 0, completion
        assert completion.sqhd == self.sq_tail, completion  # we submit one at a time
        return completion

    def identify_controller(self, buffer_iova: int,
                            server_alive: Callable[[], bool] | None = None) -> Completion:
        cid = self.submit(IDENTIFY, prp1=buffer_iova, cdw10=CNS_CONTROLLER)
        return self.wait(cid, server_alive=server_alive)


def wait_eventfd(fd: int, timeout: float = 5.0) -> int:
    """The eventfd's counter once it is signalled (0 on timeout); resets it."""
    readable, _, _ = select.select([fd], [], [], timeout)
    if not readable:
        return 0
    return int.from_bytes(os.read(fd, 8), "little")
