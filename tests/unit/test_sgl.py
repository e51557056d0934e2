"""SGLs (NVMe 1.4 4.4): literal examples through the controller, every SGL status,
metadata SGLs of OCSSD commands, and the C walk (native/dma.c) against a Python
reference walk for random SGLs.

Descriptor layout (Figure 110): bytes 0-7 address, 8-11 length, 15 identifier
(type in bits 7:4: 0h Data Block, 1h Bit Bucket, 2h Segment, 3h Last Segment;
subtype in bits 3:0: 0h Address, 1h Offset).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocssd_vfu.dma.dptr import sgl_transfer
from ocssd_vfu.dma.memory import GuestMemory, TransferError
from ocssd_vfu.dma.native import lib
from ocssd_vfu.dma.reference import sgl_reference_transfer as reference_transfer
from ocssd_vfu.spec.nvme import IdentifyController, SglDescriptor
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, FakeHost
from tests.unit.test_ocssd import MPTR, VECTOR_READ, VECTOR_WRITE, Device, lba

pytestmark = pytest.mark.usefixtures("both_io_paths")

DATA_BLOCK, BIT_BUCKET, SEGMENT, LAST_SEGMENT = 0x0, 0x1, 0x2, 0x3
PSDT_SGL, PSDT_SGL_MPTR_SGL = 0x40, 0x80
READ, WRITE = 0x02, 0x01
SEGMENTS = DATA + 0x80000   # SGL segments live here; data buffers at DATA


def descriptor(addr: int, length: int, kind: int, subtype: int = 0) -> bytes:
    return SglDescriptor.build(dict(address=addr, length=length,
                                    sgl_identifier=kind << 4 | subtype))


def in_sqe(addr: int, length: int, kind: int, subtype: int = 0) -> dict[str, int]:
    """An SQE's DPTR holding one descriptor (PRP1 = its bytes 0-7, PRP2 = 8-15)."""
    return {"prp1": addr, "prp2": length | (kind << 4 | subtype) << 56}


def io_host() -> FakeHost:
    host = FakeHost()
    host.enable()
    host.create_io_queues()
    return host


def rw(host: FakeHost, opc: int, nlb: int, pointer: dict[str, int], flags: int = PSDT_SGL) -> int:
    return host.command(1, opc, nsid=1, cdw12=nlb - 1, flags=flags, **pointer)[5]


def test_the_descriptor_declaration_matches_figure_110() -> None:
    raw = descriptor(0x1122334455667788, 0x1000, LAST_SEGMENT)
    assert SglDescriptor.sizeof() == 16
    assert raw == bytes.fromhex("8877665544332211" "00100000" "000000" "30")


def test_status_numbers_agree_with_the_enum() -> None:
    assert lib.OCSSD_STATUS_INVALID_SGL_SEGMENT_DESCRIPTOR == 0x0D
    assert lib.OCSSD_STATUS_INVALID_NUMBER_OF_SGL_DESCRIPTORS == 0x0E
    assert lib.OCSSD_STATUS_DATA_SGL_LENGTH_INVALID == 0x0F
    assert lib.OCSSD_STATUS_SGL_DESCRIPTOR_TYPE_INVALID == 0x11
    assert lib.OCSSD_STATUS_SGL_OFFSET_INVALID == 0x16
    assert Status.INVALID_SGL_SEGMENT_DESCRIPTOR == 0x0D
    assert Status.METADATA_SGL_LENGTH_INVALID == 0x10
    assert Status.SGL_OFFSET_INVALID == 0x16


def test_identify_advertises_sgls_and_they_can_be_switched_off() -> None:
    host = io_host()
    assert host.command(0, 0x06, prp1=DATA, cdw10=1)[5] == 0
    # SGLs without alignment (01b), Bit Bucket (16), byte-aligned MPTR (17), MPTR SGL (19).
    assert IdentifyController.parse(host.ram_read(DATA, 4096)).sgls == 0x000B0001
    host.ctrl.config.sgl = False
    assert host.command(0, 0x06, prp1=DATA, cdw10=1)[5] == 0
    assert IdentifyController.parse(host.ram_read(DATA, 4096)).sgls == 0
    assert rw(host, READ, 1, in_sqe(DATA, 4096, DATA_BLOCK)) == Status.INVALID_FIELD | DNR


def test_psdt_11b_is_reserved_for_every_io_command() -> None:
    host = io_host()
    assert rw(host, READ, 1, in_sqe(DATA, 4096, DATA_BLOCK), flags=0xC0) == \
        Status.INVALID_FIELD | DNR
    assert host.command(1, 0x00, nsid=1, flags=0xC0)[5] == Status.INVALID_FIELD | DNR  # Flush


