"""OCSSD 2.0 rules, driven through the controller with a bytearray as guest memory.

Geometry used unless a test says otherwise: 2 groups x 2 PUs x 12 chunks x 32
sectors of 4096 + 16 bytes, ws_min 4, ws_opt 8, mw_cunits 8. Its LBA fields are
sec 5 bits, chk 4, pu 1, grp 1: LBA = sec | chk << 5 | pu << 9 | grp << 10.
Expected values are literals worked out by hand from that packing.
"""

from __future__ import annotations

import io
import json
import struct

import pytest

from ocssd_vfu.geometry.ocssd20 import AddressFormat, GeometryError, OcssdGeometry
from ocssd_vfu.media.ocssd_image import fresh_chunk_log
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.ocssd.faults import ocssd20_space
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.openchannel.faults import Fault, FaultBook
from ocssd_vfu.spec.ocssd import (
    CHUNK_DESCRIPTOR_FORMAT,
    ChunkDescriptor,
    Geometry,
)
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, FakeHost

# Every test once with vector Reads and Writes on the C fast path, once on the Python path.
pytestmark = pytest.mark.usefixtures("both_io_paths")

GEOMETRY = OcssdGeometry(num_grp=2, num_pu=2, num_chk=12, num_sec=32, mw_cunits=8)
LBAL = DATA - 0x1000    # LBA lists
MPTR = DATA - 0x2000    # OOB buffers
VECTOR_RESET, VECTOR_WRITE, VECTOR_READ = 0x90, 0x91, 0x92


def lba(grp: int, pu: int, chk: int, sec: int = 0) -> int:
    return sec | chk << 5 | pu << 9 | grp << 10


class Device:
    def __init__(self, geometry: OcssdGeometry = GEOMETRY, early_reset: bool = True,
                 faults: tuple[Fault, ...] = (), pe_cycles: int | None = None) -> None:
        g = geometry
        book = FaultBook(ocssd20_space(g))
        for fault in faults:
            book.add(fault)
        self.log = bytearray(fresh_chunk_log(g))
        self.data = bytearray(g.sectors * g.sec_size)
        self.oob = bytearray(g.sectors * g.md_size)
        self.ns = OcssdNamespace(1, g, memoryview(self.log), memoryview(self.data),
                                 memoryview(self.oob), early_reset, book, pe_cycles=pe_cycles)
        self.host = FakeHost(namespace=self.ns)
        self.host.enable()
        self.host.create_io_queues()

    def vector(self, opc: int, lbas: list[int], mptr: int = 0, prp1: int = DATA,
               prp2: int = 0) -> tuple[int, int]:
        """Submit a vector command; (status, 64-bit bitmap)."""
        if len(lbas) == 1:
            lbal = lbas[0]
        else:
            self.host.ram_write(LBAL, struct.pack(f"<{len(lbas)}Q", *lbas))
            lbal = LBAL
        done = self.host.command(1, opc, nsid=1, prp1=prp1, prp2=prp2, mptr=mptr,
                                 cdw10=lbal & 0xFFFFFFFF, cdw11=lbal >> 32,
                                 cdw12=len(lbas) - 1)
        return done[5], done[0] | done[1] << 32

    def write(self, lbas: list[int], fill: bytes = b"", oob: bytes = b"") -> tuple[int, int]:
        payload = fill or b"".join(bytes([i & 0xFF]) * 4096 for i in range(len(lbas)))
        self.host.ram_write(DATA, payload)
        if oob:
            self.host.ram_write(MPTR, oob)
        return self.vector(VECTOR_WRITE, lbas, mptr=MPTR if oob else 0,
                           prp2=self._prp2(len(lbas)))

    def read(self, lbas: list[int], with_oob: bool = False) -> tuple[int, int, bytes, bytes]:
        self.host.ram_write(DATA, b"\xaa" * 4096 * len(lbas))
        status, bitmap = self.vector(VECTOR_READ, lbas, mptr=MPTR if with_oob else 0,
                                     prp2=self._prp2(len(lbas)))
        return (status, bitmap, self.host.ram_read(DATA, 4096 * len(lbas)),
                self.host.ram_read(MPTR, 16 * len(lbas)))

    def _prp2(self, nlb: int) -> int:
        if nlb <= 2:
            return DATA + 0x1000
        pages = [DATA + 0x1000 * i for i in range(1, nlb)]
        self.host.ram_write(DATA - 0x3000, struct.pack(f"<{len(pages)}Q", *pages))
        return DATA - 0x3000

    def flush(self) -> None:
        """A Flush, with the shell's sync done at once."""
        self.host.submit(1, 0x00, nsid=1)
        self.host.ctrl.process()
        (request,) = self.host.ctrl.take_sync_requests()
        self.host.ctrl.complete_deferred(request, Status.SUCCESS)
        assert self.host.completions(1)[0][5] == 0

    def chunk(self, grp: int, pu: int, chk: int) -> tuple[int, ...]:
        """(cs, ct, wli, slba, cnlb, wp) of one chunk, from the on-image log."""
        index = (grp * 2 + pu) * 12 + chk
        return CHUNK_DESCRIPTOR_FORMAT.unpack_from(self.log, index * 32)


