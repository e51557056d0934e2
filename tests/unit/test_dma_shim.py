"""The C DMA shim (native/dma.c, behind prp.transfer) against a Python walk.

The reference is dma.reference.prp_ranges (the rules of prp.py's docstring in Python)
+ prp.guest_views + a segment-by-segment copy; for any region layout, PRP
pointers, list contents and device segmentation, the shim must give the same
status, or move the same bytes, and touch nothing on failure.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocssd_vfu.dma.memory import GuestMemory, TransferError
from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.dma.prp import transfer
from ocssd_vfu.dma.reference import prp_ranges
from ocssd_vfu.dma.reference import prp_reference_transfer as reference_transfer
from ocssd_vfu.spec.status import DNR, Status

IPO = Status.INVALID_PRP_OFFSET | DNR
DTE = Status.DATA_TRANSFER_ERROR
PAGE = 0x1000


Transfer = Callable[[GuestMemory, int, int, int, list[memoryview], bool], None]


def outcome(move: Transfer, memory: GuestMemory, prp1: int, prp2: int, page_size: int,
            device: list[memoryview], to_guest: bool) -> int:
    try:
        move(memory, prp1, prp2, page_size, device, to_guest)
    except TransferError as err:
        return err.status
    return 0


# -- literal examples -------------------------------------------------------------------------

def test_status_numbers_agree_with_the_enum() -> None:
    assert lib.OCSSD_STATUS_INVALID_PRP_OFFSET == Status.INVALID_PRP_OFFSET
    assert lib.OCSSD_STATUS_DATA_TRANSFER_ERROR == Status.DATA_TRANSFER_ERROR
    assert lib.OCSSD_STATUS_DNR == DNR


def one_region(base: int = 0x10000, size: int = 0x10000) -> tuple[GuestMemory, bytearray]:
    memory, ram = GuestMemory(), bytearray(size)
    memory.add(base, ram)
    return memory, ram


def test_prp1_offset_and_a_list_land_bytes_at_the_literal_addresses() -> None:
    # 8 KiB from PRP1 = 0x11200: 0xe00 bytes there, then pages 0x15000 and 0x13000
    # (0x1000 and 0x200 bytes) from the list at 0x1a008.
    memory, ram = one_region()
    struct.pack_into("<2Q", ram, 0xA008, 0x15000, 0x13000)
    data = random.Random(1).randbytes(0x2000)
    transfer(memory, 0x11200, 0x1A008, PAGE, [memoryview(data)], to_guest=True)
    assert ram[0x1200:0x2000] == data[:0xE00]
    assert ram[0x5000:0x6000] == data[0xE00:0x1E00]
    assert ram[0x3000:0x3200] == data[0x1E00:]
    assert ram[0x1000:0x1200] == bytes(0x200) and ram[0x3200:0x4000] == bytes(0xE00)
    back = bytearray(0x2000)
    transfer(memory, 0x11200, 0x1A008, PAGE, [memoryview(back)[:0x123], memoryview(back)[0x123:]],
             to_guest=False)
    assert back == data


def test_one_page_boundary_uses_prp2_as_a_page() -> None:
    memory, ram = one_region()
    transfer(memory, 0x11200, 0x14000, PAGE, [memoryview(b"\xaa" * PAGE)], to_guest=True)
    assert ram[0x1200:0x2000] == b"\xaa" * 0xE00 and ram[0x4000:0x4200] == b"\xaa" * 0x200
    assert ram.count(0xAA) == PAGE
    with pytest.raises(TransferError) as err:  # PRP2 must then be page aligned
        transfer(memory, 0x11200, 0x14004, PAGE, [memoryview(bytearray(PAGE))], to_guest=True)
    assert err.value.status == IPO


def test_chained_list_from_a_list_pointer_with_two_slots_left() -> None:
    # The list at 0x1aff0 holds one entry and a chain pointer to 0x1b000 (two more).
    memory, ram = one_region()
    struct.pack_into("<2Q", ram, 0xAFF0, 0x12000, 0x1B000)
    struct.pack_into("<2Q", ram, 0xB000, 0x13000, 0x14000)
    data = bytes(range(256)) * 64
    transfer(memory, 0x11000, 0x1AFF0, PAGE, [memoryview(data)], to_guest=True)
    assert bytes(ram[0x1000:0x5000]) == data


@pytest.mark.parametrize(("chain", "status"), [(0x1B004, 0), (0x1B002, IPO)])
def test_chain_pointers_may_have_a_dword_offset(chain: int, status: int) -> None:
    memory, ram = one_region()
    struct.pack_into("<2Q", ram, 0xAFF0, 0x12000, chain)
    struct.pack_into("<2Q", ram, 0xB004, 0x13000, 0x14000)
    for move in (reference_transfer, transfer):
        device = [memoryview(b"\x77" * 4 * PAGE)]
        assert outcome(move, memory, 0x11000, 0x1AFF0, PAGE, device, True) == status
    assert ram[0x1000:0x5000] == (bytes(4 * PAGE) if status else b"\x77" * 4 * PAGE)


@pytest.mark.parametrize("list_offset", [0xFF8, 0xFFC])
def test_a_list_page_without_room_for_data_is_an_invalid_offset(list_offset: int) -> None:
    # A chain pointer alone (pointing to itself) would loop forever; no slot at all
    # would have nothing to read.
    memory, ram = one_region()
    struct.pack_into("<Q", ram, 0xAFF8, 0x1AFF8)
    for move in (reference_transfer, transfer):
        device = [memoryview(bytearray(3 * PAGE))]
        assert outcome(move, memory, 0x11000, 0x1A000 + list_offset, PAGE, device, True) == IPO


def test_read_only_region_refuses_controller_to_host_data() -> None:
    memory, ram = GuestMemory(), bytes(2 * PAGE)
    memory.add(0x10000, memoryview(ram), writable=False)
    for move in (reference_transfer, transfer):
        assert outcome(move, memory, 0x10000, 0, PAGE, [memoryview(b"x" * 8)], True) == DTE
    device = bytearray(b"y" * PAGE)
    transfer(memory, 0x10000, 0, PAGE, [memoryview(device)], to_guest=False)
    assert device == bytes(PAGE)
    with pytest.raises(BufferError):  # a read-only buffer cannot be mapped writable
        GuestMemory().add(0, b"abc")  # type: ignore[arg-type]


def test_removed_regions_are_gone_for_the_shim() -> None:
    memory, ram = one_region()
    memory.add(0x40000, bytearray(PAGE))
    memory.remove(0x10000)
    assert outcome(transfer, memory, 0x10000, 0, PAGE, [memoryview(b"z" * 16)], True) == DTE
    transfer(memory, 0x40000, 0, PAGE, [memoryview(b"z" * 16)], to_guest=True)
    memory.remove(0x40000)
    assert len(memory.dma_table) == 0
    assert outcome(transfer, memory, 0x40000, 0, PAGE, [memoryview(b"z" * 16)], True) == DTE
    ram.append(0)  # the buffer is no longer exported once its region is removed


def test_the_table_holds_the_mapping_address_itself() -> None:
    # device.py maps libvfio-user's vaddr as memoryview(ffi.buffer(...)): the C side
    # must get that very pointer.
    backing = ffi.new("uint8_t[]", 3 * PAGE)
    vaddr = ffi.cast("uint8_t *", backing) + PAGE
    memory = GuestMemory()
    memory.add(0x80000, memoryview(ffi.buffer(vaddr, PAGE)), writable=True)
    entry = memory.dma_table[0]
    assert (entry.start, entry.length, entry.writable) == (0x80000, PAGE, 1)
    assert int(ffi.cast("uintptr_t", entry.host)) == int(ffi.cast("uintptr_t", vaddr))
    transfer(memory, 0x80000, 0, PAGE, [memoryview(b"\x5a" * PAGE)], to_guest=True)
    assert ffi.buffer(backing)[:] == bytes(PAGE) + b"\x5a" * PAGE + bytes(PAGE)


def test_zero_length_moves_nothing_and_caller_errors_are_not_statuses() -> None:
    memory, _ = one_region()
    transfer(memory, 0x3, 0x3, PAGE, [], to_guest=True)  # prp_ranges: nothing to check
    assert prp_ranges(memory, 0x3, 0x3, 0, PAGE) == []
    with pytest.raises(ValueError):
        transfer(memory, 0x10000, 0, 3000, [memoryview(bytearray(8))], to_guest=True)
    segment = ffi.new("struct ocssd_dma_segment[]", 1)
    segment[0].len = 3 * PAGE
    scratch = ffi.new("struct ocssd_dma_range[]", 4)
    assert lib.ocssd_prp_max_ranges(3 * PAGE, PAGE) == 5
    assert lib.ocssd_prp_max_ranges(PAGE, 0) == 0
    assert lib.ocssd_prp_transfer(memory.dma_table, 1, 0x10000, 0, PAGE, segment, 1, 1,
                                  scratch, 4) == lib.OCSSD_DMA_ESCRATCH
    assert lib.ocssd_prp_transfer(memory.dma_table, 1, 0x10000, 0, 0, segment, 1, 1,
                                  scratch, 4) == lib.OCSSD_DMA_EINVAL


def test_scratch_and_segment_arrays_grow_for_long_transfers() -> None:
    # 64 KiB at 512-byte pages: 130 guest ranges, in 9 device segments, through
    # arrays that start shorter; then a short transfer through the grown ones.
    page, pages = 512, 128
    memory, ram = one_region(size=0x40000)
    entries = [0x20000 + i * page for i in range(1, pages + 1)]
    for i in range(0, len(entries), 63):  # 63 entries and a chain pointer per list page
        chunk = entries[i:i + 63]
        last = i + 63 >= len(entries)
        chain = [] if last else [0x10000 + (i // 63 + 1) * page]
        struct.pack_into(f"<{len(chunk) + len(chain)}Q", ram, (i // 63) * page,
                         *chunk, *chain)
    data = random.Random(2).randbytes(pages * page + 0x100)
    cuts = [0, 1, 100, 511, 512, 4000, 9000, 30000, 50000, len(data)]
    view = memoryview(data)
    transfer(memory, 0x20000 + page - 0x100, 0x10000, page,
             [view[a:b] for a, b in zip(cuts, cuts[1:], strict=False)], to_guest=True)
    assert ram[0x10000 + page - 0x100:0x10000 + page] == data[:0x100]
    assert ram[0x10000 + page:0x10000 + (pages + 1) * page] == data[0x100:]
    assert len(memory.dma_scratch) >= pages + 2 and len(memory.dma_segments) >= 9
    back = bytearray(2 * page)
    transfer(memory, 0x20000 + page, 0x20000 + 2 * page, page, [memoryview(back)], False)
    assert back == data[0x100:0x100 + 2 * page]


# -- agreement with the reference ---------------------------------------------------------

@dataclass
class Case:
    page_size: int
    base: int
    ram: bytes
    regions: list[tuple[int, int, bool]]  # (offset, length, writable) into ram
    prp1: int
    prp2: int
    device: bytes
    cuts: list[int]
    to_guest: bool
    list_pages: int  # how many the generator laid out
    clean: bool

    def build(self) -> tuple[GuestMemory, bytearray, bytearray, list[memoryview]]:
        ram, device = bytearray(self.ram), bytearray(self.device)
        memory = GuestMemory()
        for offset, length, writable in self.regions:
            view = memoryview(ram)[offset:offset + length]
            memory.add(self.base + offset, view if writable else view.toreadonly(), writable)
        bounds = [0, *self.cuts, len(device)]
        segments = [memoryview(device)[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        return memory, ram, device, segments

    def unmap(self, memory: GuestMemory) -> None:
        for offset, _, _ in self.regions:
            memory.remove(self.base + offset)


@st.composite
def addresses(draw: st.DrawFn, base: int, size: int, page_size: int, page_aligned: bool,
              clean: bool) -> int:
    """Inside the guest space and aligned as a valid PRP is; unless clean, sometimes not."""
    kinds = ["aligned"] if clean else ["aligned"] * 6 + ["bit", "dword", "any", "outside", "top"]
    kind = draw(st.sampled_from(kinds))
    if kind == "outside":
        return draw(st.integers(0, (1 << 64) - 1))
    if kind == "top":
        return (1 << 64) - draw(st.integers(1, 2 * page_size))
    offset = draw(st.integers(0, size - 1) if clean else st.integers(-page_size, size + page_size))
    addr = (base + offset) % (1 << 64)
    if kind == "aligned":
        return addr & ~(page_size - 1 if page_aligned else 3)
    if kind == "bit":  # aligned but for one offset bit
        return (addr & ~(page_size - 1)) | 1 << draw(st.integers(0, page_size.bit_length() - 2))
    if kind == "dword":
        return addr & ~3
    return addr


def list_pointer(draw: st.DrawFn, base: int, size: int, page_size: int, clean: bool) -> int:
    addr = draw(addresses(base, size, page_size, page_aligned=False, clean=clean))
    if clean and page_size - (addr & (page_size - 1)) < 16:
        addr &= ~(page_size - 1)  # room for an entry and a chain pointer
    return addr


def write_list(ram: bytearray, base: int, addr: int, entries: list[int]) -> None:
    offset = addr - base
    for i, entry in enumerate(entries):
        if 0 <= offset + 8 * i <= len(ram) - 8:
            struct.pack_into("<Q", ram, offset + 8 * i, entry)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    page_size = draw(st.sampled_from([16, 32, 64, 512, 4096]))
    pages = draw(st.integers(4, 24))
    size = pages * page_size
    base = draw(st.sampled_from([0, 0x100000, (1 << 64) - size]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    ram = bytearray(rng.randbytes(size))
    clean = draw(st.booleans())  # valid pointers and few holes: walks that succeed

    # Regions: the space cut at random points, each piece mapped rw, ro, or a hole.
    # Clean layouts cut at page boundaries, which no PRP range straddles.
    cut = st.integers(1, pages - 1).map(lambda page: page * page_size) if clean \
        else st.integers(1, size - 1)
    cuts = sorted(set(draw(st.lists(cut, max_size=5))))
    regions = []
    for start, end in zip([0, *cuts], [*cuts, size], strict=True):
        kind = draw(st.sampled_from(["rw"] * (12 if clean else 3) + ["ro", "hole"]))
        if kind != "hole":
            regions.append((start, end - start, kind == "rw"))

    # Uniform page counts: hypothesis favours small integers, and lists need >2 pages.
    length = draw(st.sampled_from(range(13))) * page_size + draw(st.integers(0, page_size - 1))
    length = max(length, 1)
    prp1 = draw(addresses(base, size, page_size, page_aligned=False, clean=clean))
    first = min(length, page_size - (prp1 & (page_size - 1)))
    remaining = length - first
    if remaining > page_size:
        prp2 = list_pointer(draw, base, size, page_size, clean)
    else:
        prp2 = draw(addresses(base, size, page_size, page_aligned=True, clean=clean))
    # Lay out the list pages the walk will read (chained as needed).
    list_addr, list_pages = prp2, 0
    while remaining > page_size and list_addr - base < size:
        list_pages += 1
        slots = (page_size - (list_addr & (page_size - 1))) // 8
        needed = -(-remaining // page_size)
        count = needed if needed <= slots else max(slots - 1, 0)
        data = [draw(addresses(base, size, page_size, page_aligned=True, clean=clean))
                for _ in range(count)]
        remaining -= len(data) * page_size
        chain = list_pointer(draw, base, size, page_size, clean) if needed > slots else None
        write_list(ram, base, list_addr, data + ([chain] if chain is not None else []))
        if chain is None or not data:
            break
        list_addr = chain

    device = rng.randbytes(length)
    seg_cuts = sorted(draw(st.lists(st.integers(0, length), max_size=4)))
    return Case(page_size, base, bytes(ram), regions, prp1, prp2, device, seg_cuts,
                draw(st.booleans()), list_pages, clean)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_shim_agrees_with_the_python_walk(case: Case) -> None:
    results = []
    for move in (reference_transfer, transfer):
        memory, ram, device, segments = case.build()
        status = outcome(move, memory, case.prp1, case.prp2, case.page_size, segments,
                         case.to_guest)
        results.append((status, bytes(ram), bytes(device)))
        case.unmap(memory)
    assert results[0] == results[1]
    status, ram_after, device_after = results[1]
    event(f"status {status:#x}, {min(case.list_pages, 3)} list pages, clean {case.clean}")
    assert status in (0, IPO, DTE)
    if status:
        assert (ram_after, device_after) == (case.ram, case.device)
    elif case.to_guest:
        assert device_after == case.device
    else:
        assert ram_after == case.ram
