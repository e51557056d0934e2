"""OCSSD 1.2 rules, driven through the controller with a bytearray as guest memory.

Geometry used unless a test says otherwise: 2 channels x 2 LUNs x 12 blocks x
4 pages x 2 planes, 8 KiB pages of two 4096 + 16 byte sectors (16 sectors per
block). Its PPA fields are sec 1 bit, pln 1, pg 2, blk 4, lun 1, ch 1:
PPA = sec | pl << 1 | pg << 2 | blk << 4 | lun << 8 | ch << 9. Expected values
are literals worked out by hand from that packing and ocssd-spec §3.
"""

from __future__ import annotations

import io
import struct

import pytest

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry, PpaFormat12
from ocssd_vfu.geometry.ocssd20 import GeometryError
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.ocssd12.bad_blocks import ocssd12_space
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import Fault, FaultBook
from ocssd_vfu.spec.ocssd12 import (
    BLOCK_RECORD_FORMAT,
    BadBlockTableHeader,
    BlockRecord,
    Identity,
    PpaFormat,
)
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, FakeHost

GEOMETRY = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=12, num_pg=4, fpg_sz=8192)
LBAL = DATA - 0x1000    # PPA lists
MPTR = DATA - 0x2000    # OOB buffers
PRP_LIST = DATA - 0x3000
ERASE, WRITE, READ = 0x90, 0x91, 0x92
SET_BB, GET_BB = 0xF1, 0xF2
SINGLE, DUAL, QUAD = 0, 1, 2
# What Linux compares (nvme_req(rq)->status): ocssd-spec §3.4.
EMPTY_PAGE, WRITE_FAILED = 0x42FF, 0x40FF


def ppa(ch: int, lun: int, blk: int, pg: int, pl: int = 0, sec: int = 0) -> int:
    return sec | pl << 1 | pg << 2 | blk << 4 | lun << 8 | ch << 9


def page(ch: int, lun: int, blk: int, pg: int, planes: tuple[int, ...] = (0,)) -> list[int]:
    """Both sectors of a page, plane after plane (the order pblk writes)."""
    return [ppa(ch, lun, blk, pg, pl, sec) for pl in planes for sec in (0, 1)]


class Device:
    def __init__(self, geometry: Ocssd12Geometry = GEOMETRY, faults: tuple[Fault, ...] = (),
                 bbt: bytes = b"") -> None:
        g = geometry
        book = FaultBook(ocssd12_space(g))
        for fault in faults:
            book.add(fault)
        self.bbt = bytearray(bbt or bytes(g.plane_blocks))
        self.records = bytearray(g.plane_blocks * 4)
        self.data = bytearray(g.sectors * g.sec_size)
        self.oob = bytearray(g.sectors * g.md_size)
        self.ns = Ocssd12Namespace(1, g, memoryview(self.bbt), memoryview(self.records),
                                   memoryview(self.data), memoryview(self.oob), book)
        self.host = FakeHost(namespace=self.ns)
        self.host.enable()
        self.host.create_io_queues()

    def _list(self, ppas: list[int]) -> int:
        if len(ppas) == 1:
            return ppas[0]
        self.host.ram_write(LBAL, struct.pack(f"<{len(ppas)}Q", *ppas))
        return LBAL

    def vector(self, opc: int, ppas: list[int], mode: int = SINGLE, mptr: int = 0
               ) -> tuple[int, int]:
        """Submit a physical page command; (status as Linux sees it, 64-bit bitmap)."""
        lbal = self._list(ppas)
        done = self.host.command(1, opc, nsid=1, prp1=DATA, prp2=self._prp2(len(ppas)),
                                 mptr=mptr, cdw10=lbal & 0xFFFFFFFF, cdw11=lbal >> 32,
                                 cdw12=(len(ppas) - 1) | mode << 16)
        return done[5], done[0] | done[1] << 32

    def write(self, ppas: list[int], mode: int = SINGLE, oob: bytes = b"") -> tuple[int, int]:
        self.host.ram_write(DATA, b"".join(bytes([0x40 + i]) * 4096 for i in range(len(ppas))))
        if oob:
            self.host.ram_write(MPTR, oob)
        return self.vector(WRITE, ppas, mode, MPTR if oob else 0)

    def read(self, ppas: list[int], mode: int = SINGLE) -> tuple[int, int, bytes, bytes]:
        self.host.ram_write(DATA, b"\xaa" * 4096 * len(ppas))
        self.host.ram_write(MPTR, b"\xaa" * 16 * len(ppas))
        status, bitmap = self.vector(READ, ppas, mode, MPTR)
        return (status, bitmap, self.host.ram_read(DATA, 4096 * len(ppas)),
                self.host.ram_read(MPTR, 16 * len(ppas)))

    def _prp2(self, count: int) -> int:
        if count <= 2:
            return DATA + 0x1000
        self.host.ram_write(PRP_LIST, struct.pack(f"<{count - 1}Q",
                                                  *(DATA + 0x1000 * i for i in range(1, count))))
        return PRP_LIST

    def admin(self, opc: int, **fields: int) -> tuple[int, ...]:
        return self.host.command(0, opc, nsid=1, **fields)

    def get_bad_blocks(self, ch: int, lun: int) -> tuple[int, bytes]:
        size = 64 + 12 * 2
        self.host.ram_write(DATA, b"\xee" * size)
        done = self.admin(GET_BB, prp1=DATA, cdw10=ppa(ch, lun, 0, 0))
        return done[5], self.host.ram_read(DATA, size)

    def set_bad_blocks(self, ppas: list[int], value: int) -> tuple[int, int]:
        lbal = self._list(ppas)
        done = self.admin(SET_BB, cdw10=lbal & 0xFFFFFFFF, cdw11=lbal >> 32,
                          cdw12=(len(ppas) - 1) | value << 16)
        return done[5], done[0] | done[1] << 32


