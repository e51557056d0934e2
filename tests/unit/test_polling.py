"""Polling mode (serve --poll, nvme/polling.py) through a fake host that updates its
doorbells as Linux 5.10 does with a doorbell buffer (test_doorbells.LinuxHost)."""

from __future__ import annotations

import pytest

from ocssd_vfu.nvme.polling import polling_eventidx
from tests.unit.test_doorbells import CQ1_HEAD, EVENTIDX, READ, SQ1_TAIL, LinuxHost

pytestmark = pytest.mark.usefixtures("both_io_paths")

IDLE_NS = 1_000_000  # ControllerConfig's default poll_idle_us, 1000


def need_event(event_idx: int, new: int, old: int) -> bool:
    """Linux's nvme_dbbuf_need_event, on 16-bit values."""
    return (new - event_idx - 1) & 0xFFFF < (new - old) & 0xFFFF


def test_the_polling_eventidx_rings_only_half_a_queue_past_the_value_read() -> None:
    assert polling_eventidx(5, 16) == 13
    assert polling_eventidx(14, 16) == 6
    assert polling_eventidx(0, 1024) == 512
    # Read tail 5 of 16, EventIdx 13; the host moves 5 -> 9, then 9 -> 13: no MMIO.
    assert not need_event(13, 9, 5) and not need_event(13, 13, 9)
    # ... but 13 -> 14, 8 past tail 5 while the controller did not look, rings.
    assert need_event(13, 14, 13)
    # Read tail 14, EventIdx 6; the host wraps 14 -> 2: (2 - 6 - 1) & 0xFFFF = 65531,
    # not below (2 - 14) & 0xFFFF = 65524.
    assert not need_event(6, 2, 14)
    assert need_event(14, 2, 14)  # interrupt mode's EventIdx (the tail read) rings there
    # The host wrote 6 (old 5) and the pass read it before the host read EventIdx: one
    # behind (5) would ring, half a queue away (14) does not.
    assert need_event(5, 6, 5) and not need_event(14, 6, 5)


class PollingHost(LinuxHost):
    def __init__(self, queue_size: int = 16) -> None:
        super().__init__(queue_size=queue_size)
        self.now = 0
        self.ctrl.clock_ns = lambda: self.now

    def eventidx(self) -> tuple[int, int]:
        return self.u32(EVENTIDX + SQ1_TAIL), self.u32(EVENTIDX + CQ1_HEAD)


def test_while_polling_neither_submissions_nor_cq_heads_ring() -> None:
    host = PollingHost()
    host.ctrl.start_polling()
    assert host.ctrl.poll()
    writes = host.ctrl.doorbell_writes
    reaped = []
    for _ in range(20):  # the 16-entry queues wrap
        host.submit(READ)
        host.now += 10_000
        assert host.ctrl.poll()
        reaped += host.reap()
    assert reaped == [1] * 20
    assert host.ctrl.doorbell_writes == writes  # not one MMIO doorbell write
    assert host.fake.interrupts.count(1) == 20
    assert host.eventidx() == (12, 11)  # tail 4 read; head 3 read before the last reap
    host.ctrl.poll()
    assert host.eventidx() == (12, 12)  # half a queue past tail 4 and head 4


def test_after_the_idle_time_the_host_rings_again() -> None:
    host = PollingHost()
    host.ctrl.start_polling()
    host.submit(READ, count=3)
    assert host.ctrl.poll()
    assert host.reap() == [1, 2, 3]
    host.now += IDLE_NS - 1
    assert host.ctrl.poll()
    assert host.eventidx() == (11, 11)
    host.now += 1
    assert not host.ctrl.poll()  # idle: armed as in interrupt mode
    assert host.eventidx() == (3, 0xFFFFFFFF)
    writes = host.ctrl.doorbell_writes
    host.submit(READ, first_cid=7)
    assert host.ctrl.doorbell_writes == writes + 1
    host.ctrl.start_polling()  # what that message does in the shell
    assert host.ctrl.poll()
    assert host.eventidx() == (12, 11)  # tail 4 and head 3 read
    assert host.reap() == [7]


def test_a_submission_between_the_last_read_and_the_arming_is_caught() -> None:
    host = PollingHost()
    host.ctrl.start_polling()
    host.now = IDLE_NS
    assert host.ctrl.shadow is not None
    shadow = host.ctrl.shadow
    arm, late = shadow.arm, []

    def host_cpu_then_arm(*args: int) -> None:  # the host runs on another CPU
        if not host.ctrl.polling and not late:
            late.append(host.ctrl.doorbell_writes)
            host.submit(READ, first_cid=5)  # sees the polling EventIdx: no MMIO
        arm(*args)
    shadow.arm = host_cpu_then_arm  # type: ignore[method-assign]
    assert host.ctrl.poll()  # the re-read found tail 1: polling goes on
    assert host.ctrl.doorbell_writes == late[0]
    assert host.reap() == [5]
    assert host.eventidx() == (1, 0xFFFFFFFF)  # armed to ring once more after running it
    assert host.ctrl.poll()
    assert host.eventidx() == (9, 9)


def test_a_command_waiting_for_cq_room_runs_at_the_next_pass() -> None:
    host = PollingHost(queue_size=4)  # 3 CQEs fit
    host.ctrl.start_polling()
    host.submit(READ, count=3)
    assert host.ctrl.poll()
    host.submit(READ, count=1, first_cid=9)
    assert host.ctrl.poll()  # the CQ is full: it waits
    assert host.eventidx() == (2, 2)  # tail 0 and head 0 read
    writes = host.ctrl.doorbell_writes
    assert host.reap() == [1, 2, 3]
    # The head moved 0 -> 3, more than half a queue: EventIdx 2 is in [0, 3), it rang.
    assert host.ctrl.doorbell_writes == writes + 1
    assert host.ctrl.poll()
    assert host.reap() == [9]
    assert host.ctrl.doorbell_writes == writes + 1  # head 3 -> 0 did not: EventIdx 1


def test_nothing_is_polled_without_shadow_doorbells() -> None:
    host = LinuxHost(configure=False)
    host.ctrl.start_polling()
    assert not host.ctrl.poll()
    assert not host.ctrl.polling


def test_a_controller_reset_stops_polling() -> None:
    host = PollingHost()
    host.ctrl.start_polling()
    assert host.ctrl.poll()
    host.ctrl.mmio_write(0x14, 4, 0)  # CC.EN 1 -> 0
    assert not host.ctrl.poll()
