"""Shadow doorbells and EventIdx (Doorbell Buffer Config 7Ch), Interrupt Coalescing
(Feature 08h) and Interrupt Vector Configuration (09h), through a fake host.

LinuxHost updates doorbells as Linux 5.10 does with a doorbell buffer
(nvme_dbbuf_update_and_check_event): write the shadow value, then write the
MMIO doorbell only if EventIdx lies in [old, new) modulo 2^16.
"""

from __future__ import annotations

import struct

import pytest

from ocssd_vfu.spec.nvme import CQE_FORMAT, SQE_FORMAT, IdentifyController, Register
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, RAM_BASE, FakeHost

pytestmark = pytest.mark.usefixtures("both_io_paths")

SHADOW, EVENTIDX = RAM_BASE + 0x5000, RAM_BASE + 0x6000
DBBUF, SET_FEATURES, GET_FEATURES, READ, WRITE = 0x7C, 0x09, 0x0A, 0x02, 0x01
SQ1_TAIL, CQ1_HEAD = 8, 12  # byte offsets of queue 1's entries in both pages


class LinuxHost:
    def __init__(self, queue_size: int = 16, configure: bool = True) -> None:
        self.fake = FakeHost(queue_size=queue_size)
        self.ctrl = self.fake.ctrl
        self.fake.enable()
        self.fake.create_io_queues()
        if configure:
            assert self.fake.command(0, DBBUF, prp1=SHADOW, prp2=EVENTIDX)[5] == 0

    def u32(self, addr: int) -> int:
        value: int = struct.unpack("<I", self.fake.ram_read(addr, 4))[0]
        return value

    def update(self, offset: int, new: int) -> None:
        old = self.u32(SHADOW + offset)
        self.fake.ram_write(SHADOW + offset, struct.pack("<I", new))
        event = self.u32(EVENTIDX + offset) & 0xFFFF
        if (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF:
            self.fake.doorbell(Register.DOORBELLS + offset, new)

    def submit(self, opc: int, count: int = 1, first_cid: int = 1) -> None:
        """`count` reads or writes of LBA 0 into DATA, one doorbell update."""
        f = self.fake
        for cid in range(first_cid, first_cid + count):
            sqe = SQE_FORMAT.pack(opc, 0, cid, 1, 0, 0, 0, DATA, 0, 0, 0, 0, 0, 0, 0)
            f.ram_write(f.sq_base[1] + f.tails[1] * 64, sqe)
            f.tails[1] = (f.tails[1] + 1) % f.queue_size
        self.update(SQ1_TAIL, f.tails[1])

    def reap(self) -> list[int]:
        """Consume queue 1's new completions (their cids), one head update."""
        f, cids = self.fake, []
        while True:
            entry = CQE_FORMAT.unpack(f.ram_read(f.cq_base[1] + f.heads[1] * 16, 16))
            if entry[5] & 1 != f.phases[1]:
                break
            cids.append(entry[4])
            f.heads[1] = (f.heads[1] + 1) % f.queue_size
            if f.heads[1] == 0:
                f.phases[1] ^= 1
        if cids:
            self.update(CQ1_HEAD, f.heads[1])
        return cids


def test_oacs_bit_8_and_the_switch() -> None:
    host = LinuxHost(configure=False)
    assert host.fake.command(0, 0x06, prp1=DATA, cdw10=1)[5] == 0
    assert IdentifyController.parse(host.fake.ram_read(DATA, 4096)).oacs == 0x102  # + Format
    host.ctrl.config.shadow_doorbells = False
    assert host.fake.command(0, 0x06, prp1=DATA, cdw10=1)[5] == 0
    assert IdentifyController.parse(host.fake.ram_read(DATA, 4096)).oacs == 0x002
    assert host.fake.command(0, DBBUF, prp1=SHADOW, prp2=EVENTIDX)[5] == \
        Status.INVALID_OPCODE | DNR


def test_doorbell_buffer_config_checks_its_pages() -> None:
    host = LinuxHost(configure=False)
    for prp1, prp2 in ((0, EVENTIDX), (SHADOW, 0), (SHADOW + 8, EVENTIDX),
                       (SHADOW, EVENTIDX + 0x800)):
        assert host.fake.command(0, DBBUF, prp1=prp1, prp2=prp2)[5] == \
            Status.INVALID_FIELD | DNR
    assert host.fake.command(0, DBBUF, prp1=0x7000_0000, prp2=EVENTIDX)[5] == \
        Status.DATA_TRANSFER_ERROR
    assert host.ctrl.shadow is None


def test_configuring_copies_the_controller_state_and_arms_eventidx() -> None:
    host = LinuxHost(configure=False)
    host.fake.submit(1, READ, nsid=1, prp1=DATA)
    host.fake.submit(1, READ, nsid=1, prp1=DATA, cid=2)
    host.ctrl.process()
    assert len(host.fake.completions(1)) == 2
    host.fake.ram_write(SHADOW, b"\xee" * 16)  # stale values of an earlier configuration
    assert host.fake.command(0, DBBUF, prp1=SHADOW, prp2=EVENTIDX)[5] == 0
    assert host.u32(SHADOW + SQ1_TAIL) == 2 and host.u32(SHADOW + CQ1_HEAD) == 2
    assert host.u32(EVENTIDX + SQ1_TAIL) == 2 and host.u32(EVENTIDX + CQ1_HEAD) == 0xFFFFFFFF
    assert host.u32(SHADOW) == 0xEEEEEEEE  # the admin queue stays on MMIO


def test_shadow_tails_are_processed_and_cq_heads_need_no_mmio() -> None:
    host = LinuxHost()
    before = host.ctrl.doorbell_writes
    for batch in range(1, 6):
        host.submit(READ)
        host.ctrl.process()
        assert host.reap() == [1]
        assert host.u32(EVENTIDX + SQ1_TAIL) == batch  # armed at the consumed tail
    # One MMIO per submission (EventIdx = old tail), none for the CQ heads.
    assert host.ctrl.doorbell_writes - before == 5
    assert host.fake.interrupts.count(1) == 5


def test_a_tail_written_without_mmio_runs_at_the_next_wakeup() -> None:
    host = LinuxHost()
    before = host.ctrl.doorbell_writes
    host.submit(READ)                # rings: EventIdx 0 is in [0, 1)
    host.submit(READ, count=2)       # does not: EventIdx 0 is not in [1, 3)
    assert host.ctrl.doorbell_writes == before + 1
    host.ctrl.process()
    assert host.reap() == [1, 1, 2]


def test_the_rearm_race_processes_the_late_tail() -> None:
    # The host submits while the controller is executing (between its read of the
    # shadow tail and its EventIdx write): it sees the old EventIdx and skips the
    # MMIO write; the controller's re-read after arming finds the new tail.
    host = LinuxHost()
    host.submit(READ)
    late: list[int] = []

    def host_cpu(qid: int, *_: object) -> None:
        if qid == 1 and not late:
            late.append(host.ctrl.doorbell_writes)
            host.submit(WRITE)
    host.ctrl.tracer = host_cpu
    host.ctrl.process()
    assert host.ctrl.doorbell_writes == late[0]  # the late submission rang nothing
    assert host.reap() == [1, 1]
    assert host.u32(EVENTIDX + SQ1_TAIL) == 2


def test_a_full_cq_arms_its_head_eventidx() -> None:
    # 4-entry queues: 3 CQEs fit, so the 4th command waits for room.
    host = LinuxHost(queue_size=4)
    host.submit(READ, count=3)
    host.ctrl.process()
    assert host.u32(EVENTIDX + CQ1_HEAD) == 0xFFFFFFFF
    host.submit(READ, count=1, first_cid=9)
    host.ctrl.process()
    assert host.u32(EVENTIDX + CQ1_HEAD) == 0  # waiting for room: armed at the head
    writes = host.ctrl.doorbell_writes
    assert host.reap() == [1, 2, 3]
    assert host.ctrl.doorbell_writes == writes + 1  # so the head update rang
    host.ctrl.process()
    assert host.reap() == [9]


def test_invalid_shadow_values_are_guest_errors() -> None:
    host = LinuxHost()
    host.fake.ram_write(SHADOW + SQ1_TAIL, struct.pack("<I", 99))
    host.ctrl.mmio_write(Register.DOORBELLS + SQ1_TAIL, 4, 0)
    host.ctrl.process()
    assert host.ctrl.guest_errors["shadow_doorbell"] >= 1
    assert host.reap() == []


def test_controller_reset_zeroes_then_forgets_the_pages() -> None:
    host = LinuxHost()
    host.submit(READ, count=3)
    host.ctrl.process()
    assert host.reap() == [1, 2, 3]
    host.ctrl.mmio_write(Register.CC, 4, 0)
    assert host.ctrl.shadow is None
    for offset in (SQ1_TAIL, CQ1_HEAD):
        assert host.u32(SHADOW + offset) == 0 and host.u32(EVENTIDX + offset) == 0
    # Linux 5.10.223 after the reset: queues again, I/O on the old pages before 7Ch.
    host.fake.restart()
    host.fake.create_io_queues()
    host.submit(READ)             # EventIdx 0 in [0, 1): rings the MMIO doorbell
    host.ctrl.process()
    assert host.reap() == [1]
    host.fake.ram_write(SHADOW + SQ1_TAIL, struct.pack("<I", 5))  # shadow alone: ignored
    host.ctrl.process()
    assert host.reap() == []
    assert host.ctrl.guest_errors == {}


def test_device_reset_writes_nothing_to_the_old_pages() -> None:
    host = LinuxHost()
    host.submit(READ)
    host.ctrl.process()
    pages = host.fake.ram_read(SHADOW, 0x2000)
    host.ctrl.device_reset()
    assert host.ctrl.shadow is None and host.fake.ram_read(SHADOW, 0x2000) == pages


def test_queues_created_after_configuring_start_from_zero() -> None:
    host = LinuxHost()
    host.fake.ram_write(SHADOW + 16, b"\x33" * 8)  # queue 2's stale values
    n = host.fake.queue_size - 1
    assert host.fake.command(0, 0x05, prp1=RAM_BASE + 0x8000, cdw10=2 | n << 16,
                             cdw11=3 | 2 << 16)[5] == 0
    assert host.fake.command(0, 0x01, prp1=RAM_BASE + 0x9000, cdw10=2 | n << 16,
                             cdw11=1 | 2 << 16)[5] == 0
    assert host.u32(SHADOW + 16) == 0 and host.u32(SHADOW + 20) == 0
    # Armed since: the SQ at its tail 0, the CQ at "never".
    assert host.u32(EVENTIDX + 16) == 0 and host.u32(EVENTIDX + 20) == 0xFFFFFFFF


def test_unmapped_pages_fall_back_to_mmio() -> None:
    host = LinuxHost()
    host.fake.memory.remove(RAM_BASE)
    host.fake.memory.add(RAM_BASE, memoryview(host.fake.ram)[:0x5000])
    host.fake.memory.add(RAM_BASE + 0x7000, memoryview(host.fake.ram)[0x7000:])
    host.fake.submit(1, READ, nsid=1, prp1=DATA)
    host.ctrl.process()
    assert host.ctrl.shadow is None and host.ctrl.guest_errors["shadow_unmapped"] == 1
    assert len(host.fake.completions(1)) == 1


# -- Interrupt Coalescing and Interrupt Vector Configuration -----------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def coalescing_host() -> tuple[FakeHost, Clock]:
    host = FakeHost()
    clock = Clock()
    host.ctrl.clock = clock
    host.enable()
    host.create_io_queues()
    return host, clock


def submit_reads(host: FakeHost, count: int) -> None:
    for cid in range(count):
        host.submit(1, READ, cid=cid, nsid=1, prp1=DATA)


def test_coalescing_threshold_gives_one_interrupt() -> None:
    host, _ = coalescing_host()
    # THR 3 (0's based: 4 entries), TIME 10 (1 ms).
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0A03)[5] == 0
    assert host.command(0, GET_FEATURES, cdw10=0x08)[:1] == (0x0A03,)
    host.interrupts.clear()
    submit_reads(host, 4)
    host.ctrl.process()
    assert host.interrupts == [1] and host.ctrl.interrupt_deadline() is None
    assert len(host.completions(1)) == 4