def sectors(*fills: int) -> bytes:
    return b"".join(bytes([fill]) * 4096 for fill in fills)


# -- structures, identity and packing -------------------------------------------------------
def test_structure_sizes_and_block_record_struct_agree_with_construct() -> None:
    assert Identity.sizeof() == 4096
    assert BadBlockTableHeader.sizeof() == 64
    assert PpaFormat.sizeof() == 16
    raw = bytes.fromhex("0500 0300")
    parsed = BlockRecord.parse(raw)
    assert (parsed.pages, parsed.erases) == BLOCK_RECORD_FORMAT.unpack(raw) == (5, 3)


def test_default_identity_is_qemu_ox_geometry_at_the_spec_offsets() -> None:
    page = Ocssd12Geometry().to_bytes()
    assert len(page) == 4096
    assert page[0:4] == bytes([1, 0, 1, 0])                    # ver_id, vmnt, cgrps
    assert page[4:8] == bytes([1, 0, 0, 0])                    # cap: bad-block table
    assert page[8:12] == bytes(4)                              # dom: host L2P
    # ppaf: ch 17/3, lun 15/2, pln 2/1, blk 10/5, pg 3/7, sec 0/2 (offset/length)
    assert page[12:28] == bytes([17, 3, 15, 2, 2, 1, 10, 5, 3, 7, 0, 2, 0, 0, 0, 0])
    assert page[256:264] == bytes([0, 0, 0, 0, 8, 4, 2, 0])    # mtype fmtype rsvd ch lun pln
    assert page[264:276] == bytes.fromhex("2000 8000 0040 0010 1000 0000")
    assert page[276:300] == bytes.fromhex("70110100 a0860100 e0fd1c00 e0673500 c0c62d00 "
                                          "c0c62d00".replace(" ", ""))
    assert page[300:304] == bytes([2, 2, 2, 0])                # mpos: dual plane
    assert page[304:4096] == bytes(3792)


