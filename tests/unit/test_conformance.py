"""Guest-visible rules found broken by an outside attack: a controller reset forgets
every shadow doorbell entry ever used; Number of Queues is fixed once I/O queues exist."""

from __future__ import annotations

from ocssd_vfu.spec.nvme import Register
from tests.unit.fakehost import FakeHost
from tests.unit.test_doorbells import CQ1_HEAD, EVENTIDX, READ, SHADOW, SQ1_TAIL, LinuxHost

SET_FEATURES, NUMBER_OF_QUEUES = 0x09, 0x07
DELETE_SQ, DELETE_CQ = 0x00, 0x04
COMMAND_SEQUENCE_ERROR_DNR = 0x400C


def test_reset_after_deleting_in_use_queues_zeroes_their_shadow_entries() -> None:
    host = LinuxHost()
    host.submit(READ, count=3)
    host.ctrl.process()
    assert host.reap() == [1, 2, 3]
    assert host.u32(EVENTIDX + SQ1_TAIL) == 3          # armed at the tail it consumed
    assert host.fake.command(0, DELETE_SQ, cdw10=1)[5] == 0
    assert host.fake.command(0, DELETE_CQ, cdw10=1)[5] == 0
    host.ctrl.mmio_write(Register.CC, 4, 0)
    for offset in (SQ1_TAIL, CQ1_HEAD):
        assert (host.u32(SHADOW + offset), host.u32(EVENTIDX + offset)) == (0, 0), offset


def test_number_of_queues_is_a_sequence_error_once_io_queues_exist() -> None:
    host = FakeHost()
    host.enable()
    assert host.command(0, SET_FEATURES, cdw10=NUMBER_OF_QUEUES, cdw11=0x30003)[5] == 0
    host.create_io_queues()
    assert host.command(0, SET_FEATURES, cdw10=NUMBER_OF_QUEUES,
                        cdw11=0x30003)[5] == COMMAND_SEQUENCE_ERROR_DNR
    assert host.command(0, DELETE_SQ, cdw10=1)[5] == 0
    assert host.command(0, DELETE_CQ, cdw10=1)[5] == 0
    assert host.command(0, SET_FEATURES, cdw10=NUMBER_OF_QUEUES,
                        cdw11=0x30003)[5] == COMMAND_SEQUENCE_ERROR_DNR  # until a reset
    host.ctrl.mmio_write(Register.CC, 4, 0)
    host.restart()
    assert host.command(0, SET_FEATURES, cdw10=NUMBER_OF_QUEUES, cdw11=0x30003)[5] == 0
