"""The NVMe controller as a sans-I/O state machine.

Inputs: BAR0 register reads/writes (`mmio_read`, `mmio_write`) and `process()`,
which the shell calls once per wake-up after all doorbells of that wake-up
arrived. Outputs: guest-memory accesses through GuestMemory, interrupts
through the `interrupt(vector)` callable (one per CQ per batch), and requests
the shell must carry out off its event loop (`take_sync_requests`).

Register rules (NVMe 1.4 3.1, 7.6):
- CC.EN 0->1 with valid AQA/ASQ/ACQ creates the admin queues and sets CSTS.RDY;
  invalid ones set CSTS.CFS instead. CC.EN 1->0 is a controller reset. The
  memory page size (CC.MPS) is taken at enable: later CC writes do not change it.
- CC.SHN != 0 requests a shutdown: CSTS.SHST goes to 01b (occurring) until the
  shell reports the image synced, then 10b (complete).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ocssd_vfu.nvme import admin, io
from ocssd_vfu.nvme.capabilities import CAP, DOORBELL_STRIDE, MAX_IO_QUEUES, VERSION
from ocssd_vfu.nvme.command import DEFERRED, Command, SyncRequest
from ocssd_vfu.nvme.memory import DmaError, GuestMemory
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.nvme import Register

if TYPE_CHECKING:
    from ocssd_vfu.nvme.trace import Tracer

log = logging.getLogger("ocssd_vfu.nvme")

Namespace = PlainNamespace | OcssdNamespace | Ocssd12Namespace


@dataclass
class ControllerConfig:
    vid: int = 0x1B36
    ssvid: int = 0x1AF4
    serial: str = "ocssd-vfu-0"
    model: str = "ocssd_vfu NVMe Ctrl"
    oncs: int = 0
    firmware: str = "0.1"
    mdts: int = 7              # 2^7 minimum pages: 512 KiB at 4 KiB pages
    msix_vectors: int = MAX_IO_QUEUES + 1
    io_queue_pairs: int = MAX_IO_QUEUES


@dataclass
class Registers:
    cc: int = 0
    csts: int = 0
    aqa: int = 0
    asq: int = 0
    acq: int = 0
    intms: int = 0


LOGGED_PER_CATEGORY = 10  # then every 1000th: a hostile guest cannot flood the log


@dataclass
class Controller:
    memory: GuestMemory
    namespaces: dict[int, Namespace]
    interrupt: Callable[[int], None]
    config: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        self.regs = Registers()
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self.pending: set[int] = set()
        self.sync_requests: list[SyncRequest] = []
        self.features = admin.Features()
        self.aer_cids: list[int] = []
        self.epoch = 0  # controller resets so far: tags deferred work (SyncRequest)
        self.guest_errors: Counter[str] = Counter()
        self.tracer: Tracer | None = None
        self._set_page_size(0)

    def guest_error(self, category: str, message: str) -> None:
        """One place where guest misbehaviour is counted and logged."""
        self.guest_errors[category] += 1
        count = self.guest_errors[category]
        if count <= LOGGED_PER_CATEGORY or count % 1000 == 0:
            log.warning("guest error %s (#%d): %s", category, count, message)

    # -- registers -------------------------------------------------------------------------
    def _set_page_size(self, mps: int) -> None:
        self.page_size = 1 << (12 + mps)
        self.max_transfer = self.page_size << self.config.mdts  # bytes per I/O command (MDTS)

    @property
    def enabled(self) -> bool:
        return bool(self.regs.csts & 1)

    def mmio_read(self, offset: int, size: int) -> int:
        registers = ((Register.CAP, 8, CAP), (Register.VS, 4, VERSION),
                     (Register.INTMS, 4, self.regs.intms), (Register.INTMC, 4, self.regs.intms),
                     (Register.CC, 4, self.regs.cc), (Register.CSTS, 4, self.regs.csts),
                     (Register.AQA, 4, self.regs.aqa), (Register.ASQ, 8, self.regs.asq),
                     (Register.ACQ, 8, self.regs.acq))
        for reg, width, value in registers:
            if reg <= offset and offset + size <= reg + width:
                return (value >> ((offset - reg) * 8)) & ((1 << (size * 8)) - 1)
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if offset >= Register.DOORBELLS:
            self._doorbell(offset, value)
        elif offset == Register.CC:
            self._write_cc(value)
        elif offset == Register.AQA:
            self.regs.aqa = value & 0x0FFF0FFF
        elif Register.ASQ <= offset < Register.ASQ + 8:
            self.regs.asq = _merge(self.regs.asq, offset - Register.ASQ, size, value) & ~0xFFF
        elif Register.ACQ <= offset < Register.ACQ + 8:
            self.regs.acq = _merge(self.regs.acq, offset - Register.ACQ, size, value) & ~0xFFF
        elif offset == Register.INTMS:
            self.regs.intms |= value
        elif offset == Register.INTMC:
            self.regs.intms &= ~value
        else:
            self.guest_error("mmio_write", f"write of {value:#x} to read-only offset {offset:#x}")

    def _write_cc(self, value: int) -> None:
        old, self.regs.cc = self.regs.cc, value
        if value & 1 and not old & 1:
            self._enable()
        elif not value & 1 and old & 1:
            self.reset()
        shn = (value >> 14) & 0x3
        if shn and not (old >> 14) & 0x3:
            self.regs.csts = (self.regs.csts & ~0xC) | 0x4  # SHST: shutdown occurring
            for ns in self.namespaces.values():
                ns.settle()
            self.sync_requests.append(SyncRequest(self.epoch, shutdown=True))

    def _enable(self) -> None:
        asqs, acqs = (self.regs.aqa & 0xFFF) + 1, ((self.regs.aqa >> 16) & 0xFFF) + 1
        mps = (self.regs.cc >> 7) & 0xF
        iosqes, iocqes = (self.regs.cc >> 16) & 0xF, (self.regs.cc >> 20) & 0xF
        css = (self.regs.cc >> 4) & 0x7
        if (asqs < 2 or acqs < 2 or not self.regs.asq or not self.regs.acq or mps != 0
                or css != 0 or (iosqes not in (0, 6)) or (iocqes not in (0, 4))):
            self.guest_error("cc_enable",
                             f"invalid enable: CC={self.regs.cc:#x} AQA={self.regs.aqa:#x}")
            self.regs.csts |= 0x2  # CFS
            return
        self._set_page_size(mps)
        cq = CompletionQueue(0, self.regs.acq, acqs, vector=0, interrupts_enabled=True)
        self.cqs = {0: cq}
        self.sqs = {0: SubmissionQueue.bound_to(cq, 0, self.regs.asq, asqs)}
        self.regs.csts = (self.regs.csts & ~0x2) | 0x1

    def reset(self) -> None:
        """Controller reset (CC.EN 1->0, or the whole device reset by the host)."""
        self.sqs.clear()
        self.cqs.clear()
        self.pending.clear()
        self.aer_cids.clear()
        self.features = admin.Features()
        self.epoch += 1
        self.regs.csts &= ~0x3  # keep SHST: a shutdown stays reported until the next enable

    def device_reset(self) -> None:
        """The whole function reset (VM start, guest reboot, QEMU gone): a new host will
        find everything below each write pointer readable, as after a power cycle."""
        self.reset()
        self.regs = Registers()
        for ns in self.namespaces.values():
            ns.settle()

    def shutdown_complete(self) -> None:
        self.regs.csts = (self.regs.csts & ~0xC) | 0x8

    def _doorbell(self, offset: int, value: int) -> None:
        index, rem = divmod(offset - Register.DOORBELLS, DOORBELL_STRIDE)
        qid, is_cq = divmod(index, 2)
        if rem or not self.enabled:
            self.guest_error("doorbell",
                             f"doorbell write at {offset:#x} while disabled or misaligned")
            return
        if is_cq:
            cq = self.cqs.get(qid)
            if cq is None or value >= cq.size:
                self.guest_error("cq_doorbell", f"CQ {qid} head {value} invalid")
                return
            cq.head = value
            # SQs that stopped because this CQ was full can go on.
            self.pending.update(sq.qid for sq in cq.sqs if not sq.empty())
        else:
            sq = self.sqs.get(qid)
            if sq is None or value >= sq.size:
                self.guest_error("sq_doorbell", f"SQ {qid} tail {value} invalid")
                return
            sq.tail = value
            self.pending.add(qid)

    # -- command processing ----------------------------------------------------------------
    def process(self) -> None:
        """Run every new command of every rung SQ; one interrupt per CQ touched."""
        touched: set[CompletionQueue] = set()
        while self.pending:
            qid = self.pending.pop()
            sq = self.sqs.get(qid)
            if sq is None:
                continue
            while not sq.empty() and not sq.cq.full():
                cmd = self._fetch(sq)
                if cmd is None:
                    break
                status, result = self._execute(sq, cmd)
                if self.tracer is not None:
                    self.tracer(sq.qid, cmd, status, result)
                if status != DEFERRED:
                    self._complete(sq, cmd.cid, status, result)
                    touched.add(sq.cq)
        for cq in touched:
            self._raise(cq)

    def _fetch(self, sq: SubmissionQueue) -> Command | None:
        try:
            return Command._make(sq.fetch(self.memory))
        except DmaError:
            self.guest_error("sq_unmapped", f"SQ {sq.qid} at {sq.base:#x} is not in guest memory")
            self.regs.csts |= 0x2  # the controller cannot continue: fatal status
            return None

    def _execute(self, sq: SubmissionQueue, cmd: Command) -> tuple[int, int]:
        if sq.qid == 0:
            return admin.dispatch(self, cmd)
        return io.dispatch(self, sq, cmd)

    def _complete(self, sq: SubmissionQueue, cid: int, status: int, result: int) -> None:
        try:
            sq.cq.post(self.memory, result & 0xFFFFFFFF, result >> 32, sq.head, sq.qid, cid,
                       status)
        except DmaError:
            self.guest_error("cq_unmapped", f"CQ {sq.cq.qid} at {sq.cq.base:#x} is not in memory")
            self.regs.csts |= 0x2

    def _raise(self, cq: CompletionQueue) -> None:
        if cq.interrupts_enabled and cq.head != cq.tail:
            self.interrupt(cq.vector)

    def complete_deferred(self, request: SyncRequest, status: int) -> None:
        """The shell finished a SyncRequest: post its completion (or finish shutdown)."""
        if request.epoch != self.epoch:
            return  # a reset aborted the command while the sync ran
        if request.shutdown:
            self.shutdown_complete()
            return
        sq = self.sqs.get(request.sqid)
        if sq is None:
            return  # the host deleted the queue while the sync ran
        self._complete(sq, request.cid, status, 0)
        self._raise(sq.cq)

    def take_sync_requests(self) -> list[SyncRequest]:
        requests, self.sync_requests = self.sync_requests, []
        return requests


def _merge(old: int, byte_offset: int, size: int, value: int) -> int:
    shift = byte_offset * 8
    mask = ((1 << (size * 8)) - 1) << shift
    return (old & ~mask) | ((value << shift) & mask)