def test_ppa_packing_for_an_odd_geometry() -> None:
    g = Ocssd12Geometry(num_ch=3, num_lun=5, num_pln=2, num_blk=10, num_pg=6, fpg_sz=8192)
    assert g.ppaf == dict(sec_offset=0, sec_len=1, pln_offset=1, pln_len=1, pg_offset=2,
                          pg_len=3, blk_offset=5, blk_len=4, lun_offset=9, lun_len=3,
                          ch_offset=12, ch_len=2)
    fmt = PpaFormat12(g)
    assert fmt.pack(ch=2, lun=4, blk=9, pg=5, pl=1, sec=1) == 0x2937
    assert tuple(fmt.unpack(0x2937)) == (2, 4, 9, 1, 5, 1)     # ch lun blk pl pg sec
    # block (2*5+4)*10+9 = 149, page 5, plane 1, sector 1
    assert fmt.locate(0x2937) == (149, 5, 1, 1)
    assert fmt.locate(3 << 12) is None                         # ch 3 of 3
    assert fmt.locate(5 << 9) is None                          # lun 5 of 5
    assert fmt.locate(10 << 5) is None                         # blk 10 of 10
    assert fmt.locate(6 << 2) is None                          # pg 6 of 6
    assert fmt.locate(1 << 14) is None                         # a bit above the ch field


def test_quad_plane_geometry_packs_two_plane_bits_and_reports_quad_mpos() -> None:
    g = Ocssd12Geometry(num_ch=1, num_lun=1, num_pln=4, num_blk=16, num_pg=8, fpg_sz=4096)
    assert (g.ppaf["sec_len"], g.ppaf["pln_offset"], g.ppaf["pln_len"], g.ppaf["pg_offset"]) \
        == (0, 0, 2, 2)
    assert g.clba == 32
    assert g.to_bytes()[300:304] == bytes([4, 4, 4, 0])