def test_one_data_block_in_the_command() -> None:
    host = io_host()
    host.ram_write(DATA + 0x123, b"\x5a" * 8192)
    assert rw(host, WRITE, 2, in_sqe(DATA + 0x123, 8192, DATA_BLOCK)) == 0
    assert host.storage[:8192] == b"\x5a" * 8192


def test_linux_style_chain_segment_then_last_segment() -> None:
    # The command points to a Segment of 3 descriptors: two data blocks and a Last
    # Segment descriptor to 2 more data blocks. 16 KiB land in 4 pieces.
    host = io_host()
    pieces = [(DATA + 0x3000, 0x1000), (DATA + 0x100, 0x800), (DATA + 0x9000, 0x1800),
              (DATA + 0x20000, 0x1000)]
    host.ram_write(SEGMENTS, descriptor(*pieces[0], DATA_BLOCK) + descriptor(*pieces[1], DATA_BLOCK)
                   + descriptor(SEGMENTS + 0x1000, 32, LAST_SEGMENT))
    host.ram_write(SEGMENTS + 0x1000, descriptor(*pieces[2], DATA_BLOCK)
                   + descriptor(*pieces[3], DATA_BLOCK))
    host.storage[:0x4000] = bytes(range(256)) * 64
    assert rw(host, READ, 4, in_sqe(SEGMENTS, 48, SEGMENT)) == 0
    assert host.ram_read(DATA + 0x3000, 0x1000) == host.storage[:0x1000]
    assert host.ram_read(DATA + 0x100, 0x800) == host.storage[0x1000:0x1800]
    assert host.ram_read(DATA + 0x9000, 0x1800) == host.storage[0x1800:0x3000]
    assert host.ram_read(DATA + 0x20000, 0x1000) == host.storage[0x3000:0x4000]


def test_bit_bucket_discards_read_data_and_is_ignored_for_writes() -> None:
    host = io_host()
    host.storage[:0x2000] = b"\x11" * 0x1000 + b"\x22" * 0x1000
    host.ram_write(SEGMENTS, descriptor(0, 0x1000, BIT_BUCKET)
                   + descriptor(DATA, 0x1000, DATA_BLOCK))
    assert rw(host, READ, 2, in_sqe(SEGMENTS, 32, LAST_SEGMENT)) == 0
    assert host.ram_read(DATA, 0x1000) == b"\x22" * 0x1000
    # Host to controller the bit bucket describes nothing: 4 KiB from DATA to LBA 0.
    assert rw(host, WRITE, 1, in_sqe(SEGMENTS, 32, LAST_SEGMENT)) == 0
    assert host.storage[:0x1000] == b"\x22" * 0x1000


