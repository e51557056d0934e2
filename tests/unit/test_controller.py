"""The controller state machine driven by a fake host (no QEMU, no libvfio-user)."""

from __future__ import annotations

import pytest

from ocssd_vfu.spec.nvme import IdentifyController, IdentifyNamespace, Register
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, IOSQ, RAM_BASE, FakeHost, prp_list

pytestmark = pytest.mark.usefixtures("both_io_paths")

PAGE = 4096


def enabled_host(**kwargs: int) -> FakeHost:
    host = FakeHost(**kwargs)
    host.enable()
    return host


def test_cap_and_version_as_linux_reads_them() -> None:
    host = FakeHost()
    cap = host.ctrl.mmio_read(Register.CAP, 4) | host.ctrl.mmio_read(Register.CAP + 4, 4) << 32
    assert cap & 0xFFFF == 1023           # MQES
    assert (cap >> 16) & 1 == 1           # CQR: contiguous queues required
    assert (cap >> 37) & 0xFF == 1        # CSS: NVM command set only
    assert (cap >> 32) & 0xF == 0         # DSTRD: 4-byte doorbells
    assert host.ctrl.mmio_read(Register.VS, 4) == 0x00010200


def test_enable_sets_ready_and_disable_resets() -> None:
    host = enabled_host()
    assert host.ctrl.mmio_read(Register.CSTS, 4) & 1 == 1
    host.ctrl.mmio_write(Register.CC, 4, 0)
    assert host.ctrl.mmio_read(Register.CSTS, 4) & 1 == 0
    assert host.ctrl.sqs == {} and host.ctrl.cqs == {}


def test_enable_without_admin_queue_is_fatal() -> None:
    host = FakeHost()
    host.ctrl.mmio_write(Register.CC, 4, 1 | 6 << 16 | 4 << 20)
    assert host.ctrl.mmio_read(Register.CSTS, 4) & 0x3 == 0x2  # CFS, not RDY


def test_shutdown_reports_occurring_then_complete() -> None:
    host = enabled_host()
    host.ctrl.mmio_write(Register.CC, 4, host.ctrl.regs.cc | 1 << 14)
    assert (host.ctrl.mmio_read(Register.CSTS, 4) >> 2) & 3 == 0b01
    (request,) = host.ctrl.take_sync_requests()
    assert request.shutdown
    host.ctrl.complete_deferred(request, Status.SUCCESS)
    assert (host.ctrl.mmio_read(Register.CSTS, 4) >> 2) & 3 == 0b10


def test_identify_controller_and_namespace() -> None:
    host = enabled_host()
    assert host.command(0, 0x06, prp1=DATA, cdw10=1)[5] == 0
    ident = IdentifyController.parse(host.ram_read(DATA, 4096))
    assert ident.vid == 0x1B36 and ident.mdts == 7 and ident.nn == 1
    assert ident.sqes == 0x66 and ident.cqes == 0x44 and ident.lpa & 0x4
    assert host.command(0, 0x06, nsid=1, prp1=DATA, cdw10=0)[5] == 0
    ns = IdentifyNamespace.parse(host.ram_read(DATA, 4096))
    assert ns.nsze == 256 and ns.flbas == 4 and ns.lbaf[4].lbads == 12


def test_identify_unknown_namespace_and_cns() -> None:
    host = enabled_host()
    assert host.command(0, 0x06, nsid=7, prp1=DATA, cdw10=0)[5] == Status.INVALID_NAMESPACE | DNR
    assert host.command(0, 0x06, prp1=DATA, cdw10=0x55)[5] == Status.INVALID_FIELD | DNR


def test_unknown_admin_and_io_opcodes() -> None:
    host = enabled_host()
    assert host.command(0, 0x7F)[5] == Status.INVALID_OPCODE | DNR
    host.create_io_queues()
    assert host.command(1, 0x7F, nsid=1)[5] == Status.INVALID_OPCODE | DNR