def run(start: int, count: int, grp: int = 0, pu: int = 0, chk: int = 0) -> list[int]:
    return [lba(grp, pu, chk, s) for s in range(start, start + count)]


# -- structures and packing ----------------------------------------------------------------
def test_structure_sizes_and_chunk_descriptor_struct_agree_with_construct() -> None:
    assert Geometry.sizeof() == 4096
    assert ChunkDescriptor.sizeof() == 32 == CHUNK_DESCRIPTOR_FORMAT.size
    raw = bytes.fromhex("04 01 07 0000000000 0004000000000000 0004000000000000"
                        " 1800000000000000".replace(" ", ""))
    parsed = ChunkDescriptor.parse(raw)
    assert (parsed.cs, parsed.ct, parsed.wli, parsed.slba, parsed.cnlb, parsed.wp) == \
        CHUNK_DESCRIPTOR_FORMAT.unpack(raw) == (4, 1, 7, 0x400, 0x400, 0x18)


def test_geometry_page_bytes_for_the_reference_geometry() -> None:
    page = OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=1024).to_bytes()
    # Bytes as qemu-img wrote them into fresh.img at offset 4096 (ocssd-spec §2.1 offsets).
    assert page[0:2] == b"\x02\x00" and page[8:12] == bytes([1, 1, 4, 10])
    assert page[64:76] == bytes.fromhex("0200 0200 10000000 00040000".replace(" ", ""))
    assert page[128:148] == bytes.fromhex("04000000 08000000 18000000 00000000 00000000"
                                          .replace(" ", ""))
    assert struct.unpack_from("<6I", page, 192) == (70000, 100000, 1900000, 3500000,
                                                    3000000, 3000000)
    assert OcssdGeometry.from_bytes(page, 4096, 16) == \
        OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=1024)


@pytest.mark.parametrize(("geometry", "lens", "packed"), [
    # 3 groups, 3 PUs, 5 chunks, 24 sectors: widths 2/2/3/5, sparse address space.
    (OcssdGeometry(num_grp=3, num_pu=3, num_chk=5, num_sec=24, ws_opt=8, mw_cunits=0),
     (2, 2, 3, 5), 23 | 4 << 5 | 1 << 8 | 2 << 10),
    # qemu's example: 2 groups, 8 PUs, 60 chunks, 4096 sectors: 1/3/6/12.
    (OcssdGeometry(num_grp=2, num_pu=8, num_chk=60, num_sec=4096), (1, 3, 6, 12),
     23 | 4 << 12 | 1 << 18 | 1 << 21),
    # 1 group: a zero-width group field.
    (OcssdGeometry(num_grp=1, num_pu=4, num_chk=16, num_sec=64), (0, 2, 4, 6),
     23 | 4 << 6 | 1 << 10),
])
def test_lba_packing(geometry: OcssdGeometry, lens: tuple[int, ...], packed: int) -> None:
    fmt = AddressFormat(geometry)
    grp = 2 if geometry.num_grp == 3 else (1 if geometry.num_grp == 2 else 0)
    assert geometry.lens == lens
    assert fmt.pack(grp, 1, 4, 23) == packed
    assert fmt.unpack(packed) == (grp, 1, 4, 23)
    index = (grp * geometry.num_pu + 1) * geometry.num_chk + 4
    assert fmt.locate(packed) == (index, 23)


