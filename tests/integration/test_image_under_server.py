"""The image file changed by another process while a server serves it: truncated, or
replaced at its path. The server says so in one line, fails every later I/O command
with a media error (DNR), and lives."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.integration.nvme_host import CQE, PAGE, SQE, AdminQueues, GuestRam
from tests.integration.server_process import ServerProcess, running_server
from tests.vfio_user_client import Region, VfioUserClient

QUEUES_IOVA, DATA_IOVA = 0x4000_0000, 0x8000_0000
IOSQ, IOCQ = QUEUES_IOVA + 2 * PAGE, QUEUES_IOVA + 3 * PAGE
ENTRIES = 8
WRITE, READ = 0x01, 0x02
WRITE_FAULT_DNR, UNRECOVERED_READ_DNR = 0x4280, 0x4281


class IoQueue:
    """I/O queue pair 1, polled (no interrupts)."""

    def __init__(self, client: VfioUserClient, ram: GuestRam, admin: AdminQueues) -> None:
        self.client, self.ram = client, ram
        ram.write(IOCQ, bytes(PAGE))
        for opc, prp1, cdw11 in ((0x05, IOCQ, 1), (0x01, IOSQ, 1 | 1 << 16)):
            cid = admin.submit(opc, prp1=prp1, cdw10=1 | (ENTRIES - 1) << 16, cdw11=cdw11)
            assert admin.wait(cid).status == 0
        self.tail = self.head = 0
        self.phase = 1

    def command(self, opc: int, lba: int) -> int:
        sqe = SQE.pack(opc, 0, 7, 1, 0, 0, 0, DATA_IOVA, 0, lba, 0, 0, 0, 0, 0)
        self.ram.write(IOSQ + self.tail * SQE.size, sqe)
        self.tail = (self.tail + 1) % ENTRIES
        self.client.write32(Region.BAR0, 0x1008, self.tail)
        deadline = time.monotonic() + 5
        while True:
            *_, status = CQE.unpack(self.ram.read(IOCQ + self.head * CQE.size, CQE.size))
            if status & 1 == self.phase:
                break
            assert time.monotonic() < deadline, "no completion"
            time.sleep(0.001)
        self.head = (self.head + 1) % ENTRIES
        self.phase ^= self.head == 0
        self.client.write32(Region.BAR0, 0x100C, self.head)
        return status >> 1


@pytest.fixture
def served() -> Iterator[tuple[ServerProcess, IoQueue, GuestRam]]:
    with running_server() as server, server.connect() as client:
        ram = GuestRam(0x20000)
        try:
            ram.map(client, QUEUES_IOVA, 0, 0x10000)
            ram.map(client, DATA_IOVA, 0x10000, 0x10000)
            admin = AdminQueues(client, ram, QUEUES_IOVA, QUEUES_IOVA + PAGE)
            admin.enable()
            yield server, IoQueue(client, ram, admin), ram
        finally:
            ram.close()


def wait_for(server: ServerProcess, text: str) -> None:
    deadline = time.monotonic() + 5
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.log()}"
        time.sleep(0.05)


def test_a_truncated_image_refuses_io_and_the_server_lives(
        served: tuple[ServerProcess, IoQueue, GuestRam]) -> None:
    server, io, ram = served
    ram.write(DATA_IOVA, b"\x11" * PAGE)
    assert io.command(WRITE, 100) == 0
    os.truncate(server.image, 0)
    assert io.command(WRITE, 200) == WRITE_FAULT_DNR   # the copy faults: a media error
    wait_for(server, "was truncated to 0 bytes")
    assert io.command(READ, 100) == UNRECOVERED_READ_DNR
    assert io.command(WRITE, 100) == WRITE_FAULT_DNR
    server.assert_alive()
    assert server.log().count("was truncated") == 1


def test_a_replaced_image_refuses_io(served: tuple[ServerProcess, IoQueue, GuestRam]) -> None:
    server, io, _ = served
    assert io.command(WRITE, 1) == 0
    copy = server.image.with_name("copy.raw")
    shutil.copyfile(server.image, copy)
    os.replace(copy, server.image)     # cp + mv over the served path
    wait_for(server, "was deleted or replaced")
    assert io.command(WRITE, 1) == WRITE_FAULT_DNR
    assert io.command(READ, 1) == UNRECOVERED_READ_DNR
    server.assert_alive()
