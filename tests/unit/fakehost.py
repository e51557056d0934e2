"""A minimal host driver for the sans-I/O controller: guest memory is a bytearray,
the interrupt line a list. Addresses and layouts are chosen by the test. It needs
the dma layer's C module only (no libvfio-user, no QEMU): keep it that way."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.dma.native import lib
from ocssd_vfu.nvme.controller import Controller, ControllerConfig, Namespace
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import CQE_FORMAT, SQE_FORMAT, Register

RAM_BASE = 0x100000
RAM_SIZE = 4 << 20
ASQ, ACQ = RAM_BASE, RAM_BASE + 0x1000
IOSQ, IOCQ = RAM_BASE + 0x2000, RAM_BASE + 0x3000
DATA = RAM_BASE + 0x10000  # data buffers from here on


class FakeHost:
    # Whether Reads and Writes may take the C fast path, and doorbells the C doorbell
    # path (tests/unit/conftest.py's both_io_paths runs a module's tests on each).
    fast_path = True
    native_doorbells = True

    def __init__(self, nlbas: int = 256, lba_size: int = 4096, queue_size: int = 16,
                 namespace: Namespace | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ram = bytearray(RAM_SIZE)
        self.memory = GuestMemory()
        self.memory.add(RAM_BASE, self.ram)
        self.storage = bytearray(nlbas * lba_size)
        self.interrupts: list[int] = []
        ns = namespace or PlainNamespace(1, memoryview(self.storage), lba_size)
        self.ctrl = Controller(self.memory, {1: ns}, interrupt=self.interrupts.append,
                               config=ControllerConfig(fast_path=self.fast_path,
                                                       native_doorbells=self.native_doorbells),
                               clock=clock)
        self.queue_size = queue_size
        self.tails = {0: 0}
        self.heads = {0: 0}
        self.phases = {0: 1}
        self.cq_base = {0: ACQ}
        self.sq_base = {0: ASQ}

    def ram_write(self, addr: int, data: bytes) -> None:
        self.ram[addr - RAM_BASE:addr - RAM_BASE + len(data)] = data

    def ram_read(self, addr: int, length: int) -> bytes:
        return bytes(self.ram[addr - RAM_BASE:addr - RAM_BASE + length])

    def enable(self) -> None:
        n = self.queue_size - 1
        self.ctrl.mmio_write(Register.AQA, 4, n | n << 16)
        self.ctrl.mmio_write(Register.ASQ, 8, ASQ)
        self.ctrl.mmio_write(Register.ACQ, 8, ACQ)
        self.ctrl.mmio_write(Register.CC, 4, 1 | 6 << 16 | 4 << 20)
        assert self.ctrl.mmio_read(Register.CSTS, 4) & 1

    def restart(self) -> None:
        """What a driver does after a controller reset: clean queues, enable again."""
        self.ram[:] = bytes(len(self.ram))
        self.tails, self.heads, self.phases = {0: 0}, {0: 0}, {0: 1}
        self.enable()

    def submit(self, qid: int, opc: int, cid: int = 1, nsid: int = 0, prp1: int = 0,
               prp2: int = 0, cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
               flags: int = 0, mptr: int = 0) -> None:
        sqe = SQE_FORMAT.pack(opc, flags, cid, nsid, 0, 0, mptr, prp1, prp2, cdw10, cdw11,
                              cdw12, cdw13, 0, 0)
        tail = self.tails[qid]
        self.ram_write(self.sq_base[qid] + tail * 64, sqe)
        self.tails[qid] = (tail + 1) % self.queue_size
        self.doorbell(Register.DOORBELLS + 8 * qid, self.tails[qid])

    def doorbell(self, offset: int, value: int) -> None:
        """A doorbell write as the BAR0 callback takes it: C first (native/doorbell.h),
        its interrupt into the same list; Python for what C does not take."""
        native = self.ctrl.native
        if native is not None:
            result = native.write(offset, value)
            if result != lib.OCSSD_DOORBELL_PYTHON:
                if result >= 0:
                    self.interrupts.append(result)
                return
        self.ctrl.mmio_write(offset, 4, value)

    def completions(self, cqid: int) -> list[tuple[int, ...]]:
        """Consume the new CQEs of `cqid` (dw0, dw1, sqhd, sqid, cid, status)."""
        found = []
        while True:
            head = self.heads[cqid]
            entry = CQE_FORMAT.unpack(self.ram_read(self.cq_base[cqid] + head * 16, 16))
            if entry[5] & 1 != self.phases[cqid]:
                break
            found.append(entry[:5] + (entry[5] >> 1,))
            self.heads[cqid] = (head + 1) % self.queue_size
            if self.heads[cqid] == 0:
                self.phases[cqid] ^= 1
        if found:
            self.doorbell(Register.DOORBELLS + 8 * cqid + 4, self.heads[cqid])
        return found

    def command(self, qid: int, opc: int, **fields: int) -> tuple[int, ...]:
        """Submit, process and return the single completion."""
        self.submit(qid, opc, **fields)
        self.ctrl.process()
        cqid = 0 if qid == 0 else qid
        done = self.completions(cqid)
        assert len(done) == 1, done
        return done[0]

    def create_io_queues(self, qid: int = 1, vector: int = 1) -> None:
        n = self.queue_size - 1
        assert self.command(0, 0x05, prp1=IOCQ, cdw10=qid | n << 16, cdw11=3 | vector << 16)[5] == 0
        assert self.command(0, 0x01, prp1=IOSQ, cdw10=qid | n << 16, cdw11=1 | qid << 16)[5] == 0
        self.tails[qid], self.heads[qid], self.phases[qid] = 0, 0, 1
        self.sq_base[qid], self.cq_base[qid] = IOSQ, IOCQ
        # The admin CQ doorbell paused the C doorbell path: a wake-up's processing (here
        # with nothing to do) turns it on, so the first I/O doorbell may be C's.
        self.ctrl.process()


def prp_list(entries: list[int]) -> bytes:
    return struct.pack(f"<{len(entries)}Q", *entries)