def test_fields_beyond_the_geometry_are_out_of_range() -> None:
    fmt = AddressFormat(OcssdGeometry(num_grp=3, num_pu=3, num_chk=5, num_sec=24, ws_opt=8,
                                      mw_cunits=0))
    assert fmt.locate(fmt.pack(3, 0, 0)) is None      # group 3 of 3
    assert fmt.locate(fmt.pack(0, 3, 0)) is None      # PU 3 of 3
    assert fmt.locate(fmt.pack(0, 0, 5)) is None      # chunk 5 of 5
    assert fmt.locate(fmt.pack(0, 0, 0, 24)) is None  # sector 24 of 24
    assert fmt.locate(1 << 60) is None


@pytest.mark.parametrize(("fields", "message"), [
    (dict(ws_opt=12), "ws_opt=12: must divide num_sec"),
    (dict(ws_min=3, ws_opt=8), "ws_opt=8: must be a multiple of ws_min (3)"),
    (dict(ws_opt=128, num_sec=4096), "ws_opt=128"),
    (dict(num_grp=0), "num_grp=0"),
    (dict(num_pu=257), "num_pu=257"),
    (dict(sec_size=1000), "sec_size=1000"),
    (dict(mccap=1), "mccap=0x1"),
    (dict(mw_cunits=5000), "mw_cunits=5000"),
])
def test_impossible_geometries_name_the_field(fields: dict[str, int], message: str) -> None:
    with pytest.raises(GeometryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OcssdGeometry(**fields)


# -- identification -----------------------------------------------------------------------
def test_identify_namespace_marks_an_ocssd_namespace() -> None:
    dev = Device()
    assert dev.host.command(0, 0x06, nsid=1, prp1=DATA, cdw10=0)[5] == 0
    ident = dev.host.ram_read(DATA, 4096)
    assert ident[384] == 0x01                       # vs[0]: LightNVM
    assert struct.unpack_from("<QQQ", ident, 0) == (1 << 11,) * 3  # 2^(1+1+4+5)
    assert ident[26] == 0                           # FLBAS: format 0, metadata separate
    assert ident[128:132] == bytes([16, 0, 12, 0])  # LBAF0: MS 16, LBADS 12


def test_geometry_command_reports_early_reset_in_mccap() -> None:
    for early, mccap in ((True, 0x4), (False, 0x0)):
        dev = Device(early_reset=early)
        assert dev.host.command(0, 0xE2, nsid=1, prp1=DATA)[5] == 0
        page = dev.host.ram_read(DATA, 4096)
        assert page[0] == 2 and struct.unpack_from("<I", page, 16)[0] == mccap
        assert struct.unpack_from("<HHII", page, 64) == (2, 2, 12, 32)


def test_chunk_log_is_served_with_offsets_and_checked_bounds() -> None:
    dev = Device()
    # 48 chunks x 32 bytes = 1536 bytes; read 64 bytes at offset 32*13 (chunk 13 = grp0 pu1 chk1).
    numd = 64 // 4 - 1
    done = dev.host.command(0, 0x02, nsid=1, prp1=DATA, cdw10=0xCA | numd << 16, cdw12=32 * 13)
    assert done[5] == 0
    first = CHUNK_DESCRIPTOR_FORMAT.unpack(dev.host.ram_read(DATA, 32))
    assert first == (1, 1, 0, lba(0, 1, 1), 32, 0)
    too_far = dev.host.command(0, 0x02, nsid=1, prp1=DATA, cdw10=0xCA | numd << 16,
                               cdw12=1536 - 32)
    assert too_far[5] == Status.INVALID_FIELD | DNR


# -- writes --------------------------------------------------------------------------------
def test_first_write_opens_a_chunk_and_the_last_closes_it() -> None:
    dev = Device()
    assert dev.write(run(0, 8)) == (0, 0)
    assert dev.chunk(0, 0, 0) == (4, 1, 0, 0, 32, 8)           # OPEN, WP 8
    for start in (8, 16, 24):
        assert dev.write(run(start, 8)) == (0, 0)
    assert dev.chunk(0, 0, 0) == (2, 1, 0, 0, 32, 32)          # CLOSED, WP 32


def test_write_rules_and_their_statuses() -> None:
    dev = Device()
    assert dev.write(run(4, 4)) == (Status.OUT_OF_ORDER_WRITE | DNR, 0b1111)   # not at WP 0
    assert dev.write(run(0, 2)) == (Status.INVALID_FIELD | DNR, 0b11)          # < ws_min
    assert dev.write(run(0, 6)) == (Status.INVALID_FIELD | DNR, 0b111111)      # not a multiple
    assert dev.chunk(0, 0, 0)[5] == 0 and dev.chunk(0, 0, 0)[0] == 1           # nothing moved
    for start in range(0, 32, 8):
        assert dev.write(run(start, 8))[0] == 0
    assert dev.write(run(0, 4)) == (Status.OUT_OF_ORDER_WRITE | DNR, 0b1111)   # CLOSED
    assert dev.write([lba(0, 0, 12)] * 4) == (Status.LBA_OUT_OF_RANGE | DNR, 0b1111)


def test_one_vector_carries_several_runs_of_several_chunks() -> None:
    dev = Device()
    # pblk's striping: ws_opt runs across PUs, twice round: each chunk gets 2 runs.
    lbas = run(0, 8, pu=0) + run(0, 8, pu=1) + run(8, 8, pu=0) + run(8, 8, pu=1)
    payload = b"".join(bytes([i]) * 4096 for i in range(32))
    assert dev.write(lbas, fill=payload) == (0, 0)
    assert dev.chunk(0, 0, 0)[5] == 16 and dev.chunk(0, 1, 0)[5] == 16
    # Data landed at grp0/pu1/chk0 sector 8 = dense sector 12*32 + 8 = 392: byte 24.
    assert dev.data[392 * 4096] == 24
    status, bitmap, data, _ = dev.read(run(0, 8, pu=1))
    assert (status, bitmap) == (0, 0) and data == payload[8 * 4096:16 * 4096]


def test_vector_of_more_than_64_lbas_is_refused() -> None:
    dev = Device()
    done = dev.host.command(1, VECTOR_WRITE, nsid=1, prp1=DATA, cdw10=LBAL, cdw12=64)
    assert done[5] == Status.INVALID_FIELD | DNR


# -- reads ---------------------------------------------------------------------------------
def test_oob_metadata_round_trips_byte_exact() -> None:
    dev = Device()
    oob = b"".join(struct.pack("<QQ", 0xDEAD0000 + i, 1000 + i) for i in range(8))
    assert dev.write(run(0, 8), oob=oob) == (0, 0)
    for start in (8, 16):
        assert dev.write(run(start, 8))[0] == 0   # push sectors 0-7 out of the write cache
    status, _, data, got = dev.read(run(0, 8), with_oob=True)
    assert status == 0 and got == oob and data[4096 * 3] == 3


def test_open_chunk_tail_is_unreadable_until_flush() -> None:
    dev = Device()
    assert dev.write(run(0, 16))[0] == 0          # WP 16, mw_cunits 8: sectors 8-15 cached
    status, bitmap, data, oob = dev.read(run(4, 8), with_oob=True)
    assert (status, bitmap) == (0, 0)
    assert data[:4 * 4096] == b"".join(bytes([i]) * 4096 for i in range(4, 8))
    assert data[4 * 4096:] == bytes(4 * 4096)                 # predefined data: zeros
    assert oob[4 * 16:] == b"\xff" * 64                       # erased OOB
    dev.flush()
    status, _, data, _ = dev.read(run(8, 8))
    assert data[:4096] == bytes([8]) * 4096


def test_unwritten_reads_with_dulbe_fail_with_a_bitmap() -> None:
    dev = Device()
    assert dev.host.command(0, 0x09, cdw10=0x05, cdw11=1 << 16)[5] == 0   # DULBE on
    assert dev.write(run(0, 8))[0] == 0
    dev.flush()
    status, bitmap, _, _ = dev.read(run(4, 8))
    assert (status, bitmap) == (Status.DEALLOCATED_OR_UNWRITTEN | DNR, 0b11110000)


def test_predefined_data_is_never_written_into_the_image() -> None:
    dev = Device()
    dev.read(run(0, 4, chk=3))
    assert dev.data == bytes(len(dev.data)) and dev.oob == bytes(len(dev.oob))


# -- resets --------------------------------------------------------------------------------
def test_reset_rules() -> None:
    dev = Device()
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 0)]) == (Status.INVALID_RESET | DNR, 1)  # FREE
    assert dev.write(run(0, 8))[0] == 0
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 0)]) == (0, 0)                          # OPEN
    assert dev.chunk(0, 0, 0) == (1, 1, 1, 0, 32, 0)                                   # WLI 1
    strict = Device(early_reset=False)
    assert strict.write(run(0, 8))[0] == 0
    assert strict.vector(VECTOR_RESET, [lba(0, 0, 0)]) == (Status.INVALID_RESET | DNR, 1)