def test_sgl_errors_have_their_statuses_with_dnr() -> None:
    host = io_host()
    seg = in_sqe(SEGMENTS, 32, LAST_SEGMENT)
    cases: list[tuple[bytes, dict[str, int], int]] = [
        # Keyed Data Block (4h) is for fabrics; Fh is vendor specific.
        (b"", in_sqe(DATA, 4096, 0x4), Status.SGL_DESCRIPTOR_TYPE_INVALID),
        (descriptor(DATA, 4096, 0xF) + descriptor(DATA, 0, DATA_BLOCK), seg,
         Status.SGL_DESCRIPTOR_TYPE_INVALID),
        (b"", in_sqe(DATA, 4096, DATA_BLOCK, subtype=1), Status.SGL_OFFSET_INVALID),
        (b"", in_sqe(SEGMENTS, 32, LAST_SEGMENT, subtype=1), Status.SGL_OFFSET_INVALID),
        (b"", in_sqe(DATA, 4096, DATA_BLOCK, subtype=2), Status.SGL_DESCRIPTOR_TYPE_INVALID),
        # Segment lengths: zero, or not a multiple of 16.
        (b"", in_sqe(SEGMENTS, 0, SEGMENT), Status.INVALID_SGL_SEGMENT_DESCRIPTOR),
        (b"", in_sqe(SEGMENTS, 24, LAST_SEGMENT), Status.INVALID_SGL_SEGMENT_DESCRIPTOR),
        # A Last Segment's segment holding a Segment descriptor.
        (descriptor(DATA, 2048, DATA_BLOCK) + descriptor(SEGMENTS, 16, LAST_SEGMENT), seg,
         Status.INVALID_SGL_SEGMENT_DESCRIPTOR),
        # A Segment descriptor that is not its segment's last descriptor.
        (descriptor(SEGMENTS + 0x100, 16, LAST_SEGMENT) + descriptor(DATA, 4096, DATA_BLOCK),
         in_sqe(SEGMENTS, 32, SEGMENT), Status.INVALID_SGL_SEGMENT_DESCRIPTOR),
        # Less, or more, data than the command transfers.
        (b"", in_sqe(DATA, 4095, DATA_BLOCK), Status.DATA_SGL_LENGTH_INVALID),
        (b"", in_sqe(DATA, 4097, DATA_BLOCK), Status.DATA_SGL_LENGTH_INVALID),
        (descriptor(DATA, 2048, DATA_BLOCK) + descriptor(DATA, 4096, DATA_BLOCK), seg,
         Status.DATA_SGL_LENGTH_INVALID),
        # A segment chaining to itself: ends at the descriptor bound.
        (descriptor(DATA, 0, DATA_BLOCK) + descriptor(SEGMENTS, 32, SEGMENT),
         in_sqe(SEGMENTS, 32, SEGMENT), Status.INVALID_NUMBER_OF_SGL_DESCRIPTORS),
    ]
    for segment, pointer, status in cases:
        host.ram_write(SEGMENTS, segment.ljust(32, b"\0"))
        assert rw(host, READ, 1, pointer) == status | DNR, (segment, pointer)
    # Unmapped memory: Data Transfer Error, retryable (no DNR).
    assert rw(host, READ, 1, in_sqe(0x40000000, 4096, DATA_BLOCK)) == Status.DATA_TRANSFER_ERROR
    assert rw(host, READ, 1, in_sqe(0x40000000, 32, SEGMENT)) == Status.DATA_TRANSFER_ERROR


def test_a_failed_sgl_moves_no_byte() -> None:
    # The first data block is valid, the second runs past the transfer: nothing lands.
    host = io_host()
    host.storage[:0x1000] = b"\x77" * 0x1000
    host.ram_write(SEGMENTS, descriptor(DATA, 0x800, DATA_BLOCK)
                   + descriptor(DATA + 0x1000, 0x900, DATA_BLOCK))
    assert rw(host, READ, 1, in_sqe(SEGMENTS, 32, LAST_SEGMENT)) == \
        Status.DATA_SGL_LENGTH_INVALID | DNR
    assert host.ram_read(DATA, 0x800) == bytes(0x800)


def test_ocssd_metadata_contiguous_with_psdt_01_and_an_sgl_with_psdt_10() -> None:
    # 16 sectors written (the last mw_cunits = 8 are not readable yet), 4 read back.
    dev = Device()
    host = dev.host
    host.ram_write(DATA - 0x1000, struct.pack("<16Q", *[lba(0, 0, 1, sec) for sec in range(16)]))
    host.ram_write(DATA, b"\xab" * 0x10000)
    host.ram_write(MPTR, bytes(range(256)))
    done = host.command(1, VECTOR_WRITE, nsid=1, flags=PSDT_SGL, mptr=MPTR, cdw10=DATA - 0x1000,
                        cdw12=15, **in_sqe(DATA, 0x10000, DATA_BLOCK))
    assert done[5] == 0
    assert dev.oob[32 * 16:32 * 16 + 256] == bytes(range(256))
    # Read back: the OOB through a metadata SGL (MPTR -> one Last Segment descriptor
    # -> two data blocks of 24 and 40 bytes).
    host.ram_write(MPTR, descriptor(SEGMENTS, 32, LAST_SEGMENT))
    host.ram_write(SEGMENTS, descriptor(DATA + 0x18000, 24, DATA_BLOCK)
                   + descriptor(DATA + 0x19000, 40, DATA_BLOCK))
    read = {"nsid": 1, "flags": PSDT_SGL_MPTR_SGL, "mptr": MPTR, "cdw10": DATA - 0x1000,
            "cdw12": 3, **in_sqe(DATA + 0x20000, 0x4000, DATA_BLOCK)}
    assert host.command(1, VECTOR_READ, **read)[5] == 0
    assert host.ram_read(DATA + 0x18000, 24) == bytes(range(24))
    assert host.ram_read(DATA + 0x19000, 40) == bytes(range(24, 64))
    assert host.ram_read(DATA + 0x20000, 0x4000) == b"\xab" * 0x4000
    # A metadata SGL of the wrong length: Metadata SGL Length Invalid, no data moved.
    host.ram_write(SEGMENTS + 16, descriptor(DATA + 0x19000, 39, DATA_BLOCK))
    host.ram_write(DATA + 0x20000, bytes(0x4000))
    assert host.command(1, VECTOR_READ, **read)[5] == Status.METADATA_SGL_LENGTH_INVALID | DNR
    assert host.ram_read(DATA + 0x20000, 0x4000) == bytes(0x4000)


