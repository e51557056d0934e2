"""`serve --poll` against a scripted vfio-user client that updates its doorbells as
Linux 5.10 does with a doorbell buffer: the same I/O takes far fewer doorbell
messages than in the default mode, the data reads back, and after the idle time
the server asks for doorbell writes again; held completions (--timing) are posted
while it polls."""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media.ocssd_image import create_image
from tests.integration.nvme_host import CQE, PAGE, SQE, AdminQueues, GuestRam
from tests.integration.server_process import running_server
from tests.vfio_user_client import Region, VfioUserClient

QUEUES_IOVA, DATA_IOVA = 0x4000_0000, 0x8000_0000
IOSQ, IOCQ = QUEUES_IOVA + 2 * PAGE, QUEUES_IOVA + 3 * PAGE
SHADOW, EVENTIDX = QUEUES_IOVA + 4 * PAGE, QUEUES_IOVA + 5 * PAGE
SQ1_TAIL, CQ1_HEAD = 8, 12  # offsets in the shadow and EventIdx pages, and after 0x1000
ENTRIES = 8
WRITE, READ, DBBUF = 0x01, 0x02, 0x7C
IOS = 64  # 32 writes, then 32 reads of what they wrote: the queues wrap 8 times
TOTAL = re.compile(r"doorbell writes so far: (\d+)")
# The longest --poll-idle-us: a client stalled by a loaded test machine (100 ms was seen)
# must not end polling in the middle of the run. The client then waits longer.
POLL_IDLE = ("--poll", "--poll-idle-us", "1000000")
IDLE_S = 1.2


class LinuxLikeQueue:
    """I/O queue pair 1 with a doorbell buffer, one command at a time, CQ polled."""

    def __init__(self, client: VfioUserClient, ram: GuestRam, admin: AdminQueues) -> None:
        self.client, self.ram = client, ram
        ram.write(IOCQ, bytes(PAGE))
        for opc, prp1, prp2, cdw10, cdw11 in (
                (0x05, IOCQ, 0, 1 | (ENTRIES - 1) << 16, 1),
                (0x01, IOSQ, 0, 1 | (ENTRIES - 1) << 16, 1 | 1 << 16),
                (DBBUF, SHADOW, EVENTIDX, 0, 0)):
            cid = admin.submit(opc, prp1=prp1, prp2=prp2, cdw10=cdw10, cdw11=cdw11)
            assert admin.wait(cid).status == 0
        self.tail = self.head = 0
        self.phase = 1
        self.rang: list[bool] = []  # per doorbell update: whether it took an MMIO write

    def update(self, offset: int, new: int) -> None:
        """nvme_dbbuf_update_and_check_event: the shadow value, then the MMIO write only
        if EventIdx lies in [old, new) modulo 2^16."""
        old = struct.unpack("<I", self.ram.read(SHADOW + offset, 4))[0]
        self.ram.write(SHADOW + offset, struct.pack("<I", new))
        event = struct.unpack("<I", self.ram.read(EVENTIDX + offset, 4))[0] & 0xFFFF
        ring = (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF
        if ring:
            self.client.write32(Region.BAR0, 0x1000 + offset, new)
        self.rang.append(ring)

    def command(self, opc: int, lba: int, slot: int) -> int:
        sqe = SQE.pack(opc, 0, slot, 1, 0, 0, 0, DATA_IOVA + slot * PAGE, 0, lba, 0, 0, 0,
                       0, 0)
        self.ram.write(IOSQ + self.tail * SQE.size, sqe)
        self.tail = (self.tail + 1) % ENTRIES
        self.update(SQ1_TAIL, self.tail)
        deadline = time.monotonic() + 5
        while True:  # no sleep: a driver's completion path comes back within microseconds
            *_, status = CQE.unpack(self.ram.read(IOCQ + self.head * CQE.size, CQE.size))
            if status & 1 == self.phase:
                break
            assert time.monotonic() < deadline, "no completion"
        self.head = (self.head + 1) % ENTRIES
        self.phase ^= self.head == 0
        self.update(CQ1_HEAD, self.head)
        return status >> 1


def run_io(*serve_flags: str) -> tuple[int, list[bool], list[bool]]:
    """The server's doorbell-write total for IOS commands (admin commands included), the
    client's MMIO decisions during them, and those of one more write after IDLE_S."""
    with running_server(*serve_flags) as server:
        with server.connect() as client:
            ram = GuestRam(0x60000)
            try:
                ram.map(client, QUEUES_IOVA, 0, 0x10000)
                ram.map(client, DATA_IOVA, 0x10000, 0x40000)
                admin = AdminQueues(client, ram, QUEUES_IOVA, QUEUES_IOVA + PAGE)
                admin.enable()
                queue = LinuxLikeQueue(client, ram, admin)
                for lba in range(IOS // 2):
                    ram.write(DATA_IOVA + lba * PAGE, bytes([lba + 1]) * PAGE)
                    assert queue.command(WRITE, lba, lba) == 0
                ram.write(DATA_IOVA, bytes(IOS // 2 * PAGE))
                for lba in range(IOS // 2):
                    assert queue.command(READ, lba, lba) == 0
                for lba in range(IOS // 2):
                    assert ram.read(DATA_IOVA + lba * PAGE, PAGE) == bytes([lba + 1]) * PAGE
                during, queue.rang = queue.rang, []
                time.sleep(IDLE_S)
                assert queue.command(WRITE, 0, 0) == 0
                after = queue.rang
            finally:
                ram.close()
        deadline = time.monotonic() + 5
        while not TOTAL.search(server.log()):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        server.assert_alive()
        return int(TOTAL.findall(server.log())[-1]), during, after


def test_polling_takes_far_fewer_doorbell_messages_for_the_same_io() -> None:
    polled, polled_rings, polled_after = run_io(*POLL_IDLE)
    default, default_rings, default_after = run_io()
    # Default mode: each submission rings (EventIdx = the tail read; one the server's
    # re-arm race check caught instead rings nothing), and the CQ head at every wrap
    # (EventIdx "never" is 0xFFFF as 16 bits): up to 64 + 8 of 128 updates.
    assert 48 <= default_rings.count(True) <= 72
    assert default >= default_rings.count(True)
    # Polling: no I/O doorbell update rings (EventIdx half a queue away, and the client
    # moves by one), unless the client stalled for a whole idle time; the admin queue's
    # (4 commands x SQ tail and CQ head) are about all of the total.
    assert polled_rings.count(True) <= 2
    assert polled <= 12
    # After IDLE_S (more than the idle time), the server armed EventIdx again: the write
    # rang, in both modes.
    assert polled_after == [True, False] and default_after == [True, False]


def test_held_completions_of_a_timed_ftl_device_complete_while_polling(tmp_path: Path) -> None:
    image = tmp_path / "ftl.img"
    create_image(image, OcssdGeometry(num_grp=1, num_pu=2, num_chk=32, num_sec=256))
    total, rings, after = run_io("--image", str(image), "--mode", "ftl", "--op-percent", "30",
                                 "--timing", *POLL_IDLE)
    # Every completion was held until its modelled time and posted by the scheduler's
    # task between polling passes; the data read back (run_io).
    assert rings.count(True) <= 2
    assert total <= 12
    assert after == [True, False]