def test_reset_of_several_chunks_reports_each_and_writes_descriptors_to_mptr() -> None:
    dev = Device()
    for chk in (1, 2):
        for start in range(0, 32, 8):
            assert dev.write(run(start, 8, chk=chk))[0] == 0
    lbas = [lba(0, 0, 1), lba(0, 0, 5), lba(0, 0, 2)]
    assert dev.vector(VECTOR_RESET, lbas, mptr=MPTR) == (Status.INVALID_RESET | DNR, 0b010)
    got = [CHUNK_DESCRIPTOR_FORMAT.unpack(dev.host.ram_read(MPTR + 32 * i, 32)) for i in range(3)]
    assert got == [(1, 1, 1, lba(0, 0, 1), 32, 0), (1, 1, 0, lba(0, 0, 5), 32, 0),
                   (1, 1, 1, lba(0, 0, 2), 32, 0)]


def test_multiple_resets_capability_allows_resetting_a_free_chunk() -> None:
    dev = Device(OcssdGeometry(num_grp=2, num_pu=2, num_chk=12, num_sec=32, mw_cunits=8,
                               mccap=0x2))
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 0)]) == (0, 0)


def test_injected_write_failure_closes_the_chunk_early_and_its_reset_fails() -> None:
    dev = Device(faults=(Fault("write", (0, 1, 2), (5,)),))
    lbas = run(0, 8, pu=1, chk=2) + run(0, 8, pu=0, chk=2)
    assert dev.write(lbas) == (Status.WRITE_FAIL_CHUNK_EARLY_CLOSE | DNR, 0b11100000)
    assert dev.chunk(0, 1, 2)[0] == 2 and dev.chunk(0, 1, 2)[5] == 5   # CLOSED at sector 5
    assert dev.chunk(0, 0, 2)[0] == 4 and dev.chunk(0, 0, 2)[5] == 8   # the other run landed
    assert dev.vector(VECTOR_RESET, [lba(0, 1, 2)]) == (Status.OFFLINE_CHUNK | DNR, 1)
    assert dev.chunk(0, 1, 2)[0] == 8
    assert dev.vector(VECTOR_RESET, [lba(0, 1, 2)]) == (Status.OFFLINE_CHUNK | DNR, 1)


