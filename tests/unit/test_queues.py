"""Completion entries as the host sees them while the controller writes them."""

from __future__ import annotations

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.nvme.queues import CompletionQueue, store_cqe
from ocssd_vfu.spec.nvme import CompletionQueueEntry


class RecordingRing(list[int]):
    def __init__(self, dwords: int) -> None:
        super().__init__([0] * dwords)
        self.stores: list[tuple[int, int]] = []

    def __setitem__(self, index, value):  # type: ignore[no-untyped-def]
        self.stores.append((index, value))
        super().__setitem__(index, value)


def test_a_cqe_is_stored_dword_by_dword_with_the_phase_tag_last() -> None:
    ring = RecordingRing(8)
    store_cqe(ring, 4, 0xAABBCCDD, 0x11223344, 0x0001_0005, 0x0003_1234)
    # No zeroing first, no store twice: a host polling the tag never sees a partial entry.
    assert ring.stores == [(4, 0xAABBCCDD), (5, 0x11223344), (6, 0x0001_0005),
                           (7, 0x0003_1234)]


def test_posted_entries_parse_as_the_spec_declares_them() -> None:
    ram = bytearray(4096)
    memory = GuestMemory()
    memory.add(0x10000, ram)
    cq = CompletionQueue(1, 0x10000, 2, vector=0, interrupts_enabled=True)
    cq.post(memory, 0xAABBCCDD, 0x11223344, 5, 1, 0x1234, 0x0281)
    cq.post(memory, 7, 0, 6, 1, 0x0042, 0)
    # First pass, phase 1: status field (0x0281 << 1) | 1.
    assert bytes(ram[0:16]) == bytes.fromhex("ddccbbaa44332211" "05000100" "3412" "0305")
    assert bytes(ram[16:32]) == bytes.fromhex("07000000" "00000000" "06000100" "4200" "0100")
    cq.head = 1
    cq.post(memory, 8, 0, 7, 1, 0x0043, 0x4002)  # second pass, phase 0
    assert bytes(ram[0:16]) == bytes.fromhex("08000000" "00000000" "07000100" "4300" "0480")
    entry = CompletionQueueEntry.parse(bytes(ram[0:16]))
    assert (entry.dw0, entry.dw1, entry.sqhd, entry.sqid, entry.cid, entry.status) == \
        (8, 0, 7, 1, 0x0043, 0x4002 << 1)
