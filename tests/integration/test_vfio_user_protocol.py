"""The real server driven through libvfio-user's socket protocol, with no VM.

A Python client (tests/vfio_user_client.py) sends what QEMU's vfio-user-pci
sends; guest RAM is a memfd passed with DMA_MAP, so the test reads and writes
the same pages the server's controller DMAs to.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.nvme_host import (
    ACQ,
    AQA,
    ASQ,
    CAP,
    CC,
    CC_ENABLE,
    CSTS,
    DATA_TRANSFER_ERROR,
    GENERIC_SUCCESS,
    PAGE,
    VS,
    AdminQueues,
    GuestRam,
    wait_eventfd,
)
from tests.integration.server_process import ServerProcess, running_server
from tests.vfio_user_client import (
    DEVICE_FLAGS_PCI,
    DEVICE_FLAGS_RESET,
    DEVICE_INFO,
    DMA_REGION_READ,
    HEADER_SIZE,
    IRQ_INFO_EVENTFD,
    REGION_ACCESS,
    REGION_INFO_FLAG_CAPS,
    REGION_INFO_FLAG_MMAP,
    REGION_INFO_FLAG_READ,
    REGION_INFO_FLAG_WRITE,
    Command,
    ConnectionClosed,
    Irq,
    Region,
    VfioUserClient,
    VfioUserError,
    pack_header,
)

pytestmark = pytest.mark.timeout(60)

# What the server offers, written out from ocssd_vfu/nvme/capabilities.py and
# ocssd_vfu/vfu/device.py: MQES 1023 | CQR << 16 | TO 20 (10 s) << 24 | CSS NVM << 37.
CAP_VALUE = 0x20_1401_03FF
VS_VALUE = 0x0001_0200
BAR0_SIZE = 0x4000
MSIX_BAR_SIZE = 0x2000
MSIX_VECTORS = 65
CONFIG_SIZE = 4096
SERIAL = b"ocssd-vfu-0".ljust(20)
MODEL = b"ocssd_vfu NVMe Ctrl".ljust(40)

# Guest RAM layout: one memfd, two DMA mappings.
RAM_SIZE = 0x20000
QUEUES_IOVA, QUEUES_OFFSET, QUEUES_SIZE = 0x4000_0000, 0x0, 0x10000
DATA_IOVA, DATA_OFFSET, DATA_SIZE = 0x8000_0000, 0x10000, 0x10000
ASQ_IOVA, ACQ_IOVA, SPARE_IOVA = QUEUES_IOVA, QUEUES_IOVA + PAGE, QUEUES_IOVA + 2 * PAGE


@pytest.fixture
def ram() -> Iterator[GuestRam]:
    r = GuestRam(RAM_SIZE)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def eventfd() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def map_ram(client: VfioUserClient, ram: GuestRam) -> AdminQueues:
    ram.map(client, QUEUES_IOVA, QUEUES_OFFSET, QUEUES_SIZE)
    ram.map(client, DATA_IOVA, DATA_OFFSET, DATA_SIZE)
    return AdminQueues(client, ram, ASQ_IOVA, ACQ_IOVA)


def check_identify_data(ram: GuestRam, iova: int) -> None:
    data = ram.read(iova, PAGE)
    assert data[0:2] == (0x1B36).to_bytes(2, "little")     # VID
    assert data[2:4] == (0x1AF4).to_bytes(2, "little")     # SSVID
    assert data[4:24] == SERIAL                             # SN
    assert data[24:64] == MODEL                             # MN
    assert int.from_bytes(data[80:84], "little") == VS_VALUE  # VER
    assert data[512] == 0x66 and data[513] == 0x44          # SQES, CQES
    assert int.from_bytes(data[516:520], "little") == 1     # NN


def server_fds(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


# -- VERSION -------------------------------------------------------------------------------
def test_version_negotiation_with_qemus_capabilities(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        major, minor, caps = c.negotiate(0, 0)
        assert (major, minor) == (0, 0)
        assert caps == {"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 1048576}}
        assert c.device_info().num_regions == 10  # the connection is usable


def test_version_minor_is_the_lower_of_both(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        assert c.negotiate(0, 7)[:2] == (0, 1)  # libvfio-user 0b28d205 speaks 0.1


def test_bad_major_version_is_refused_and_connection_closed(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        with pytest.raises(VfioUserError) as exc:
            c.negotiate(major=1)
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(ConnectionClosed):
            c.recv_message()
    with server.connect() as c:  # the server went back to listening
        assert c.device_info().num_irqs == 5
    server.assert_alive()


def test_a_command_before_version_is_refused(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        with pytest.raises(VfioUserError) as exc:
            c.device_info()
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(ConnectionClosed):
            c.recv_message()
    with server.connect() as c:
        c.device_info()


def test_caps_json_must_be_an_object_with_sane_values(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        with pytest.raises(VfioUserError) as exc:
            c.negotiate(caps={"capabilities": {"max_msg_fds": "many"}})
        assert exc.value.errno == errno.EINVAL
    with server.connect() as c:
        c.device_info()


# -- device, region and IRQ info ----------------------------------------------------------
def test_device_info(client: VfioUserClient) -> None:
    info = client.device_info()
    assert info.flags == DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET
    assert info.num_regions == 10  # BAR0-5, ROM, config, VGA, migration
    assert info.num_irqs == 5      # INTx, MSI, MSI-X, ERR, REQ


def test_region_info(client: VfioUserClient) -> None:
    rw = REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE
    bar0, reply = client.region_info(Region.BAR0)
    assert (bar0.index, bar0.size, bar0.flags) == (Region.BAR0, BAR0_SIZE, rw)
    assert bar0.argsz == 32 and not reply.fds  # no sparse mmap: no caps, no fd
    bar4, _ = client.region_info(Region.BAR4)
    assert (bar4.size, bar4.flags) == (MSIX_BAR_SIZE, rw)
    assert client.region_info(Region.CONFIG)[0].size == CONFIG_SIZE
    for unused in (Region.BAR1, Region.BAR2, Region.BAR3, Region.BAR5, Region.ROM, Region.VGA,
                   Region.MIGRATION):
        assert client.region_info(unused)[0].size == 0, unused.name
    # QEMU re-asks with a larger argsz: still nothing mappable.
    again, reply = client.region_info(Region.BAR0, argsz=256)
    assert again.size == BAR0_SIZE and not again.flags & (REGION_INFO_FLAG_MMAP
                                                          | REGION_INFO_FLAG_CAPS)
    assert not reply.fds
    with pytest.raises(VfioUserError) as exc:
        client.region_info(10)
    assert exc.value.errno == errno.EINVAL


def test_config_region_is_advertised_readable_and_writable(client: VfioUserClient) -> None:
    config, _ = client.region_info(Region.CONFIG)
    assert config.flags == REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE


def test_irq_info(client: VfioUserClient) -> None:
    counts = {irq: client.irq_info(irq) for irq in Irq}
    assert {irq: info.count for irq, info in counts.items()} == {
        Irq.INTX: 1, Irq.MSI: 0, Irq.MSIX: MSIX_VECTORS, Irq.ERR: 0, Irq.REQ: 0}
    assert all(info.flags == IRQ_INFO_EVENTFD for info in counts.values())
    with pytest.raises(VfioUserError):
        client.irq_info(5)


# -- config space --------------------------------------------------------------------------
def test_config_space(client: VfioUserClient) -> None:
    cfg = client.region_read(Region.CONFIG, 0, CONFIG_SIZE)  # QEMU reads it all at realize

    def u8(off: int) -> int:
        return cfg[off]

    def u16(off: int) -> int:
        return int.from_bytes(cfg[off:off + 2], "little")

    def u32(off: int) -> int:
        return int.from_bytes(cfg[off:off + 4], "little")

    assert (u16(0x00), u16(0x02)) == (0x1B36, 0x0010)
    assert (u16(0x2C), u16(0x2E)) == (0x1AF4, 0x1100)      # subsystem vendor / id
    assert (u8(0x0B), u8(0x0A), u8(0x09)) == (0x01, 0x08, 0x02)  # class, subclass, prog-if
    assert u8(0x0E) & 0x7F == 0                              # header type 0
    assert u16(0x06) & 0x10                                   # status: capability list
    assert u8(0x3D) == 1                                      # INTx pin A
    # A small read answers the same bytes.
    assert client.region_read(Region.CONFIG, 0, 4) == cfg[0:4]

    caps: dict[int, int] = {}
    pointer = u8(0x34)
    while pointer:
        assert 0x40 <= pointer < 0x100 and pointer not in caps.values(), hex(pointer)
        caps[u8(pointer)] = pointer
        pointer = u8(pointer + 1)
    assert set(caps) == {0x01, 0x10, 0x11}  # PM, PCI Express, MSI-X

    pcie = caps[0x10]
    assert u16(pcie + 2) & 0xF == 2 and (u16(pcie + 2) >> 4) & 0xF == 0  # v2, endpoint
    assert not u32(pcie + 4) & (1 << 28)                                 # no FLR
    msix = caps[0x11]
    assert u16(msix + 2) & 0x7FF == MSIX_VECTORS - 1
    assert u32(msix + 4) == 0x0000 | 4   # table: BAR4 offset 0
    assert u32(msix + 8) == 0x1000 | 4   # PBA: BAR4 offset 0x1000


def test_pba_reads_are_answered(client: VfioUserClient) -> None:
    # QEMU emulates the MSI-X table but forwards PBA reads to the server.
    assert client.region_read(Region.BAR4, 0x1000, 16) == bytes(16)


# -- BAR0 registers ------------------------------------------------------------------------
def test_bar0_registers_at_reset(client: VfioUserClient) -> None:
    cap = client.read64(Region.BAR0, CAP)
    assert cap == CAP_VALUE
    # Linux reads CAP as two dwords (lo_hi_readq).
    assert client.read32(Region.BAR0, CAP) | client.read32(Region.BAR0, CAP + 4) << 32 == cap
    assert cap & 0xFFFF == 1023                # MQES
    assert (cap >> 16) & 1 == 1                # CQR
    assert (cap >> 24) & 0xFF == 20            # TO: 10 s
    assert (cap >> 32) & 0xF == 0              # DSTRD
    assert (cap >> 37) & 0xFF == 1             # CSS: NVM command set
    assert (cap >> 48) & 0xF == 0 and (cap >> 52) & 0xF == 0  # MPSMIN = MPSMAX = 4 KiB
    assert client.read32(Region.BAR0, VS) == VS_VALUE
    for register in (CC, CSTS, AQA):
        assert client.read32(Region.BAR0, register) == 0, hex(register)


def test_bad_bar0_accesses_fail_cleanly(client: VfioUserClient) -> None:
    with pytest.raises(VfioUserError) as exc:
        client.region_read(Region.BAR0, 0, 3)           # not a register width
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(VfioUserError):
        client.region_read(Region.BAR0, BAR0_SIZE, 4)   # past the BAR (libvfio-user checks)
    assert client.read32(Region.BAR0, VS) == VS_VALUE


# -- DMA and commands ----------------------------------------------------------------------
def test_identify_controller_over_dma_with_msix_interrupt(client: VfioUserClient, ram: GuestRam,
                                                          eventfd: int) -> None:
    admin = map_ram(client, ram)
    client.set_irq_eventfds(Irq.MSIX, 0, [eventfd])
    admin.enable()
    assert client.read32(Region.BAR0, AQA) == (7 << 16 | 7)
    assert client.read64(Region.BAR0, ASQ) == ASQ_IOVA
    assert client.read64(Region.BAR0, ACQ) == ACQ_IOVA

    completion = admin.identify_controller(DATA_IOVA)
    assert (completion.sct, completion.sc) == (0, GENERIC_SUCCESS), completion
    check_identify_data(ram, DATA_IOVA)
    assert wait_eventfd(eventfd) >= 1, "no MSI-X vector 0 interrupt for the admin CQ"

    # A second command, into the other mapping, also interrupts.
    completion = admin.identify_controller(SPARE_IOVA)
    assert completion.sc == GENERIC_SUCCESS, completion
    check_identify_data(ram, SPARE_IOVA)
    assert wait_eventfd(eventfd) >= 1


def test_command_into_an_unmapped_range_fails_with_data_transfer_error(
        server: ServerProcess, client: VfioUserClient, ram: GuestRam) -> None:
    admin = map_ram(client, ram)
    admin.enable()
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS

    ram.unmap(client, DATA_IOVA)
    ram.mem[DATA_OFFSET:DATA_OFFSET + PAGE] = bytes(PAGE)
    completion = admin.identify_controller(DATA_IOVA + PAGE)
    assert (completion.sct, completion.sc) == (0, DATA_TRANSFER_ERROR), completion
    assert ram.read_at(DATA_OFFSET, PAGE) == bytes(PAGE)  # nothing written to the old pages

    # The controller and the server go on.
    server.assert_alive()
    assert not client.read32(Region.BAR0, CSTS) & 0x2
    assert admin.identify_controller(SPARE_IOVA).sc == GENERIC_SUCCESS
    check_identify_data(ram, SPARE_IOVA)

    # The same range can be mapped again and used.
    ram.map(client, DATA_IOVA, DATA_OFFSET, DATA_SIZE)
    assert admin.identify_controller(DATA_IOVA + PAGE).sc == GENERIC_SUCCESS
    check_identify_data(ram, DATA_IOVA + PAGE)


def test_unmapping_what_was_never_mapped_is_an_error(client: VfioUserClient) -> None:
    with pytest.raises(VfioUserError) as exc:
        client.dma_unmap(0x9000_0000, 0x1000)
    assert exc.value.errno == errno.ENOENT
    client.device_info()


def test_dma_region_without_fd_is_not_usable(client: VfioUserClient, ram: GuestRam) -> None:
    # QEMU maps RAM that has no fd without one; commands pointing there must fail.
    admin = map_ram(client, ram)
    client.dma_map(0xC000_0000, 0x10000, None)
    admin.enable()
    completion = admin.identify_controller(0xC000_0000)
    assert completion.sc == DATA_TRANSFER_ERROR, completion
    client.dma_unmap(0xC000_0000, 0x10000)
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS


def test_read_only_dma_region_is_not_written(server: ServerProcess, client: VfioUserClient,
                                            ram: GuestRam) -> None:
    ram.map(client, QUEUES_IOVA, QUEUES_OFFSET, QUEUES_SIZE)
    client.dma_map(DATA_IOVA, DATA_SIZE, ram.fd, DATA_OFFSET, flags=DMA_REGION_READ)
    admin = AdminQueues(client, ram, ASQ_IOVA, ACQ_IOVA)
    admin.enable()
    completion = admin.identify_controller(DATA_IOVA, server_alive=server.alive)
    assert completion.sc == DATA_TRANSFER_ERROR, completion
    assert ram.read_at(DATA_OFFSET, PAGE) == bytes(PAGE)
    server.assert_alive()


def test_dma_map_past_the_end_of_the_fd_is_refused_and_the_server_lives() -> None:
    # libvfio-user would mmap it unchecked and the first access there would SIGBUS the
    # server (our build carries scripts/libvfio-user-robustness.patch).
    with running_server() as server, server.connect() as client:
        ram = GuestRam(RAM_SIZE)
        try:
            ram.map(client, QUEUES_IOVA, QUEUES_OFFSET, QUEUES_SIZE)
            fds_before = server_fds(server)
            with pytest.raises(VfioUserError) as refused:
                client.dma_map(DATA_IOVA, 0x100000, ram.fd, 0)  # 1 MiB of a 128 KiB memfd
            assert refused.value.errno == errno.EINVAL
            with pytest.raises(VfioUserError):  # in range, but from an offset past the end
                client.dma_map(DATA_IOVA, PAGE, ram.fd, RAM_SIZE)
            assert server_fds(server) == fds_before  # the refused maps' fds are closed
            admin = AdminQueues(client, ram, ASQ_IOVA, ACQ_IOVA)
            admin.enable()
            completion = admin.identify_controller(DATA_IOVA + 0x80000,
                                                   server_alive=server.alive)
            assert completion.sc == DATA_TRANSFER_ERROR, completion
            server.assert_alive()
            assert "runs past the end of its file" in server.log()
        finally:
            ram.close()


def test_repeating_a_dma_map_keeps_no_extra_fd(server: ServerProcess, client: VfioUserClient,
                                               ram: GuestRam) -> None:
    # libvfio-user 0b28d205 kept the fd of every repeated identical DMA_MAP (one per
    # guest reboot, as QEMU maps its regions again).
    admin = map_ram(client, ram)
    fds = server_fds(server)
    for _ in range(5):
        client.dma_map(DATA_IOVA, DATA_SIZE, ram.fd, DATA_OFFSET)
    assert server_fds(server) == fds
    admin.enable()
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
    check_identify_data(ram, DATA_IOVA)
    assert "overlaps an existing one" not in server.log()


# -- reset ---------------------------------------------------------------------------------
def test_device_reset_disables_the_controller_until_enabled_again(
        client: VfioUserClient, ram: GuestRam, eventfd: int) -> None:
    admin = map_ram(client, ram)
    client.set_irq_eventfds(Irq.MSIX, 0, [eventfd])
    admin.enable()
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
    assert wait_eventfd(eventfd) >= 1

    client.reset()
    assert client.read32(Region.BAR0, CSTS) & 1 == 0
    assert client.read32(Region.BAR0, CC) == 0
    assert client.read32(Region.BAR0, AQA) == 0
    assert client.read64(Region.BAR0, ASQ) == 0 and client.read64(Region.BAR0, ACQ) == 0

    # DMA mappings and IRQ fds survive a device reset: the driver just starts over.
    admin.enable()
    ram.mem[DATA_OFFSET:DATA_OFFSET + PAGE] = bytes(PAGE)
    completion = admin.identify_controller(DATA_IOVA)
    assert (completion.sqhd, completion.sc) == (1, GENERIC_SUCCESS), completion
    check_identify_data(ram, DATA_IOVA)
    assert wait_eventfd(eventfd) >= 1


def test_cc_enable_without_admin_queues_reports_fatal_status(client: VfioUserClient) -> None:
    client.write32(Region.BAR0, CC, 1 | 6 << 16 | 4 << 20)
    assert client.read32(Region.BAR0, CSTS) & 0x3 == 0x2  # CFS, not RDY
    client.reset()
    assert client.read32(Region.BAR0, CSTS) == 0


def test_cc_en_cleared_resets_the_controller(client: VfioUserClient, ram: GuestRam) -> None:
    admin = map_ram(client, ram)
    admin.enable()
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
    client.write32(Region.BAR0, CC, 0)
    assert client.read32(Region.BAR0, CSTS) & 1 == 0
    admin.enable()
    assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS


def test_shutdown_notification_completes(client: VfioUserClient, ram: GuestRam) -> None:
    admin = map_ram(client, ram)
    admin.enable()
    client.write32(Region.BAR0, CC, CC_ENABLE | 1 << 14)  # SHN = normal shutdown
    deadline = time.monotonic() + 5
    while (csts := client.read32(Region.BAR0, CSTS)) >> 2 & 0x3 != 0x2:  # SHST complete
        assert time.monotonic() < deadline, f"shutdown not complete: CSTS={csts:#x}"
        time.sleep(0.002)


def test_config_writes_qemu_forwards(client: VfioUserClient) -> None:
    def read16(offset: int) -> int:
        return int.from_bytes(client.region_read(Region.CONFIG, offset, 2), "little")

    def write16(offset: int, value: int) -> None:
        client.region_write(Region.CONFIG, offset, value.to_bytes(2, "little"))

    caps = {}
    pointer = client.region_read(Region.CONFIG, 0x34, 1)[0]
    while pointer:
        cap_id, following = client.region_read(Region.CONFIG, pointer, 2)
        caps[cap_id] = pointer
        pointer = following
    write16(0x04, 0x0006)                       # COMMAND: memory space, bus master
    assert read16(0x04) & 0x6 == 0x6
    write16(caps[0x10] + 8, 0x2810)             # PCIe DEVCTL as Linux sets it (MRRS 512...)
    assert read16(caps[0x10] + 8) == 0x2810
    write16(caps[0x11] + 2, 0x8000)             # MSI-X enable
    assert read16(caps[0x11] + 2) & 0x8000
    write16(caps[0x11] + 2, 0x0000)
    assert not read16(caps[0x11] + 2) & 0x8000
    assert read16(0x00) == 0x1B36


# -- connections ---------------------------------------------------------------------------
def test_reconnect_after_disconnect_starts_from_a_reset_device(server: ServerProcess,
                                                               ram: GuestRam) -> None:
    with server.connect() as first:
        admin = map_ram(first, ram)
        admin.enable()
        assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
    # Closing the socket is a lost connection: DMA unmapped, device reset.
    with server.connect() as second:
        assert second.read32(Region.BAR0, CSTS) == 0
        assert second.read32(Region.BAR0, CC) == 0
        ram.maps.clear()
        admin = map_ram(second, ram)
        admin.enable()
        ram.mem[DATA_OFFSET:DATA_OFFSET + PAGE] = bytes(PAGE)
        assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
        check_identify_data(ram, DATA_IOVA)
    server.assert_alive()


def test_connections_leak_no_fds(server: ServerProcess, ram: GuestRam) -> None:
    # One client at a time: once a new client is negotiated, the previous one is gone.
    with server.connect() as c:
        c.device_info()
        idle = server_fds(server)
    for _ in range(3):
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            with server.connect() as c:
                ram.maps.clear()
                admin = map_ram(c, ram)
                c.set_irq_eventfds(Irq.MSIX, 0, [efd])
                admin.enable()
                assert admin.identify_controller(DATA_IOVA).sc == GENERIC_SUCCESS
                # fds sent with a command that takes none are not kept either
                c.request(Command.DEVICE_GET_INFO, DEVICE_INFO.pack(DEVICE_INFO.size, 0, 0, 0),
                          [efd, efd])
        finally:
            os.close(efd)
    with server.connect() as c:
        c.device_info()
        assert server_fds(server) == idle


def test_once_exits_after_the_first_client_and_removes_its_socket() -> None:
    with running_server("--once") as server:
        with server.connect() as c:
            assert c.device_info().num_regions == 10
        assert server.wait() == 0, server.log()
        assert not server.socket.exists()


def test_sigterm_stops_the_server_with_a_client_attached() -> None:
    with running_server() as server:
        with server.connect() as c:
            c.device_info()
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait() == 0, server.log()
        assert not server.socket.exists()


def test_a_silent_client_does_not_lock_out_the_next_one() -> None:
    # The server gives a new client ATTACH_TIMEOUT (2 s) to send VERSION, then drops it.
    with running_server() as server:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            silent.settimeout(30)
            silent.connect(str(server.socket))
            with VfioUserClient.connect(server.socket, timeout=30) as c:
                c.negotiate()
                assert c.device_info().num_regions == 10
            assert silent.recv(1) == b""  # dropped: the server closed its end
        finally:
            silent.close()
        server.assert_alive()
        assert "sent no VERSION within" in server.log()


# -- garbage -------------------------------------------------------------------------------
def test_malformed_messages_get_error_replies_and_the_stream_stays_usable(
        server: ServerProcess, client: VfioUserClient) -> None:
    def expect_error(data: bytes, msg_id: int, cmd: int, fds: list[int] | None = None) -> None:
        client.send_raw(data, fds or [])
        with pytest.raises(VfioUserError) as exc:
            client.recv_reply(msg_id, cmd)
        assert exc.value.errno == errno.EINVAL

    # a header announcing an absurd size (no body follows)
    expect_error(pack_header(1, Command.DEVICE_GET_INFO, 0xFFFFFFFF), 1, Command.DEVICE_GET_INFO)
    # a size smaller than the header itself
    expect_error(pack_header(2, Command.DEVICE_GET_INFO, 4), 2, Command.DEVICE_GET_INFO)
    # unknown commands, with a body
    expect_error(pack_header(3, 0x7777, HEADER_SIZE + 8) + bytes(8), 3, 0x7777)
    expect_error(pack_header(4, 0, HEADER_SIZE + 8) + bytes(8), 4, 0)
    # a message flagged as a reply (rejected on its header: a body would not be skipped)
    expect_error(pack_header(5, Command.DEVICE_GET_INFO, HEADER_SIZE, flags=1), 5,
                 Command.DEVICE_GET_INFO)
    # no payload where one is needed
    expect_error(pack_header(10, Command.DEVICE_GET_INFO, HEADER_SIZE), 10,
                 Command.DEVICE_GET_INFO)
    # a body shorter than the header says
    expect_error(pack_header(6, Command.DEVICE_GET_INFO, HEADER_SIZE + 64) + bytes(8), 6,
                 Command.DEVICE_GET_INFO)
    # a region write whose data does not match its count
    expect_error(pack_header(7, Command.REGION_WRITE, HEADER_SIZE + REGION_ACCESS.size + 2)
                 + REGION_ACCESS.pack(0x14, Region.BAR0, 4) + bytes(2), 7, Command.REGION_WRITE)
    # a VERSION again, on an attached connection
    expect_error(pack_header(8, Command.VERSION, HEADER_SIZE + 4) + bytes(4), 8, Command.VERSION)

    # a posted (NO_REPLY) write the server rejects: no reply at all
    client.region_write(Region.BAR0, CC, b"\x01\x00\x00", posted=True)

    assert client.device_info().num_regions == 10
    assert client.read32(Region.BAR0, VS) == VS_VALUE
    assert client.read32(Region.BAR0, CC) == 0
    server.assert_alive()


def test_garbage_instead_of_version_closes_that_connection_only(server: ServerProcess) -> None:
    with server.connect(negotiate=False) as c:
        c.send_raw(b"\xff" * 64)
        with pytest.raises((ConnectionClosed, ConnectionResetError)):
            c.recv_message()
    with server.connect() as c:
        assert c.device_info().num_regions == 10
    server.assert_alive()


@pytest.mark.parametrize("before_version", [True, False], ids=["before-version", "attached"])
def test_truncated_header_then_close(server: ServerProcess, before_version: bool) -> None:
    with server.connect(negotiate=not before_version) as c:
        c.send_raw(pack_header(9, Command.DEVICE_GET_INFO, HEADER_SIZE + 16)[:7])
    with server.connect() as c:
        assert c.device_info().num_regions == 10
    server.assert_alive()


def test_connect_and_close_without_a_word(server: ServerProcess) -> None:
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(server.socket))
        s.close()
    with server.connect() as c:
        assert c.device_info().num_regions == 10
    server.assert_alive()