def test_a_write_failure_closes_the_chunk_once_at_the_failing_sector() -> None:
    # Fail at grp0/pu0/chk1 sector 2; the vector carries that chunk's s0-3, another PU's
    # s0-3, then the chunk's s4-7: the chunk stays CLOSED at 2, not at the 2nd run's start.
    dev = Device(faults=(Fault("write", (0, 0, 1), (2,)),))
    lbas = run(0, 4, chk=1) + run(0, 4, pu=1, chk=1) + run(4, 4, chk=1)
    assert dev.write(lbas) == (Status.WRITE_FAIL_CHUNK_EARLY_CLOSE | DNR, 0xF0C)
    assert dev.chunk(0, 0, 1) == (2, 1, 0, lba(0, 0, 1), 32, 2)     # CLOSED, WP 2
    assert dev.chunk(0, 1, 1) == (4, 1, 0, lba(0, 1, 1), 32, 4)     # OPEN, WP 4
    status, bitmap, data, _ = dev.read(run(0, 4, chk=1))
    assert (status, bitmap) == (0, 0)
    assert data == bytes(4096) + bytes([1]) * 4096 + bytes(2 * 4096)  # sectors 0-1 landed
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 1)]) == (Status.OFFLINE_CHUNK | DNR, 1)


def test_consecutive_lbas_split_at_a_chunk_boundary_and_past_the_last_sector() -> None:
    dev = Device()
    assert dev.write(run(0, 24)) == (0, 0)
    # chk0 s24-31 then chk1 s0-3: one LBA after another (lba(0,0,0,31) + 1 = lba(0,0,1)).
    assert dev.write(run(24, 8) + run(0, 4, chk=1)) == (0, 0)
    assert dev.chunk(0, 0, 0)[::5] == (2, 32) and dev.chunk(0, 0, 1)[::5] == (4, 4)
    # 24 sectors per chunk (5-bit field): the LBA after sector 23 is outside the geometry.
    sparse = Device(OcssdGeometry(num_grp=2, num_pu=2, num_chk=12, num_sec=24, ws_opt=4,
                                  mw_cunits=8))
    assert sparse.write(run(0, 20)) == (0, 0)
    assert sparse.write(run(20, 4) + [lba(0, 0, 0, 24)] + run(0, 3, chk=1)) == \
        (Status.LBA_OUT_OF_RANGE | DNR, 0b10000)