def test_create_queue_errors() -> None:
    host = enabled_host()
    assert host.command(0, 0x05, prp1=IOSQ, cdw10=0 | 15 << 16, cdw11=3)[5] == \
        Status.INVALID_QID | DNR
    assert host.command(0, 0x05, prp1=IOSQ, cdw10=1 | 0 << 16, cdw11=3)[5] == \
        Status.INVALID_QUEUE_SIZE | DNR
    assert host.command(0, 0x05, prp1=IOSQ, cdw10=1 | 15 << 16, cdw11=2)[5] == \
        Status.INVALID_FIELD | DNR  # not physically contiguous
    assert host.command(0, 0x05, prp1=IOSQ, cdw10=1 | 15 << 16, cdw11=3 | 999 << 16)[5] == \
        Status.INVALID_INTERRUPT_VECTOR | DNR
    assert host.command(0, 0x01, prp1=IOSQ, cdw10=1 | 15 << 16, cdw11=1 | 5 << 16)[5] == \
        Status.INVALID_CQ | DNR
    host.create_io_queues()
    assert host.command(0, 0x04, cdw10=1)[5] == Status.INVALID_QUEUE_DELETION | DNR
    assert host.command(0, 0x00, cdw10=1)[5] == 0
    assert host.command(0, 0x04, cdw10=1)[5] == 0


def test_write_then_read_4k_through_prp1() -> None:
    host = enabled_host()
    host.create_io_queues()
    payload = bytes(range(256)) * 16
    host.ram_write(DATA, payload)
    done = host.command(1, 0x01, nsid=1, prp1=DATA, cdw10=5, cdw12=0)
    assert done[5] == 0 and done[4] == 1
    assert host.storage[5 * PAGE:6 * PAGE] == payload
    assert host.interrupts[-1] == 1
    done = host.command(1, 0x02, nsid=1, prp1=DATA + 0x8000, cdw10=5, cdw12=0)
    assert done[5] == 0
    assert host.ram_read(DATA + 0x8000, PAGE) == payload


def test_prp_offset_and_prp2_page() -> None:
    host = enabled_host()
    host.create_io_queues()
    host.storage[0:2 * PAGE] = b"A" * PAGE + b"B" * PAGE
    # 8 KiB starting 0x200 into a page: 3 pieces, so PRP2 is a list.
    host.ram_write(DATA, prp_list([DATA + 0x2000, DATA + 0x3000]))
    done = host.command(1, 0x02, nsid=1, prp1=DATA + 0x1200, prp2=DATA, cdw10=0, cdw12=1)
    assert done[5] == 0
    got = host.ram_read(DATA + 0x1200, PAGE - 0x200) + host.ram_read(DATA + 0x2000, PAGE) \
        + host.ram_read(DATA + 0x3000, 0x200)
    assert got == b"A" * PAGE + b"B" * PAGE


def test_chained_prp_list() -> None:
    host = FakeHost(nlbas=1024)
    host.ctrl.config.mdts = 10  # the controller takes MDTS (and MPS) at enable
    host.enable()
    host.create_io_queues()
    pages = 520  # more than one 512-entry list page
    data_base = DATA + 0x10000
    entries = [data_base + i * PAGE for i in range(1, pages)]
    list1, list2 = DATA, DATA + PAGE
    host.ram_write(list1, prp_list(entries[:511] + [list2]))
    host.ram_write(list2, prp_list(entries[511:]))
    host.storage[:pages * PAGE] = bytes(i % 251 for i in range(pages * PAGE))
    done = host.command(1, 0x02, nsid=1, prp1=data_base, prp2=list1, cdw10=0, cdw12=pages - 1)
    assert done[5] == 0
    assert host.ram_read(data_base, pages * PAGE) == bytes(host.storage[:pages * PAGE])


def test_prp_errors() -> None:
    host = enabled_host()
    host.create_io_queues()
    assert host.command(1, 0x02, nsid=1, prp1=DATA + 2, cdw12=0)[5] == \
        Status.INVALID_PRP_OFFSET | DNR
    assert host.command(1, 0x02, nsid=1, prp1=DATA, prp2=DATA + 0x10, cdw12=0)[5] == \
        Status.SUCCESS  # one whole page: PRP2 is not used
    assert host.command(1, 0x02, nsid=1, prp1=DATA + 0x800, prp2=DATA + 0x10, cdw12=0)[5] == \
        Status.INVALID_PRP_OFFSET | DNR  # PRP2 is the second page and must be aligned
    assert host.command(1, 0x02, nsid=1, prp1=0xDEAD0000, cdw12=0)[5] == \
        Status.DATA_TRANSFER_ERROR


