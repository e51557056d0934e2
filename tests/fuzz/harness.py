"""The fuzz target: the real Controller, OCSSD and plain namespaces and C shim, on guest
memory and image buffers fenced by guard pages, driven by random actions through the
controller's public entry points (mmio_write/mmio_read, process, device_reset, the
tracer hook and the shell's deferred completions).

After every command (the tracer runs right after it executes) the harness checks:
- its status is a specific spec status (never Internal Error, never unknown), DEFERRED
  only for Flush and Async Event Request;
- for an I/O command, status and result are what the model (model.py) predicts from
  guest memory as it was before the command, and the bytes a read or a reset's MPTR
  leaves in guest memory are the model's;
- the chunk log in the image equals the model's descriptors byte for byte, and the
  sectors the command wrote hold the model's data and OOB.
After each batch, every command the host driver submitted on its own queues has
exactly one completion with the status the tracer saw. Exceptions escape to the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import CQE_FORMAT, SQE_FORMAT, Register
from ocssd_vfu.spec.status import DNR, MORE, Status
from tests.fuzz import model as m
from tests.fuzz.guarded import Guarded

# Guest memory: A (writable) holds the host's queues, scratch pages for queues the fuzzer
# creates, and the data area every data pointer, list and MPTR is drawn from; B is
# read-only; C ends at the top of the 64-bit space (address arithmetic must not wrap).
A, A_SIZE = 0x100000, 0x80000
B, B_SIZE = 0x400000, 0x10000
C, C_SIZE = (1 << 64) - 0x10000, 0x10000
ASQ, ACQ, IOSQ, IOCQ = A, A + 0x1000, A + 0x2000, A + 0x3000
SCRATCH, DATA = A + 0x4000, A + 0x10000
QUEUE_SIZE = 16
CC_ENABLE = 1 | 6 << 16 | 4 << 20       # EN, IOSQES 6, IOCQES 4, MPS 0
GEOMETRY = OcssdGeometry(num_grp=m.NUM_GRP, num_pu=m.NUM_PU, num_chk=m.NUM_CHK,
                         num_sec=m.NUM_SEC, sec_size=m.SEC_SIZE, md_size=m.MD_SIZE,
                         ws_min=m.WS_MIN, ws_opt=8, mw_cunits=m.MW_CUNITS)
# Chunks in other states from the start (a --chunk-state file): chunk, state, type, wp.
IMPOSED = ((3, m.OFFLINE, m.SEQUENTIAL, 0), (7, m.OPEN, m.RANDOM, 4),
           (12, m.CLOSED, m.SEQUENTIAL, 16), (20, m.OPEN, m.SEQUENTIAL, 8))
ADMIN_OPCODES = (0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C, 0xE2)
MASK64 = (1 << 64) - 1


class FuzzFailure(AssertionError):
    pass


@dataclass
class Stats:
    commands: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.commands += 1
        name = "DEFERRED" if status < 0 else Status(status & ~(DNR | MORE)).name
        self.statuses[name] = self.statuses.get(name, 0) + 1


class Target:
    def __init__(self, rng: random.Random, stats: Stats | None = None) -> None:
        self.rng = rng
        self.stats = stats or Stats()
        self.model = m.Model()
        self.log: list[str] = []  # the actions, for a failure report
        self.buffers = {A: Guarded(A_SIZE), B: Guarded(B_SIZE, rng.randbytes(B_SIZE),
                                                       writable=False),
                        C: Guarded(C_SIZE)}
        self.mapped = dict.fromkeys(self.buffers, True)
        self.memory = GuestMemory()
        for start, buffer in self.buffers.items():
            self.memory.add(start, buffer.view, writable=start != B)
        self.chunk_log = Guarded(m.CHUNKS * 32, self.model.descriptors())
        self.data = Guarded(GEOMETRY.sectors * m.SEC_SIZE)
        self.oob = Guarded(GEOMETRY.sectors * m.MD_SIZE)
        self.plain = Guarded(m.PLAIN_NLBAS * m.PLAIN_LBA)
        ocssd = OcssdNamespace(1, GEOMETRY, self.chunk_log.view, self.data.view, self.oob.view)
        for chunk, state, chunk_type, wp in IMPOSED:
            ocssd.chunks.set(chunk, state, chunk_type, wp, 0)
            self.model.impose(chunk, state, chunk_type, wp)
        self.ctrl = Controller(self.memory, {1: ocssd, 2: PlainNamespace(2, self.plain.view,
                                                                         m.PLAIN_LBA)},
                               interrupt=lambda vector: None)
        self.ctrl.tracer = self._after_command
        self.dulbe = False
        self.copies = {start: bytearray(len(buffer.view)) for start, buffer in
                       self.buffers.items()}
        self.copies[B] = self.buffers[B].view  # type: ignore[assignment]
        self.traced: dict[tuple[int, int], int] = {}  # (sqid, cid) -> status, this batch
        self.dirty = True  # the host's queues need setting up
        self.tails = {0: 0, 1: 0}
        self.heads = {0: 0, 1: 0}
        self.phases = {0: 1, 1: 1}
        self.cid = 0

    # -- guest memory as the model reads it ---------------------------------------------
    def _snapshot(self) -> None:
        # Copies into buffers kept from command to command: fresh 512 KiB objects each
        # time would be an mmap and page faults each.
        for start, on in self.mapped.items():
            if on and start != B:  # B is read-only: its buffer is its snapshot
                self.copies[start][:] = self.buffers[start].view

    def _read_before(self, address: int, length: int, for_write: bool) -> bytes | None:
        """Guest memory as it was before the command (the model reads its inputs there)."""
        for start, on in self.mapped.items():
            content = self.copies[start]
            if on and start <= address and address - start + length <= len(content) \
                    and length >= 0:
                if for_write and start == B:
                    return None
                return bytes(content[address - start:address - start + length])
        return None

    def ram(self, address: int) -> memoryview:
        for start, buffer in self.buffers.items():
            if start <= address < start + len(buffer.view):
                return buffer.view[address - start:]
        raise KeyError(hex(address))

    def poke(self, address: int, data: bytes) -> None:
        """The host writing its own memory (where it is mapped and writable)."""
        for start, buffer in self.buffers.items():
            if start <= address and address + len(data) <= start + len(buffer.view) \
                    and start != B:
                buffer.view[address - start:address - start + len(data)] = data
                return

    # -- the check after every command ----------------------------------------------------
    def _after_command(self, sqid: int, cmd: Command, status: int, result: int) -> None:
        self.stats.count(status)
        where = f"sq {sqid} {cmd}: status {status:#x} result {result:#x}"
        if status >= 0:
            code = status & ~(DNR | MORE)
            if code not in Status._value2member_map_ or code == Status.INTERNAL_ERROR:
                raise FuzzFailure(f"not a specific spec status: {where}")
        elif not ((sqid == 0 and cmd.opc == 0x0C) or (sqid != 0 and cmd.opc == 0x00)):
            raise FuzzFailure(f"only Flush and AER may be deferred: {where}")
        self.traced[(sqid, cmd.cid)] = status
        if sqid == 0:
            if cmd.opc == 0x09 and status == 0 and cmd.cdw10 & 0xFF == 0x05:
                self.dulbe = bool(cmd.cdw11 & 1 << 16)
        else:
            expected = self.model.expect_io(cmd, self._read_before, self.dulbe)
            if expected.unmodelled:
                self.model.plain[:] = self.plain.view
            elif (status, result) != (expected.status, expected.result):
                raise FuzzFailure(f"model expects status {expected.status:#x} result "
                                  f"{expected.result:#x}: {where}")
            if expected.apply is not None:
                expected.apply()
            self._check_output(expected.output(), where)
        if bytes(self.chunk_log.view) != self.model.descriptors():
            raise FuzzFailure(f"chunk table differs from the model after {where}:\n"
                              f"{self._table_diff()}")
        if self.stats.commands % 32 == 0:
            self.check_data()
        self._snapshot()

    def _check_output(self, pieces: list[tuple[int, bytes]], where: str) -> None:
        """Guest memory as it is, with the pieces laid over it in order (a later one wins
        where they overlap), must be guest memory as it is."""
        if not pieces:
            return
        shadow = {start: copy for start, copy in self.copies.items() if start != B}
        for start, copy in shadow.items():
            copy[:] = self.buffers[start].view  # the snapshot is taken again afterwards
        for address, data in pieces:
            start = next(s for s in shadow if s <= address < s + len(shadow[s]))
            shadow[start][address - start:address - start + len(data)] = data
        for start, expected in shadow.items():
            if expected != self.buffers[start].view:
                first = next(i for i, (x, y) in enumerate(
                    zip(expected, self.buffers[start].view, strict=True)) if x != y)
                raise FuzzFailure(f"guest bytes at {start + first:#x} differ from the model "
                                  f"after {where}")

    def _table_diff(self) -> str:
        device = bytes(self.chunk_log.view)
        model = self.model.descriptors()
        lines = []
        for i in range(m.CHUNKS):
            d, e = device[i * 32:(i + 1) * 32], model[i * 32:(i + 1) * 32]
            if d != e:
                lines.append(f"chunk {i}: device {m.DESCRIPTOR.unpack(d)} model "
                             f"{m.DESCRIPTOR.unpack(e)}")
        return "\n".join(lines)

    def check_data(self) -> None:
        """Every sector the model knows holds data: the device's image holds the same."""
        for index, chunk in enumerate(self.model.chunks):
            for sector, data in chunk.data.items():
                at = index * m.NUM_SEC + sector
                if bytes(self.data.view[at * m.SEC_SIZE:(at + 1) * m.SEC_SIZE]) != data:
                    raise FuzzFailure(f"chunk {index} sector {sector}: data differs")
                oob = bytes(self.oob.view[at * m.MD_SIZE:(at + 1) * m.MD_SIZE])
                if oob != chunk.oob[sector]:
                    raise FuzzFailure(f"chunk {index} sector {sector}: OOB differs")
        if bytes(self.plain.view) != bytes(self.model.plain):
            raise FuzzFailure("plain namespace data differs")

    # -- the host driver --------------------------------------------------------------------
    def mmio_write(self, offset: int, size: int, value: int) -> None:
        old_cc = self.ctrl.mmio_read(Register.CC, 4)
        self.log.append(f"mmio_write({offset:#x}, {size}, {value:#x})")
        self.ctrl.mmio_write(offset, size, value)
        if offset == Register.CC:
            if old_cc & 1 and not value & 1:
                self.dulbe = False  # a controller reset: features back to defaults
            if (value >> 14) & 3 and not (old_cc >> 14) & 3:
                self.model.settle()  # shutdown notification

    def process(self) -> None:
        self._snapshot()
        self.traced.clear()
        self.ctrl.process()
        for request in self.ctrl.take_sync_requests():
            self.ctrl.complete_deferred(request, Status.SUCCESS)

    def setup_queues(self) -> None:
        self.mmio_write(Register.CC, 4, 0)
        self.ram(A)[:0x4000] = bytes(0x4000)
        n = QUEUE_SIZE - 1
        self.mmio_write(Register.AQA, 4, n | n << 16)
        self.mmio_write(Register.ASQ, 8, ASQ)
        self.mmio_write(Register.ACQ, 8, ACQ)
        self.mmio_write(Register.CC, 4, CC_ENABLE)
        self.tails, self.heads, self.phases = {0: 0, 1: 0}, {0: 0, 1: 0}, {0: 1, 1: 1}
        self.dirty = False
        assert self.ctrl.mmio_read(Register.CSTS, 4) & 3 == 1, "enable failed"
        for opc, prp1, cdw11 in ((0x05, IOCQ, 3 | 1 << 16), (0x01, IOSQ, 1 | 1 << 16)):
            status = self.submit(0, opc=opc, prp1=prp1, cdw10=1 | n << 16, cdw11=cdw11)
            assert status == 0, f"queue set-up failed: {status:#x}"

    def submit(self, qid: int, **fields: int) -> int | None:
        """Submit one command on the host's queue `qid`, process, and return its
        completion status (None for an AER, which completes later)."""
        if self.dirty:
            self.setup_queues()
        self.cid = (self.cid + 1) & 0xFFFF
        values = dict(opc=0, flags=0, nsid=0, cdw2=0, cdw3=0, mptr=0, prp1=0, prp2=0,
                      cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0)
        values.update(fields)
        sqe = SQE_FORMAT.pack(values["opc"], values["flags"], self.cid, *(
            values[k] for k in ("nsid", "cdw2", "cdw3", "mptr", "prp1", "prp2", "cdw10",
                                "cdw11", "cdw12", "cdw13", "cdw14", "cdw15")))
        base = ASQ if qid == 0 else IOSQ
        tail = self.tails[qid]
        self.log.append(f"submit sq {qid} slot {tail} cid {self.cid}: {values}")
        self.ram(base + tail * 64)[:64] = sqe
        self.tails[qid] = (tail + 1) % QUEUE_SIZE
        self.ctrl.mmio_write(Register.DOORBELLS + 8 * qid, 4, self.tails[qid])
        self.process()
        done = self.harvest(qid)
        if self.dirty:
            return None  # the command itself took the host's queues away (or reset)
        traced = self.traced.get((qid, self.cid))
        if traced is None:
            raise FuzzFailure(f"command cid {self.cid} on queue {qid} never ran: "
                              f"{values}")
        if traced < 0 and values["opc"] == 0x0C and qid == 0:
            return None
        if done.get(self.cid) != (traced if traced >= 0 else 0):
            raise FuzzFailure(f"command cid {self.cid} on queue {qid} ran with status "
                              f"{traced:#x} but completed with {done.get(self.cid)}")
        return done[self.cid]

    def harvest(self, qid: int) -> dict[int, int]:
        """The new CQEs of the host's CQ `qid`: cid -> status."""
        if self.ctrl.mmio_read(Register.CSTS, 4) & 3 != 1:
            self.dirty = True  # reset or fatal: start over
            return {}
        base = ACQ if qid == 0 else IOCQ
        found = {}
        while True:
            head = self.heads[qid]
            entry = CQE_FORMAT.unpack(bytes(self.ram(base + head * 16)[:16]))
            if entry[5] & 1 != self.phases[qid]:
                break
            if entry[3] != qid:
                raise FuzzFailure(f"CQE on CQ {qid} names SQ {entry[3]}: {entry}")
            found[entry[4]] = entry[5] >> 1
            self.heads[qid] = (head + 1) % QUEUE_SIZE
            if self.heads[qid] == 0:
                self.phases[qid] ^= 1
        if found:
            self.ctrl.mmio_write(Register.DOORBELLS + 8 * qid + 4, 4, self.heads[qid])
        return found

    def map_region(self, start: int, on: bool) -> None:
        """DMA map/unmap, as the shell does on QEMU's messages."""
        self.log.append(f"{'map' if on else 'unmap'} {start:#x}")
        if on:
            self.memory.add(start, self.buffers[start].view, writable=start != B)
        else:
            self.memory.remove(start)
        self.mapped[start] = on

    def close(self) -> None:
        """Unmap everything before the buffers go (cffi holds exports of them)."""
        self.ctrl.tracer = None
        for start, on in self.mapped.items():
            if on:
                self.memory.remove(start)
        self.mapped = dict.fromkeys(self.mapped, False)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def device_reset(self) -> None:
        self.log.append("device_reset()")
        self.ctrl.device_reset()
        self.model.settle()
        self.dulbe = False
        self.dirty = True