def test_long_scalar_commands_fill_zeroes_and_erased_oob_past_the_shared_buffers() -> None:
    # 128 sectors per chunk: a 100-LBA scalar read has a 92-sector unwritten stretch, more
    # than the 64-sector zero buffer; a 96-LBA scalar write without MPTR erases 96 OOBs.
    geometry = OcssdGeometry(num_grp=2, num_pu=2, num_chk=12, num_sec=128, mw_cunits=8)
    dev = Device(geometry)
    oob = bytes(range(128))
    assert dev.write([lba(0, 0, 0, s) for s in range(8)], oob=oob) == (0, 0)  # LBAs 0-7 here
    dev.flush()
    host, prp2 = dev.host, dev._prp2(100)
    host.ram_write(DATA, b"\xaa" * 100 * 4096)
    host.ram_write(MPTR, b"\xaa" * 100 * 16)
    assert host.command(1, 0x02, nsid=1, prp1=DATA, prp2=prp2, mptr=MPTR, cdw12=99)[5] == 0
    assert host.ram_read(DATA, 8 * 4096) == b"".join(bytes([i]) * 4096 for i in range(8))
    assert host.ram_read(DATA + 8 * 4096, 92 * 4096) == bytes(92 * 4096)
    assert host.ram_read(MPTR, 100 * 16) == oob + b"\xff" * 92 * 16
    chunk1 = 1 << 7  # grp 0, pu 0, chk 1 with a 7-bit sector field
    prp2 = dev._prp2(96)
    assert host.command(1, 0x01, nsid=1, prp1=DATA, prp2=prp2, cdw10=chunk1, cdw12=95)[5] == 0
    assert dev.oob[128 * 16:(128 + 96) * 16] == b"\xff" * 96 * 16


def test_injected_reset_failure_takes_the_chunk_offline() -> None:
    dev = Device(faults=(Fault("reset", (0, 0, 3), ()),))
    for start in range(0, 32, 8):
        assert dev.write(run(start, 8, chk=3))[0] == 0
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 3)]) == (Status.OFFLINE_CHUNK | DNR, 1)
    assert dev.chunk(0, 0, 3)[0] == 8 and dev.chunk(0, 0, 3)[5] == 0xFFFF
    assert dev.write(run(0, 4, chk=3))[0] == Status.OUT_OF_ORDER_WRITE | DNR


# -- scalar commands on the raw namespace ---------------------------------------------------
def test_scalar_read_of_lba_0_answers_predefined_data() -> None:
    dev = Device()
    dev.host.ram_write(DATA, b"\x55" * 4096)
    assert dev.host.command(1, 0x02, nsid=1, prp1=DATA, cdw12=0)[5] == 0
    assert dev.host.ram_read(DATA, 4096) == bytes(4096)


def test_scalar_write_follows_the_chunk_rules() -> None:
    dev = Device()
    assert dev.host.command(1, 0x01, nsid=1, prp1=DATA, cdw10=lba(0, 0, 0, 4),
                            cdw12=3)[5] == Status.OUT_OF_ORDER_WRITE | DNR
    assert dev.host.command(1, 0x01, nsid=1, prp1=DATA, cdw10=0,
                            cdw12=0)[5] == Status.INVALID_FIELD | DNR   # 1 LBA < ws_min
    dev.host.ram_write(DATA + 0x1000, struct.pack("<3Q", DATA + 0x2000, DATA + 0x3000,
                                                  DATA + 0x4000))
    assert dev.host.command(1, 0x01, nsid=1, prp1=DATA, prp2=DATA + 0x1000, cdw10=0,
                            cdw12=3)[5] == 0
    assert dev.chunk(0, 0, 0)[5] == 4


