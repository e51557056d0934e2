"""A hostile vfio-user client (no VM): what it does to its own memory, its interrupt fds
or config space fails its own commands at most; the server lives and the next client
finds a device as after power-on."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.integration.nvme_host import (
    CSTS,
    CSTS_CFS,
    DATA_TRANSFER_ERROR,
    GENERIC_SUCCESS,
    PAGE,
    AdminQueues,
    GuestRam,
)
from tests.integration.server_process import ServerProcess
from tests.vfio_user_client import Irq, Region, VfioUserClient

RAM_SIZE = 0x20000
QUEUES_IOVA, DATA_IOVA = 0x4000_0000, 0x8000_0000
SERIAL = b"ocssd-vfu-0".ljust(20)


@pytest.fixture
def ram() -> Iterator[GuestRam]:
    r = GuestRam(RAM_SIZE)
    try:
        yield r
    finally:
        r.close()


def admin_queues(client: VfioUserClient, ram: GuestRam) -> AdminQueues:
    ram.map(client, QUEUES_IOVA, 0, 0x10000)
    admin = AdminQueues(client, ram, QUEUES_IOVA, QUEUES_IOVA + PAGE)
    admin.enable()
    return admin


def test_dma_map_at_an_unaligned_offset_maps_exactly_those_bytes(
        server: ServerProcess, client: VfioUserClient, ram: GuestRam) -> None:
    admin = admin_queues(client, ram)
    ram.mem[0x10000:0x12000] = b"\xAA" * 0x2000
    ram.map(client, DATA_IOVA, 0x10FFF, PAGE)   # one page starting 0xFFF into a page
    completion = admin.identify_controller(DATA_IOVA, server_alive=server.alive)
    assert completion.sc == GENERIC_SUCCESS, completion
    # The Identify data starts at offset 0x10FFF of the memfd (before the fix, its first
    # byte did and the other 4095 went to the server's own memory past its mapping).
    assert ram.read_at(0x10FFF + 4, 20) == SERIAL
    assert ram.read_at(0x10FFF + PAGE, 1) == b"\xAA"
    server.assert_alive()


def test_memory_shrunk_after_dma_map_fails_commands_and_the_server_lives(
        server: ServerProcess, ram: GuestRam) -> None:
    with server.connect() as client:
        admin = admin_queues(client, ram)
        ram.map(client, DATA_IOVA, 0x10000, 0x10000)
        assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
        os.ftruncate(ram.fd, 0x10000)  # the data pages go away under the server
        completion = admin.identify_controller(DATA_IOVA, server_alive=server.alive)
        assert (completion.sct, completion.sc) == (0, DATA_TRANSFER_ERROR), completion
        assert not client.read32(Region.BAR0, CSTS) & CSTS_CFS
        os.ftruncate(ram.fd, 0)        # and then the queues themselves (which this test
        # must not touch any more either): the doorbell alone sends the server there
        client.write32(Region.BAR0, 0x1000, (admin.sq_tail + 1) % admin.entries)
        deadline = time.monotonic() + 5
        while not client.read32(Region.BAR0, CSTS) & CSTS_CFS:
            assert time.monotonic() < deadline, "no Controller Fatal Status"
            time.sleep(0.01)
    server.assert_alive()
    assert "guest_memory_gone" in server.log()


def test_an_interrupt_fd_nobody_reads_does_not_block_the_server(
        server: ServerProcess, client: VfioUserClient, ram: GuestRam) -> None:
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        try:  # fill the pipe: the server's next interrupt would block in write()
            while True:
                os.write(write_end, bytes(PAGE))
        except BlockingIOError:
            pass
        os.set_blocking(write_end, True)
        client.set_irq_eventfds(Irq.MSIX, 0, [write_end])
        admin = admin_queues(client, ram)
        ram.map(client, DATA_IOVA, 0x10000, 0x10000)
        for _ in range(3):
            assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
        assert client.read32(Region.BAR0, CSTS) & 1  # still answering messages
    finally:
        os.close(read_end)
        os.close(write_end)
    server.assert_alive()
    assert "guest error irq_fd" in server.log()


def test_config_space_writes_do_not_outlive_the_client(server: ServerProcess,
                                                       ram: GuestRam) -> None:
    with server.connect() as first:
        power_on = first.region_read(Region.CONFIG, 0, 4096)
        caps, pointer = {}, power_on[0x34]
        while pointer:
            caps[power_on[pointer]] = pointer
            pointer = power_on[pointer + 1]
        pm, msix = caps[0x01], caps[0x11]              # Power Management, MSI-X
        for offset, value in ((0x04, b"\x07\x05"),     # COMMAND
                              (0x10, b"\x0D\x00\x00\x00"),  # BAR0 = 0xD: what bricked QEMU
                              (0x3C, b"\x55"),         # interrupt line
                              (pm + 4, b"\x03\x00"),   # PMCSR: D3hot
                              (msix + 2, b"\x00\xC0")):  # MSI-X enable + function mask
            first.region_write(Region.CONFIG, offset, value)
        assert first.region_read(Region.CONFIG, 0, 4096) != power_on
        admin_queues(first, ram)
    with server.connect() as second:
        assert second.region_read(Region.CONFIG, 0, 4096) == power_on
        assert second.read32(Region.BAR0, CSTS) == 0
        ram.maps.clear()
        admin = admin_queues(second, ram)
        ram.map(second, DATA_IOVA, 0x10000, 0x10000)
        assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
    server.assert_alive()
