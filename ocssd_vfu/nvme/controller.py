"""The NVMe controller as a sans-I/O state machine.

Inputs: BAR0 register reads/writes (`mmio_read`, `mmio_write`), `process()`,
which the shell calls once per wake-up after all doorbells of that wake-up
arrived (`after_wake_up()`, which skips it when C took them all: I/O doorbells
the C side handled whole, native_doorbells.py, whose `write` is the other
doorbell input, and whose rules say when the shell must call `pause_native()`),
`expire_interrupts()` once `interrupt_deadline()` (a `clock()` time) has come,
and `complete_due(now)` once `held.next_due()` (a `clock_ns()` time) has come:
completions a timed kind held until a modelled time (kind.py).
Outputs: guest-memory accesses through GuestMemory (shadow doorbells included:
doorbells.py), interrupts through the `interrupt(vector)` callable (one per CQ
per batch, or as coalescing says: interrupts.py; C's doorbell path returns its
vector to its caller instead), and requests the shell must
carry out off its event loop (`take_sync_requests`).
Keep this contract: it is what lets tests drive the controller with a bytearray
as guest memory and a list as the interrupt line (tests/unit/fakehost.py), in
microseconds, with no QEMU and no libvfio-user.

Register rules (NVMe 1.4 3.1, 7.6):
- CC.EN 0->1 with valid AQA/ASQ/ACQ creates the admin queues and sets CSTS.RDY;
  invalid ones set CSTS.CFS instead. CC.EN 1->0 is a controller reset. The
  memory page size (CC.MPS) is taken at enable: later CC writes do not change it.
- CC.SHN != 0 requests a shutdown: CSTS.SHST goes to 01b (occurring) until the
  shell reports the image synced, then 10b (complete).
"""

from __future__ import annotations

import logging

from ocssd_vfu.dma.memory import DmaError, TransferError
from ocssd_vfu.nvme import admin, io
from ocssd_vfu.nvme.capabilities import CAP, DOORBELL_STRIDE, VERSION
from ocssd_vfu.nvme.command import DEFERRED, Command, SyncRequest
from ocssd_vfu.nvme.doorbells import EVENTIDX_NEVER
from ocssd_vfu.nvme.feature_values import Features
from ocssd_vfu.nvme.kind import FastPath, Namespace
from ocssd_vfu.nvme.polling import polling_eventidx
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.nvme.state import LOGGED_PER_CATEGORY, ControllerConfig, ControllerState, Registers
from ocssd_vfu.spec.bitfields import fields_mask
from ocssd_vfu.spec.nvme import Aqa, Cc, Csts, Register, ShutdownStatus
from ocssd_vfu.spec.status import Status

__all__ = ["Controller", "ControllerConfig", "Namespace"]

log = logging.getLogger("ocssd_vfu.nvme")

CSTS_RDY, CSTS_CFS = Csts.mask("rdy"), Csts.mask("cfs")
AQA_FIELDS = fields_mask(Aqa)
PAGE_OFFSET = 0xFFF  # ASQ and ACQ bits 11:0 are reserved: the queues are 4 KiB aligned