def test_lba_range_mdts_and_namespace_checks() -> None:
    host = enabled_host()
    host.create_io_queues()
    assert host.command(1, 0x02, nsid=1, prp1=DATA, cdw10=256)[5] == Status.LBA_OUT_OF_RANGE | DNR
    assert host.command(1, 0x02, nsid=9, prp1=DATA)[5] == Status.INVALID_NAMESPACE | DNR
    assert host.command(1, 0x02, nsid=1, prp1=DATA, cdw12=128)[5] == Status.INVALID_FIELD | DNR


def test_queue_wrap_flips_phase() -> None:
    host = enabled_host(queue_size=4)
    host.create_io_queues()
    for i in range(10):  # several wraps of a 4-entry queue
        done = host.command(1, 0x02, cid=100 + i, nsid=1, prp1=DATA)
        assert done[4] == 100 + i and done[5] == 0


def test_flush_completes_after_the_sync() -> None:
    host = enabled_host()
    host.create_io_queues()
    host.submit(1, 0x00, cid=9, nsid=1)
    host.ctrl.process()
    assert host.completions(1) == []
    (request,) = host.ctrl.take_sync_requests()
    host.ctrl.complete_deferred(request, Status.SUCCESS)
    (done,) = host.completions(1)
    assert done[4] == 9 and done[5] == 0


def test_number_of_queues_feature() -> None:
    host = enabled_host()
    done = host.command(0, 0x09, cdw10=0x07, cdw11=200 | 200 << 16)
    assert done[5] == 0 and done[0] == 63 | 63 << 16
    assert host.command(0, 0x09, cdw10=0x07, cdw11=0xFFFF)[5] == Status.INVALID_FIELD | DNR


def test_get_log_page_offset() -> None:
    host = enabled_host()
    # Firmware slot log: 8 bytes at offset 8 hold the revision.
    done = host.command(0, 0x02, prp1=DATA, cdw10=0x03 | 1 << 16, cdw12=8)
    assert done[5] == 0
    assert host.ram_read(DATA, 8) == b"0.1     "
    assert host.command(0, 0x02, prp1=DATA, cdw10=0x03, cdw12=2)[5] == Status.INVALID_FIELD | DNR
    assert host.command(0, 0x02, prp1=DATA, cdw10=0x42)[5] == Status.INVALID_LOG_PAGE | DNR


def test_full_cq_stalls_the_sq_until_the_host_frees_entries() -> None:
    host = enabled_host(queue_size=4)  # 3 usable entries per queue
    host.create_io_queues()
    for cid in (1, 2, 3):
        host.submit(1, 0x02, cid=cid, nsid=1, prp1=DATA)
    host.ctrl.process()
    host.submit(1, 0x02, cid=4, nsid=1, prp1=DATA)
    host.ctrl.process()  # the CQ is full: command 4 waits in the SQ
    assert [c[4] for c in host.completions(1)] == [1, 2, 3]  # rings the CQ head doorbell
    host.ctrl.process()
    assert [c[4] for c in host.completions(1)] == [4]


def test_a_reset_drops_a_flush_completing_late() -> None:
    host = enabled_host()
    host.create_io_queues()
    host.submit(1, 0x00, cid=9, nsid=1)
    host.ctrl.process()
    (request,) = host.ctrl.take_sync_requests()
    host.ctrl.mmio_write(Register.CC, 4, 0)  # controller reset while the sync runs
    host.restart()
    host.create_io_queues()  # the same queue ids exist again
    host.ctrl.complete_deferred(request, Status.SUCCESS)
    assert host.completions(1) == []


def test_guest_errors_are_counted_per_category() -> None:
    host = FakeHost()
    host.enable()
    for _ in range(3):
        host.ctrl.mmio_write(0x1000 + 8 * 9, 4, 1)      # SQ 9 does not exist
    host.ctrl.mmio_write(0x1000 + 4, 4, 999)            # admin CQ head beyond its size
    assert host.ctrl.guest_errors == {"sq_doorbell": 3, "cq_doorbell": 1}