# -- the C walk against a Python reference ---------------------------------------------

BASE, SIZE = 0x200000, 0x4000


@dataclass
class Case:
    ram: bytes
    holes: list[tuple[int, int]]
    first: tuple[int, int]
    length: int
    cuts: list[int]
    to_guest: bool

    def build(self) -> tuple[GuestMemory, bytearray, bytearray, list[memoryview]]:
        ram, device = bytearray(self.ram), bytearray(random.Random(7).randbytes(self.length))
        memory = GuestMemory()
        at = 0
        for start, end in [*self.holes, (SIZE, SIZE)]:
            if start > at:
                memory.add(BASE + at, memoryview(ram)[at:start])
            at = max(at, end)
        bounds = [0, *self.cuts, self.length]
        return memory, ram, device, [memoryview(device)[a:b] for a, b in zip(bounds, bounds[1:],
                                                                             strict=False)]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """An SGL of data blocks and bit buckets in up to 4 segments (sometimes broken)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    ram = bytearray(rng.randbytes(SIZE))
    sloppy = draw(st.booleans())
    kinds = st.sampled_from([DATA_BLOCK] * 6 + [BIT_BUCKET] + ([0x4, 0xF] if sloppy else []))

    def block() -> tuple[int, int, int, int]:
        size = draw(st.integers(0, 0x300))
        addr = BASE + draw(st.integers(0, SIZE - 0x300)) if not sloppy or \
            draw(st.booleans()) else draw(st.integers(0, 2**64 - 1))
        sub = draw(st.sampled_from([0] * 8 + [1, 2])) if sloppy else 0
        return addr, size, draw(kinds), sub

    segments = draw(st.integers(0, 4))
    blocks = [[block() for _ in range(draw(st.integers(1, 5)))] for _ in range(max(segments, 1))]
    total = sum(size for seg in blocks for _, size, kind, _ in seg if kind == DATA_BLOCK)
    length = max(total + draw(st.sampled_from([0, 0, 0, 1, -1])), 0) if sloppy else total
    if segments == 0:
        addr, size, kind, sub = blocks[0][0]
        first = (addr, size | (kind << 4 | sub) << 56)
    else:
        places = [0x3000 + 0x100 * i for i in range(segments)]
        for i, seg in enumerate(blocks):
            raw = b"".join(descriptor(*d) for d in seg)
            if i + 1 < segments:
                kind = draw(st.sampled_from([SEGMENT, LAST_SEGMENT] if i + 2 == segments
                                            else [SEGMENT])) if sloppy else \
                    (LAST_SEGMENT if i + 2 == segments else SEGMENT)
                nxt = places[i + 1] if not sloppy or draw(st.booleans()) else places[0]
                raw += descriptor(BASE + nxt, 16 * (len(blocks[i + 1]) + (i + 2 < segments)),
                                  kind)
            ram[places[i]:places[i] + len(raw)] = raw
        kind0 = LAST_SEGMENT if segments == 1 else SEGMENT
        first = (BASE + places[0], 16 * (len(blocks[0]) + (segments > 1)) | kind0 << 60)
    holes = sorted(draw(st.lists(st.tuples(st.integers(0, SIZE), st.integers(1, 0x400))
                                 .map(lambda h: (h[0], min(SIZE, h[0] + h[1]))),
                                 max_size=2 if sloppy else 0)))
    cuts = sorted(draw(st.lists(st.integers(0, length), max_size=3)))
    return Case(bytes(ram), holes, first, length, cuts, draw(st.booleans()))


def outcome(move: object, case: Case) -> tuple[int, bytes, bytes]:
    memory, ram, device, segments = case.build()
    try:
        move(memory, *case.first, segments, case.to_guest)  # type: ignore[operator]
        status = 0
    except TransferError as err:
        status = err.status
    return status, bytes(ram), bytes(device)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_shim_agrees_with_the_python_walk(case: Case) -> None:
    expected = outcome(reference_transfer, case)
    assert outcome(sgl_transfer, case) == expected
    event(f"status {expected[0]:#x}")
    if expected[0]:
        memory, ram, device, _ = case.build()
        assert (expected[1], expected[2]) == (bytes(ram), bytes(device))  # nothing moved