class Controller(ControllerState):
    """The controller: ControllerState (what the command handlers see) and the inputs
    and outputs of the module docstring."""

    @property
    def enabled(self) -> bool:
        return bool(self.regs.csts & CSTS_RDY)

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
        self.pause_native()
        if offset >= Register.DOORBELLS:
            self._doorbell(offset, value)
        elif offset == Register.CC:
            self._write_cc(value)
        elif offset == Register.AQA:
            self.regs.aqa = value & AQA_FIELDS
        elif Register.ASQ <= offset < Register.ASQ + 8:
            self.regs.asq = _merge(self.regs.asq, offset - Register.ASQ, size, value) & ~PAGE_OFFSET
        elif Register.ACQ <= offset < Register.ACQ + 8:
            self.regs.acq = _merge(self.regs.acq, offset - Register.ACQ, size, value) & ~PAGE_OFFSET
        elif offset == Register.INTMS:
            self.regs.intms |= value
        elif offset == Register.INTMC:
            self.regs.intms &= ~value
        else:
            self.guest_error("mmio_write", f"write of {value:#x} to read-only offset {offset:#x}")

    def _write_cc(self, value: int) -> None:
        old, self.regs.cc = self.regs.cc, value
        enable, was_enabled = Cc.get(value, "en"), Cc.get(old, "en")
        if enable and not was_enabled:
            self._enable()
        elif not enable and was_enabled:
            self.reset()
        if Cc.get(value, "shn") and not Cc.get(old, "shn"):
            self.regs.csts = Csts.put(self.regs.csts, "shst", ShutdownStatus.OCCURRING)
            for ns in self.namespaces.values():
                ns.flush_write_cache()
            self.sync_requests.append(SyncRequest(
                self.epoch, shutdown=True,
                not_before_ns=self.buffers_programmed_ns(self.clock_ns())))

    def _enable(self) -> None:
        aqa, cc = Aqa.parse(self.regs.aqa), Cc.parse(self.regs.cc)
        asqs, acqs = aqa.asqs + 1, aqa.acqs + 1
        if (asqs < 2 or acqs < 2 or not self.regs.asq or not self.regs.acq or cc.mps != 0
                or cc.css != 0 or (cc.iosqes not in (0, 6)) or (cc.iocqes not in (0, 4))):
            self.guest_error("cc_enable",
                             f"invalid enable: CC={self.regs.cc:#x} AQA={self.regs.aqa:#x}")
            self.regs.csts |= CSTS_CFS
            return
        self._set_page_size(cc.mps)
        cq = CompletionQueue(0, self.regs.acq, acqs, vector=0, interrupts_enabled=True)
        self.cqs = {0: cq}
        self.sqs = {0: SubmissionQueue.bound_to(cq, 0, self.regs.asq, asqs)}
        self.regs.csts = (self.regs.csts & ~CSTS_CFS) | CSTS_RDY

    def reset(self) -> None:
        """Controller reset (CC.EN 1->0, or the whole device reset by the host)."""
        self.pause_native()
        self._forget_shadow_doorbells()
        self.coalescing = self._new_coalescing()
        self.sqs.clear()
        self.cqs.clear()
        self.pending.clear()
        self.held.clear()  # their queues are gone: nothing held is posted
        self.held_touched.clear()
        self.aer_cids.clear()
        self.features = Features()
        self.io_queues_created = False
        self.epoch += 1
        # Keep SHST: a shutdown stays reported until the next enable.
        self.regs.csts &= ~(CSTS_RDY | CSTS_CFS)

    def device_reset(self) -> None:
        """The whole function reset (VM start, guest reboot, QEMU gone): a new host will
        find everything below each write pointer readable, as after a power cycle."""
        shutdown_complete = Csts.get(self.regs.csts, "shst") == ShutdownStatus.COMPLETE
        self.health.power_cycle(unsafe=bool(Cc.get(self.regs.cc, "en"))
                                and not shutdown_complete)
        self.shadow = None  # the host's pages may be anyone's memory by now
        self.reset()
        self.regs = Registers()
        for ns in self.namespaces.values():
            ns.flush_write_cache()

    def shutdown_complete(self) -> None:
        self.regs.csts = Csts.put(self.regs.csts, "shst", ShutdownStatus.COMPLETE)

    def _forget_shadow_doorbells(self) -> None:
        """Zero each I/O queue's shadow value and EventIdx, then forget the pages
        (doorbells.py says why)."""
        shadow, self.shadow = self.shadow, None
        if shadow is None:
            return
        try:  # every entry ever used: a deleted queue's stale EventIdx would mute the next
            for qid, cq in shadow.used:
                shadow.write(self.memory, qid, cq, 0)
                shadow.arm(self.memory, qid, cq, 0)
        except DmaError:
            pass  # unmapped already: nothing left to clean

    def _doorbell(self, offset: int, value: int) -> None:
        self.python_doorbell_writes += 1
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
        """Run every new command of every rung SQ (and, with shadow doorbells, of
        every SQ whose shadow tail moved); one interrupt per CQ touched. Then the C
        doorbell path on again where it may serve (native_doorbells.py)."""
        self.pause_native()
        touched: set[CompletionQueue] = set()
        while True:
            if self.shadow is not None:
                self._read_shadow_doorbells()
            self._drain(touched)
            if self.shadow is None or not self._rearm():
                break
        for cq in touched:
            self._raise(cq)
        if self.native is not None:
            self.native.arm(self, self.tracer is None and self.media_failure is None
                            and not self.held and self.enabled
                            and not self.regs.csts & CSTS_CFS)

    def needs_processing(self) -> bool:
        """Whether `process()` has work after a wake-up: not when C took every doorbell
        of it whole (no Python entry paused it, and it left no queue to Python)."""
        return self.native is None or not self.native.enabled

    def after_wake_up(self) -> None:
        """What the shell calls once a wake-up's messages are handled: `process()`, or,
        when C took them all, C's own end of the wake-up (with shadow doorbells: the
        commands the host submitted meanwhile, the EventIdx armed; native/doorbell.h)."""
        native = self.native
        if native is not None and native.enabled:
            native.finish(self)
            if native.enabled:
                return
        self.process()

    def _read_shadow_doorbells(self) -> None:
        assert self.shadow is not None
        try:
            for qid, sq in self.sqs.items():
                tail = self.shadow.read(self.memory, qid, False) if qid else sq.tail
                if tail != sq.tail and self._valid_shadow(tail, sq.size, "SQ", qid):
                    sq.tail = tail
                    self.pending.add(qid)
            for qid, cq in self.cqs.items():
                head = self.shadow.read(self.memory, qid, True) if qid else cq.head
                if head != cq.head and self._valid_shadow(head, cq.size, "CQ", qid):
                    cq.head = head
                    self.pending.update(sq.qid for sq in cq.sqs if not sq.empty())
        except DmaError:
            self.lose_shadow_doorbells()

    def _valid_shadow(self, value: int, size: int, kind: str, qid: int) -> bool:
        if value < size:
            return True
        self.guest_error("shadow_doorbell", f"{kind} {qid} shadow doorbell {value} invalid")
        return False

    def _rearm(self) -> bool:
        """Arm every I/O queue's EventIdx, then tell whether the host moved a shadow
        value meanwhile (it may then have skipped the MMIO write). While polling, keep
        each one where the host does not ring instead (polling.py)."""
        shadow, memory = self.shadow, self.memory
        assert shadow is not None
        try:
            if self.polling:
                for qid, sq in self.sqs.items():
                    if qid:
                        shadow.arm(memory, qid, False, polling_eventidx(sq.tail, sq.size))
                for qid, cq in self.cqs.items():
                    if qid:
                        shadow.arm(memory, qid, True, polling_eventidx(cq.head, cq.size))
                return False  # the next pass reads them again
            waiting = [cq for qid, cq in self.cqs.items()
                       if qid and cq.full() and any(not sq.empty() for sq in cq.sqs)]
            for qid, sq in self.sqs.items():
                if qid:
                    shadow.arm(memory, qid, False, sq.tail)
            for qid, cq in self.cqs.items():
                if qid:
                    shadow.arm(memory, qid, True, cq.head if cq in waiting else EVENTIDX_NEVER)
            memory.barrier()
            # Invalid values were reported by the read and do not count as moves.
            moved = any(_moved(shadow.read(memory, qid, False), sq.tail, sq.size)
                        for qid, sq in self.sqs.items() if qid)
            return moved or any(_moved(shadow.read(memory, cq.qid, True), cq.head, cq.size)
                                for cq in waiting)
        except DmaError:
            self.lose_shadow_doorbells()
            return False

    def _drain(self, touched: set[CompletionQueue]) -> None:
        while self.pending:
            qid = self.pending.pop()
            sq = self.sqs.get(qid)
            if sq is None:
                continue
            fast = self.fast_path if qid and self.tracer is None \
                and self.media_failure is None else None
            while not sq.empty() and not sq.cq.full():
                if fast is not None and self._run_fast(fast, sq):
                    touched.add(sq.cq)
                    continue
                cmd = self._fetch(sq)
                if cmd is None:
                    break
                self.now_ns = now = self.clock_ns()
                self.hold_due = None
                if self.tracer is not None:
                    self.decoded = None
                status, result = self._execute_guarded(sq, cmd)
                due = self.hold_due
                if due is not None and due > now and status != DEFERRED:
                    self._hold(sq, cmd, status, result, due)
                    continue
                if self.tracer is not None:
                    self.trace_times = (now, now, self.clock_ns())
                    self.tracer(sq.qid, cmd, status, result)
                if status != DEFERRED:
                    self._complete(sq, cmd.cid, status, result)
                    touched.add(sq.cq)

    # -- polling mode (serve --poll; polling.py) -------------------------------------------
    def start_polling(self) -> None:
        """A message came: poll (again), the idle time counted from now."""
        self.backoff.worked(self.clock_ns())
        self.polling = True

    def poll(self) -> bool:
        """One pass of polling mode: run what is new, as process() does, with each
        EventIdx kept where the host does not ring. Once the idle time passed with no new
        command, stop polling: EventIdx armed to ring (process()'s re-arm race check
        included). Whether to poll on."""
        now = self.clock_ns()
        if self._process_ran_commands():
            self.backoff.worked(now)
        if self.shadow is None:  # never configured, or a reset: every doorbell rings
            self.polling = False
        elif self.backoff.idle(now):
            self.polling = False
            if self._process_ran_commands():  # the re-arm race caught a late command
                self.backoff.worked(now)
                self.polling = self.shadow is not None
        return self.polling

    def _process_ran_commands(self) -> bool:
        heads = [sq.head for sq in self.sqs.values()]
        self.process()
        return heads != [sq.head for sq in self.sqs.values()]

    # -- completions held until a modelled time (kind.py: Time) ---------------------------
    def _hold(self, sq: SubmissionQueue, cmd: Command, status: int, result: int,
              due: int) -> None:
        """Post the command's completion at `due`; its CQ slot is reserved now."""
        sq.cq.reserved += 1
        sq.held += 1
        epoch, arrival, decoded = self.epoch, self.now_ns, self.decoded
        self.held.add(due, lambda: self._post_held(epoch, sq, cmd, status, result,
                                                   (arrival, due), decoded))

    def _post_held(self, epoch: int, sq: SubmissionQueue, cmd: Command, status: int,
                   result: int, times: tuple[int, int], decoded: object) -> None:
        if epoch != self.epoch or self.sqs.get(sq.qid) is not sq:
            return  # a reset or Delete SQ dropped it (and its reservation)
        sq.held -= 1
        sq.cq.reserved -= 1
        self._complete(sq, cmd.cid, status, result)
        self.held_touched.add(sq.cq)
        if not sq.empty():
            self.pending.add(sq.qid)  # it may have stopped on the reserved slot
        if self.tracer is not None:
            self.decoded = decoded
            self.trace_times = (*times, self.clock_ns())
            self.tracer(sq.qid, cmd, status, result)

    def complete_due(self, now_ns: int) -> None:
        """Post every held completion due by `now_ns`, then `finish_held_batch`."""
        self.pause_native()
        if self.held.run_due(now_ns):
            self.finish_held_batch()

    def finish_held_batch(self) -> None:
        """After held completions were posted (the scheduler's after_batch): one interrupt
        per CQ touched, then the commands their freed slots let in."""
        self.pause_native()
        touched, self.held_touched = self.held_touched, set()
        for cq in touched:
            self._raise(cq)
        if self.pending:
            self.process()

    def _run_fast(self, fast: FastPath, sq: SubmissionQueue) -> int:
        done = fast.run(self, sq)
        cq = sq.cq
        if done and cq.interrupts_enabled and self.coalescing.applies(cq.qid, cq.vector):
            now = self.clock()
            for _ in range(done):
                self.coalescing.posted(cq.vector, now)
        return done

    def _fetch(self, sq: SubmissionQueue) -> Command | None:
        try:
            return Command._make(sq.fetch(self.memory))
        except DmaError:
            self.guest_error("sq_unmapped", f"SQ {sq.qid} at {sq.base:#x} is not in guest memory")
            self.regs.csts |= CSTS_CFS  # the controller cannot continue: fatal status
            return None

    def _execute_guarded(self, sq: SubmissionQueue, cmd: Command) -> tuple[int, int]:
        """One boundary per command: whatever a handler raises fails that command (Internal
        Error; a TransferError its own status) and the controller goes on. A safety net, not
        a hiding place: each one is counted and logged with its traceback (the fuzzer fails
        on Internal Error)."""
        try:
            return self._execute(sq, cmd)
        except TransferError as err:
            return (err.status, 0)
        except Exception:  # noqa: BLE001 - see the docstring
            self.internal_errors += 1
            if self.internal_errors <= LOGGED_PER_CATEGORY or self.internal_errors % 1000 == 0:
                log.exception("internal error #%d in opcode %#x on SQ %d (cid %d)",
                              self.internal_errors, cmd.opc, sq.qid, cmd.cid)
            return (Status.INTERNAL_ERROR, 0)

    def _execute(self, sq: SubmissionQueue, cmd: Command) -> tuple[int, int]:
        self.opcode_counts[(sq.qid == 0, cmd.opc)] += 1
        if sq.qid == 0:
            return admin.dispatch(self, cmd)
        if self.media_failure is not None:  # nothing may touch the image any more
            return (io.media_error(cmd), 0)
        return io.dispatch(self, sq, cmd)

    def _complete(self, sq: SubmissionQueue, cid: int, status: int, result: int) -> None:
        cq = sq.cq
        try:
            cq.post(self.memory, result & 0xFFFFFFFF, result >> 32, sq.head, sq.qid, cid, status)
        except DmaError:
            self.guest_error("cq_unmapped", f"CQ {cq.qid} at {cq.base:#x} is not in memory")
            self.regs.csts |= CSTS_CFS
            return
        if cq.interrupts_enabled and self.coalescing.applies(cq.qid, cq.vector):
            self.coalescing.posted(cq.vector, self.clock())

    def _raise(self, cq: CompletionQueue) -> None:
        if (cq.interrupts_enabled and cq.head != cq.tail
                and not self.coalescing.applies(cq.qid, cq.vector)):
            self.interrupt(cq.vector)

    def interrupt_deadline(self) -> float | None:
        """When (in `clock()` time) a coalesced interrupt is due, if one waits."""
        return self.coalescing.deadline()

    def expire_interrupts(self) -> None:
        self.coalescing.expire(self.clock())

    def complete_deferred(self, request: SyncRequest, status: int) -> None:
        """The shell finished a SyncRequest: post its completion (or finish shutdown)."""
        self.pause_native()
        if request.epoch != self.epoch:
            return  # a reset aborted the command while the sync ran
        if request.not_before_ns > self.clock_ns():  # the write buffers are still programming
            self.held.add(request.not_before_ns,
                          lambda: self.complete_deferred(request, status))
            return
        if request.shutdown:
            self.shutdown_complete()
            return
        sq = self.sqs.get(request.sqid)
        if sq is None:
            return  # the host deleted the queue while the sync ran
        self._complete(sq, request.cid, status, 0)
        self._raise(sq.cq)

    def post_async_event(self, dw0: int) -> None:
        """A kind (or the control plane) reports an asynchronous event: the oldest
        outstanding AER completes with `dw0`, or the event waits for the next one (an
        event already waiting is not queued twice)."""
        self.pause_native()
        if self.aer_cids and 0 in self.sqs:
            sq = self.sqs[0]
            self._complete(sq, self.aer_cids.pop(0), Status.SUCCESS, dw0)
            self._raise(sq.cq)
        else:
            super().post_async_event(dw0)

    def take_sync_requests(self) -> list[SyncRequest]:
        requests, self.sync_requests = self.sync_requests, []
        return requests


def _moved(value: int, current: int, size: int) -> bool:
    return value != current and value < size


def _merge(old: int, byte_offset: int, size: int, value: int) -> int:
    shift = byte_offset * 8
    mask = ((1 << (size * 8)) - 1) << shift
    return (old & ~mask) | ((value << shift) & mask)