def test_coalescing_time_gives_a_deadline() -> None:
    host, clock = coalescing_host()
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0A03)[5] == 0
    host.interrupts.clear()
    submit_reads(host, 2)
    host.ctrl.process()
    assert host.interrupts == []
    assert host.ctrl.interrupt_deadline() == 100.0 + 0.001
    clock.now = 100.0005
    host.ctrl.expire_interrupts()
    assert host.interrupts == []
    clock.now = 100.001
    host.ctrl.expire_interrupts()
    assert host.interrupts == [1] and host.ctrl.interrupt_deadline() is None


def test_admin_queue_and_time_zero_are_not_coalesced() -> None:
    host, _ = coalescing_host()
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0003)[5] == 0  # TIME 0
    host.interrupts.clear()
    submit_reads(host, 1)
    host.ctrl.process()
    assert host.interrupts == [1]
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0xFF03)[5] == 0
    assert host.interrupts[-1] == 0  # the admin completion was not delayed


def test_interrupt_vector_configuration_disables_coalescing_per_vector() -> None:
    host, _ = coalescing_host()
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0A03)[5] == 0
    assert host.command(0, GET_FEATURES, cdw10=0x09, cdw11=1)[:1] == (1,)
    assert host.command(0, SET_FEATURES, cdw10=0x09, cdw11=1 | 1 << 16)[5] == 0
    assert host.command(0, GET_FEATURES, cdw10=0x09, cdw11=1)[:1] == (0x10001,)
    host.interrupts.clear()
    submit_reads(host, 1)
    host.ctrl.process()
    assert host.interrupts == [1]
    for fid in (0x09,):
        assert host.command(0, SET_FEATURES, cdw10=fid, cdw11=65 | 1 << 16)[5] == \
            Status.INVALID_FIELD | DNR
        assert host.command(0, GET_FEATURES, cdw10=fid, cdw11=65)[5] == \
            Status.INVALID_FIELD | DNR


def test_a_reset_clears_coalescing() -> None:
    host, _ = coalescing_host()
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0A03)[5] == 0
    assert host.command(0, SET_FEATURES, cdw10=0x09, cdw11=1 | 1 << 16)[5] == 0
    host.ctrl.mmio_write(Register.CC, 4, 0)
    host.restart()
    assert host.command(0, GET_FEATURES, cdw10=0x08)[:1] == (0,)
    assert host.command(0, GET_FEATURES, cdw10=0x09, cdw11=1)[:1] == (1,)