@pytest.mark.parametrize(("values", "message"), [
    (dict(num_pln=3), "num_pln=3: must be 1, 2 or 4"),
    (dict(fpg_sz=6000), "fpg_sz=6000: must be a multiple of sec_size (4096)"),
    (dict(sec_size=512, fpg_sz=16384), "32 sectors per page, Linux's sector field holds at "
                                       "most 16"),
    (dict(num_ch=256), "num_ch=256: must be 1..255"),
    (dict(num_blk=0), "num_blk=0: must be 1..65535"),
])
def test_impossible_geometries_name_the_field(values: dict[str, int], message: str) -> None:
    with pytest.raises(GeometryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Ocssd12Geometry(**values)


def test_identify_namespace_marks_lightnvm_and_lba_format() -> None:
    ident = Device().ns.identify()
    assert ident[0:8] == (768).to_bytes(8, "little")           # 2*2*12 blocks x 16 sectors
    assert ident[384] == 1                                     # vs[0]: LightNVM
    assert ident[128:132] == bytes([16, 0, 12, 0])             # lbaf[0]: ms 16, lbads 12


def test_identity_admin_command_returns_version_1() -> None:
    dev = Device()
    done = dev.admin(0xE2, prp1=DATA)
    assert done[5] == 0
    assert dev.host.ram_read(DATA, 4) == bytes([1, 0, 1, 0])
    assert dev.host.ram_read(DATA + 12, 12) == bytes([9, 1, 8, 1, 1, 1, 4, 4, 2, 2, 0, 1])


# -- write, read, erase --------------------------------------------------------------------
def test_erased_pages_read_as_empty_page_with_their_bitmap() -> None:
    dev = Device()
    status, bitmap, _, _ = dev.read([ppa(0, 0, 0, 0)])
    assert (status, bitmap) == (EMPTY_PAGE, 0b1)
    assert dev.write(page(0, 0, 0, 0)) == (0, 0)
    status, bitmap, data, _ = dev.read(page(0, 0, 0, 0) + page(0, 0, 0, 1))
    assert (status, bitmap) == (EMPTY_PAGE, 0b1100)


def test_written_page_reads_back_with_its_oob() -> None:
    dev = Device()
    oob = bytes(range(32))
    assert dev.write(page(1, 1, 11, 0), oob=oob) == (0, 0)
    status, bitmap, data, meta = dev.read(page(1, 1, 11, 0))
    assert (status, bitmap) == (0, 0)
    assert data == sectors(0x40, 0x41)
    assert meta == oob
    # block (1*2+1)*12+11 = 47, page 0, plane 0: sectors 47*16 = 752 and 753 of the image
    assert dev.data[752 * 4096] == 0x40 and dev.data[753 * 4096] == 0x41
    assert dev.oob[752 * 16:754 * 16] == oob


def test_write_without_mptr_leaves_erased_oob() -> None:
    dev = Device()
    assert dev.write(page(0, 0, 1, 0)) == (0, 0)
    assert dev.read(page(0, 0, 1, 0))[3] == b"\xff" * 32


def test_dual_plane_write_programs_the_page_on_both_planes() -> None:
    dev = Device()
    assert dev.write(page(0, 1, 2, 0, planes=(0, 1)), mode=DUAL) == (0, 0)
    status, _, data, _ = dev.read(page(0, 1, 2, 0, planes=(1,)))
    assert status == 0 and data == sectors(0x42, 0x43)
    # pblk's ws_opt unit: page 1 on both planes, then page 2 in one command with page 3
    assert dev.write(page(0, 1, 2, 1, (0, 1)) + page(0, 1, 2, 2, (0, 1)), mode=DUAL) == (0, 0)
    assert dev.ns.blocks.pages[((0 * 2 + 1) * 12 + 2) * 2:][:2] == [3, 3]


def test_pages_are_programmed_whole_and_in_order() -> None:
    dev = Device()
    invalid = Status.INVALID_FIELD | DNR
    assert dev.write(page(0, 0, 3, 1)) == (invalid, 0b11)           # skips page 0
    assert dev.write(page(0, 0, 3, 0)[:1]) == (invalid, 0b11)       # half a page
    assert dev.write(page(0, 0, 3, 0)[::-1]) == (invalid, 0b11)     # sectors out of order
    assert dev.write(page(0, 0, 3, 0)) == (0, 0)
    assert dev.write(page(0, 0, 3, 0)) == (invalid, 0b11)           # programmed already
    assert dev.write(page(0, 0, 3, 1) + page(0, 0, 3, 3)) == (invalid, 0b1100)
    assert dev.ns.blocks.pages[3 * 2] == 1                          # nothing else landed
    assert dev.write(page(0, 0, 3, 0, planes=(1,))) == (0, 0)       # planes are independent


def test_plane_mode_checks() -> None:
    dev = Device()
    invalid = Status.INVALID_FIELD | DNR
    assert dev.write(page(0, 0, 4, 0, (0, 1)), mode=3) == (invalid, 0)
    assert dev.write(page(0, 0, 4, 0, (0, 1)), mode=QUAD) == (invalid, 0)  # MPOS: dual only
    assert dev.write(page(0, 0, 4, 0), mode=DUAL) == (invalid, 0b11)       # plane 1 missing
    assert dev.read(page(0, 0, 4, 0), mode=QUAD)[:2] == (invalid, 0)
    assert dev.vector(ERASE, [ppa(0, 0, 4, 0)], mode=3) == (invalid, 0)
    # Linux's chunk scan: one PPA with the dual-plane bit
    assert dev.read([ppa(0, 0, 4, 0)], mode=DUAL)[:2] == (EMPTY_PAGE, 0b1)


def test_dual_plane_erase_erases_every_plane_and_single_plane_erase_one() -> None:
    dev = Device()
    assert dev.write(page(1, 0, 5, 0, (0, 1)), mode=DUAL) == (0, 0)
    assert dev.vector(ERASE, [ppa(1, 0, 5, 0, pl=1)]) == (0, 0)
    assert dev.read(page(1, 0, 5, 0, (1,)))[:2] == (EMPTY_PAGE, 0b11)
    assert dev.read(page(1, 0, 5, 0, (0,)))[:2] == (0, 0)
    assert dev.vector(ERASE, [ppa(1, 0, 5, 0)], mode=DUAL) == (0, 0)
    assert dev.read(page(1, 0, 5, 0, (0,)))[:2] == (EMPTY_PAGE, 0b11)
    block = (1 * 2 + 0) * 12 + 5
    assert dev.ns.blocks.erases[block * 2:block * 2 + 2] == [1, 2]
    assert dev.records[block * 8:block * 8 + 8] == bytes([0, 0, 1, 0, 0, 0, 2, 0])


def test_ppas_outside_the_geometry_fail_with_their_bitmap() -> None:
    dev = Device()
    outside = ppa(0, 0, 12, 0)  # block 12 of 12
    assert dev.write(page(0, 0, 0, 0) + [outside, outside + 1]) == \
        (Status.LBA_OUT_OF_RANGE | DNR, 0b1100)
    assert dev.vector(ERASE, [outside]) == (Status.LBA_OUT_OF_RANGE | DNR, 0b1)


def test_nvme_read_of_the_raw_namespace_gives_zeroes_for_erased_sectors() -> None:
    dev = Device()
    assert dev.write(page(0, 0, 0, 0)) == (0, 0)
    dev.host.ram_write(PRP_LIST, struct.pack("<2Q", DATA + 0x1000, DATA + 0x2000))
    dev.host.ram_write(DATA, b"\xaa" * 3 * 4096)
    done = dev.host.command(1, 0x02, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw12=2)
    assert done[5] == 0
    assert dev.host.ram_read(DATA, 3 * 4096) == sectors(0x40, 0x41, 0)


# -- bad-block tables ----------------------------------------------------------------------
def test_get_bad_block_table_header_and_bytes() -> None:
    table = bytearray(96)
    table[24 * 2 + 7 * 2 + 1] = 1      # ch 1 lun 0 blk 7 plane 1: factory bad
    table[24 * 2 + 9 * 2] = 8          # ch 1 lun 0 blk 9 plane 0: host reserved
    dev = Device(bbt=bytes(table))
    status, raw = dev.get_bad_blocks(1, 0)
    assert status == 0
    assert raw[:64] == (b"BBLT" + bytes([1, 0, 0, 0]) + bytes(4) + bytes([24, 0, 0, 0])
                        + bytes([1, 0, 0, 0]) + bytes(4) + bytes(4) + bytes([1, 0, 0, 0])
                        + bytes(32))
    assert raw[64:] == bytes(15) + b"\x01" + bytes(2) + b"\x08" + bytes(5)
    assert dev.admin(GET_BB, prp1=DATA, cdw10=ppa(1, 1, 0, 0) + (1 << 10))[5] == \
        Status.INVALID_FIELD | DNR  # channel 2


def test_set_bad_block_table_inline_and_list_round_trip() -> None:
    dev = Device()
    assert dev.set_bad_blocks([ppa(0, 1, 3, 0, pl=1)], 2) == (0, 0)
    assert dev.set_bad_blocks([ppa(0, 1, 4, 0), ppa(0, 1, 4, 0, pl=1)], 4) == (0, 0)
    status, raw = dev.get_bad_blocks(0, 1)
    assert raw[12:32] == bytes([24, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
    assert raw[64 + 6:64 + 10] == bytes([0, 2, 4, 4])
    assert dev.bbt[24 + 7] == 2 and dev.bbt[24 + 8:24 + 10] == b"\x04\x04"  # in the image
    assert dev.set_bad_blocks([ppa(0, 1, 3, 0)], 3) == (Status.INVALID_FIELD | DNR, 0)


def test_factory_and_grown_bad_blocks_fail_program_and_erase() -> None:
    table = bytearray(96)
    table[2 * 2 + 1] = 1               # ch 0 lun 0 blk 2 plane 1: factory bad
    table[3 * 2] = 2                   # blk 3 plane 0: grown bad
    table[4 * 2] = 8                   # blk 4 plane 0: host reserved, still works
    dev = Device(bbt=bytes(table))
    assert dev.write(page(0, 0, 2, 0) + page(0, 0, 2, 0, (1,))) == (WRITE_FAILED, 0b1100)
    assert dev.ns.blocks.pages[4:6] == [1, 0]
    assert dev.vector(ERASE, [ppa(0, 0, 2, 0)], mode=DUAL) == (WRITE_FAILED, 0b1)
    assert dev.vector(ERASE, [ppa(0, 0, 2, 0)]) == (0, 0)          # plane 0 alone is good
    assert dev.vector(ERASE, [ppa(0, 0, 3, 0)]) == (WRITE_FAILED, 0b1)
    assert dev.write(page(0, 0, 4, 0)) == (0, 0)


# -- error injection and trace -------------------------------------------------------------
def test_injected_write_failure_fails_the_page_then_the_next_erase() -> None:
    faults = (Fault("write", (0, 1, 6), (1, 1)),)  # ch0 lun1 blk6 pl1 pg1
    dev = Device(faults=faults)
    assert dev.write(page(0, 1, 6, 0, (0, 1)), mode=DUAL) == (0, 0)
    assert dev.write(page(0, 1, 6, 1, (0, 1)), mode=DUAL) == (WRITE_FAILED, 0b1100)
    plane_block = ((0 * 2 + 1) * 12 + 6) * 2
    assert dev.ns.blocks.pages[plane_block:plane_block + 2] == [2, 1]
    assert dev.read(page(0, 1, 6, 1, (1,)))[:2] == (EMPTY_PAGE, 0b11)
    assert dev.read(page(0, 1, 6, 0, (1,)))[:2] == (0, 0)           # below still reads
    assert dev.bbt[plane_block:plane_block + 2] == b"\0\0"          # the host decides
    assert dev.write(page(0, 1, 6, 2, (0, 1)), mode=DUAL) == (WRITE_FAILED, 0b1100)
    assert dev.vector(ERASE, [ppa(0, 1, 6, 0)], mode=DUAL) == (WRITE_FAILED, 0b1)
    assert dev.bbt[plane_block:plane_block + 2] == b"\2\2"
    assert dev.get_bad_blocks(0, 1)[1][20] == 2                      # tgrown


def test_injected_erase_failure_retires_the_block() -> None:
    dev = Device(faults=(Fault("reset", (1, 1, 0), ()),))  # ch1 lun1 blk0
    assert dev.vector(ERASE, [ppa(1, 1, 0, 0), ppa(1, 1, 1, 0)], mode=DUAL) == \
        (WRITE_FAILED, 0b1)
    assert dev.get_bad_blocks(1, 1)[1][64:68] == bytes([2, 2, 0, 0])


def test_injected_read_failures_give_ecc_failure_and_high_ecc() -> None:
    # ch0 lun0 blk8 page 0: plane 0 (plane block 16) ECC failure, plane 1 high ECC
    dev = Device(faults=(Fault("read", (0, 0, 8), (0, 0), status="ECC"),
                         Fault("read", (0, 0, 8), (1, 0), status="HIGH_ECC")))
    assert dev.write(page(0, 0, 8, 0, (0, 1)), mode=DUAL) == (0, 0)
    status, bitmap, data, _ = dev.read(page(0, 0, 8, 0, (1,)))
    assert (status, bitmap, data) == (0x4700, 0b11, sectors(0x42, 0x43))  # data is good
    status, bitmap, data, _ = dev.read(page(0, 0, 8, 0, (0,)))
    assert (status, bitmap, data) == (0x4281, 0b11, b"\xaa" * 8192)       # no data
    assert dev.read(page(0, 0, 8, 0, (0, 1)))[:2] == (0x4281, 0b1111)
    assert dev.read(page(0, 0, 7, 0))[:2] == (EMPTY_PAGE, 0b11)           # erased first


def test_trace_decodes_ppas_as_ch_lun_blk_pl_pg_sec() -> None:
    dev = Device()
    out = io.StringIO()
    dev.host.ctrl.tracer = make_tracer(dev.host.ctrl, out, "text")
    dev.write(page(1, 0, 7, 0, (0, 1)), mode=DUAL)
    dev.read([ppa(1, 0, 7, 3)])
    lines = out.getvalue().splitlines()
    assert "VECTOR_CHUNK_WRITE nsid 1 lbas 4 [1/0/7/0/0/0-1, 1/0/7/1/0/0-1]" in lines[0]
    assert lines[0].endswith("-> SUCCESS")
    assert "lbas 1 [1/0/7/0/3/0]" in lines[1]
    assert lines[1].endswith("-> OCSSD12_EMPTY_PAGE+DNR result 0x1")