def test_fused_commands_and_admin_sgls_are_refused() -> None:
    # Admin commands over PCIe use PRPs only (NVMe 1.4 Figure 105, PSDT).
    host = enabled_host()
    for flags in (0x01, 0x02, 0x40, 0x80, 0xC0):  # FUSE first/second, PSDT SGL
        assert host.command(0, 0x06, prp1=DATA, cdw10=1, flags=flags)[5] == \
            Status.INVALID_FIELD | DNR
    host.create_io_queues()
    for flags in (0x01, 0xC0):  # FUSE, PSDT 11b (reserved)
        assert host.command(1, 0x02, nsid=1, prp1=DATA, flags=flags)[5] == \
            Status.INVALID_FIELD | DNR
    assert host.command(1, 0x02, nsid=1, prp1=DATA, flags=0x3C)[5] == 0  # reserved bits


def test_create_queue_ring_must_be_aligned_and_mapped() -> None:
    host = enabled_host()
    assert host.command(0, 0x05, prp1=IOSQ + 0x200, cdw10=1 | 15 << 16, cdw11=3)[5] == \
        Status.INVALID_PRP_OFFSET | DNR
    assert host.command(0, 0x05, prp1=0xDEAD0000, cdw10=1 | 15 << 16, cdw11=3)[5] == \
        Status.INVALID_FIELD | DNR
    host.create_io_queues()
    assert host.command(0, 0x01, prp1=0xDEAD0000, cdw10=2 | 15 << 16, cdw11=1 | 1 << 16)[5] \
        == Status.INVALID_FIELD | DNR


def test_page_size_and_transfer_limit_are_taken_at_enable() -> None:
    host = enabled_host()
    assert (host.ctrl.page_size, host.ctrl.max_transfer) == (PAGE, PAGE << 7)
    host.ctrl.mmio_write(Register.CC, 4, host.ctrl.regs.cc | 1 << 7)  # MPS 8 KiB while enabled
    host.ctrl.config.mdts = 2
    assert (host.ctrl.page_size, host.ctrl.max_transfer) == (PAGE, PAGE << 7)
    host.create_io_queues()
    # One LBA from mid-page: PRP2 is the second 4 KiB page, not part of an 8 KiB one.
    assert host.command(1, 0x02, nsid=1, prp1=DATA + 0x800, prp2=DATA + 0x2000)[5] == 0
    host.ram_write(DATA, prp_list([DATA + (2 + i) * PAGE for i in range(127)]))
    assert host.command(1, 0x02, nsid=1, prp1=DATA + PAGE, prp2=DATA, cdw12=127)[5] == 0


def test_queue_rings_follow_the_guest_memory_map() -> None:
    host = enabled_host()
    host.create_io_queues()
    host.storage[:PAGE] = b"\x11" * PAGE
    assert host.command(1, 0x02, nsid=1, prp1=DATA)[5] == 0
    # The guest memory is remapped elsewhere in this process (same guest addresses):
    # the queues must read and write the new mapping, not a view of the old one.
    moved = bytearray(host.ram)
    host.memory.remove(RAM_BASE)
    host.memory.add(RAM_BASE, moved)
    host.ram = moved
    host.storage[:PAGE] = b"\x22" * PAGE
    assert host.command(1, 0x02, nsid=1, prp1=DATA)[5] == 0
    assert host.ram_read(DATA, PAGE) == b"\x22" * PAGE


def test_an_unmapped_or_read_only_ring_is_a_fatal_status() -> None:
    host = enabled_host()
    host.create_io_queues()
    host.memory.remove(RAM_BASE)  # the SQ is gone under the controller
    host.ctrl.mmio_write(Register.DOORBELLS + 8, 4, 1)
    host.ctrl.process()
    assert host.ctrl.mmio_read(Register.CSTS, 4) & 0x2  # CFS
    assert host.ctrl.guest_errors["sq_unmapped"] == 1

    host = enabled_host()
    host.create_io_queues()
    host.memory.remove(RAM_BASE)  # now mapped read-only: no CQE can be posted
    host.memory.add(RAM_BASE, memoryview(host.ram).toreadonly(), writable=False)
    host.submit(1, 0x00, nsid=1)
    host.ctrl.process()
    (request,) = host.ctrl.take_sync_requests()
    host.ctrl.complete_deferred(request, Status.SUCCESS)
    assert host.ctrl.mmio_read(Register.CSTS, 4) & 0x2
    assert host.ctrl.guest_errors["cq_unmapped"] == 1