def test_deallocating_a_whole_chunk_resets_it() -> None:
    dev = Device()
    for start in range(0, 32, 8):
        assert dev.write(run(start, 8, chk=4))[0] == 0
    dev.host.ram_write(DATA, struct.pack("<IIQ", 0, 32, lba(0, 0, 4)))
    assert dev.host.command(1, 0x09, nsid=1, prp1=DATA, cdw10=0, cdw11=1 << 2)[5] == 0
    assert dev.chunk(0, 0, 4)[0] == 1
    dev.host.ram_write(DATA, struct.pack("<IIQ", 0, 8, lba(0, 0, 4)))
    assert dev.host.command(1, 0x09, nsid=1, prp1=DATA, cdw10=0, cdw11=1 << 2)[5] == \
        Status.INVALID_FIELD | DNR


def test_vector_commands_on_a_plain_namespace_are_invalid_opcodes() -> None:
    host = FakeHost()
    host.enable()
    host.create_io_queues()
    assert host.command(1, VECTOR_WRITE, nsid=1, prp1=DATA)[5] == Status.INVALID_OPCODE | DNR
    assert host.command(0, 0xE2, nsid=1, prp1=DATA)[5] == Status.INVALID_OPCODE | DNR


# -- command trace -------------------------------------------------------------------------
def traced(dev: Device) -> tuple[io.StringIO, io.StringIO]:
    """Trace DEV's commands both as text and as JSON lines."""
    text, records = io.StringIO(), io.StringIO()
    tracers = [make_tracer(dev.host.ctrl, text, "text"),
               make_tracer(dev.host.ctrl, records, "json")]

    def both(*args: int) -> None:
        for tracer in tracers:
            tracer(*args)  # type: ignore[arg-type]

    dev.host.ctrl.tracer = both  # type: ignore[assignment]
    return text, records


def test_trace_decodes_vector_lbas_and_statuses() -> None:
    dev = Device()
    text, records = traced(dev)
    dev.write(run(0, 4, pu=1, chk=3) + run(0, 4, grp=1, chk=0))
    dev.write(run(4, 4, chk=3))
    lines = text.getvalue().splitlines()
    assert lines[0].startswith("sq 1 cid 1 VECTOR_CHUNK_WRITE nsid 1 lbas 8 "
                               "[0/1/3/0-3, 1/0/0/0-3] prp1 0x110000 prp2 0x10d000 mptr 0x0 "
                               "-> SUCCESS")
    assert lines[1].endswith("-> OUT_OF_ORDER_WRITE+DNR result 0xf")
    record = json.loads(records.getvalue().splitlines()[1])
    assert record["opcode"] == "VECTOR_CHUNK_WRITE" and record["status"] == "OUT_OF_ORDER_WRITE+DNR"
    assert record["lbas"][0] == {"grp": 0, "pu": 0, "chk": 3, "sec": 4}


def test_trace_shows_scalar_commands_as_slba_and_nlb() -> None:
    dev = Device()
    text, records = traced(dev)
    assert dev.host.command(1, 0x02, nsid=1, prp1=DATA, prp2=DATA + 0x1000,
                            cdw10=lba(0, 1, 3), cdw12=1)[5] == 0
    assert "VECTOR" not in text.getvalue()
    assert " READ nsid 1 slba 0x260 nlb 2 prp1 " in text.getvalue()
    record = json.loads(records.getvalue())
    assert (record["slba"], record["nlb"]) == (0x260, 2) and "lbas" not in record


def test_device_reset_makes_the_write_cache_readable() -> None:
    dev = Device()
    assert dev.write(run(0, 16))[0] == 0       # sectors 8-15 in the write cache
    dev.host.ctrl.device_reset()               # a new VM attaches to the same server
    dev.host.restart()
    dev.host.create_io_queues()
    status, _, data, _ = dev.read(run(8, 8))
    assert status == 0 and data[:4096] == bytes([8]) * 4096
