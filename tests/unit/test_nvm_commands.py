"""NVM I/O commands on a plain namespace over a real raw file (its holes are the
deallocated blocks): metadata layouts, Write Zeroes, Dataset Management, Compare,
Write Uncorrectable, DULBE. Expected values are the spec's, written out."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocssd_vfu.media.raw import RawImage
from ocssd_vfu.plain.namespace import BlockRanges, PlainNamespace
from ocssd_vfu.spec.nvme import IdentifyNamespace
from ocssd_vfu.spec.status import Status
from tests.unit.fakehost import DATA, RAM_BASE, FakeHost, prp_list
from tests.unit.test_ocssd import Device

pytestmark = pytest.mark.usefixtures("both_io_paths")

WRITE, READ, WRITE_UNCORRECTABLE, COMPARE, WRITE_ZEROES, DSM = 0x01, 0x02, 0x04, 0x05, 0x08, 0x09
SET_FEATURES, ERROR_RECOVERY, DULBE = 0x09, 0x05, 1 << 16
MPTR = DATA - 0x2000
RANGES = DATA - 0x3000
PRP_LIST = DATA - 0x4000
UNMAPPED = RAM_BASE - 0x10000

SUCCESS = 0x0000
INVALID_OPCODE_DNR = 0x4001
INVALID_FIELD_DNR = 0x4002
DATA_TRANSFER_ERROR = 0x0004
LBA_OUT_OF_RANGE_DNR = 0x4080
UNRECOVERED_READ_DNR = 0x4281
COMPARE_FAILURE_DNR = 0x4285
DEALLOCATED_OR_UNWRITTEN_DNR = 0x4287

Plain = Callable[..., FakeHost]


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Plain]:
    """A host on a plain namespace over a sparse file of `nlbas` blocks (+ metadata)."""
    images: list[RawImage] = []

    def make(lba_size: int = 4096, md_size: int = 0, extended: bool = False,
             nlbas: int = 64) -> FakeHost:
        path = tmp_path / f"disk{len(images)}.raw"
        with path.open("wb") as f:
            f.truncate(nlbas * (lba_size + md_size))
        image = RawImage(path, lba_size, md_size)
        images.append(image)
        ns = PlainNamespace(1, image.view, lba_size, md_size, extended, allocation=image)
        host = FakeHost(namespace=ns)
        host.enable()
        host.create_io_queues()
        return host

    yield make
    for image in images:  # the mapping goes with the namespace's views
        os.close(image.fd)


def io(host: FakeHost, opc: int, slba: int = 0, nlb: int = 1, **fields: int) -> int:
    """An I/O command on namespace 1; the data buffer is contiguous from PRP1 (DATA),
    described by a PRP list when it spans more than two pages."""
    fields.setdefault("prp1", DATA)
    if "prp2" not in fields and fields["prp1"]:
        ns = host.ctrl.namespaces[1]
        assert isinstance(ns, PlainNamespace)
        pages = [fields["prp1"] + 4096 * i for i in range(1, -(-nlb * ns.host_block_size
                                                               // 4096))]
        if len(pages) == 1:
            fields["prp2"] = pages[0]
        elif pages:
            host.ram_write(PRP_LIST, prp_list(pages))
            fields["prp2"] = PRP_LIST
    cdw12 = (nlb - 1) | fields.pop("cdw12", 0)
    return host.command(1, opc, nsid=1, cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
                        cdw12=cdw12, **fields)[5]


def storage(host: FakeHost) -> memoryview:
    ns = host.ctrl.namespaces[1]
    assert isinstance(ns, PlainNamespace)
    return ns.storage


def dsm(host: FakeHost, ranges: list[tuple[int, int]], attributes: int = 1 << 2) -> int:
    host.ram_write(RANGES, b"".join(struct.pack("<IIQ", 0, length, slba)
                                    for slba, length in ranges))
    return host.command(1, DSM, nsid=1, prp1=RANGES, cdw10=len(ranges) - 1,
                        cdw11=attributes)[5]


def set_dulbe(host: FakeHost, on: bool = True) -> int:
    return host.command(0, SET_FEATURES, cdw10=ERROR_RECOVERY, cdw11=DULBE if on else 0)[5]


# -- metadata -------------------------------------------------------------------------------
def test_separate_metadata_lands_after_all_the_data(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8, nlbas=64)  # data 0..32767, metadata from 32768
    host.ram_write(DATA, b"D" * 1024)
    host.ram_write(MPTR, b"m0m0m0m0" + b"m1m1m1m1")
    assert io(host, WRITE, slba=3, nlb=2, mptr=MPTR) == SUCCESS
    disk = storage(host)
    assert bytes(disk[1536:2560]) == b"D" * 1024
    assert bytes(disk[32768 + 24:32768 + 40]) == b"m0m0m0m0m1m1m1m1"
    host.ram_write(MPTR, bytes(16))
    assert io(host, READ, slba=3, nlb=2, prp1=DATA + 0x4000, mptr=MPTR) == SUCCESS
    assert host.ram_read(MPTR, 16) == b"m0m0m0m0m1m1m1m1"
    assert host.ram_read(DATA + 0x4000, 1024) == b"D" * 1024


def test_extended_lba_interleaves_metadata_in_the_data_buffer(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8, extended=True, nlbas=64)
    block0, block1 = b"a" * 512 + b"A" * 8, b"b" * 512 + b"B" * 8
    host.ram_write(DATA, block0 + block1)
    assert io(host, WRITE, slba=0, nlb=2) == SUCCESS
    disk = storage(host)
    assert bytes(disk[0:1024]) == b"a" * 512 + b"b" * 512
    assert bytes(disk[32768:32784]) == b"A" * 8 + b"B" * 8
    assert io(host, READ, slba=0, nlb=2, prp1=DATA + 0x4000) == SUCCESS
    assert host.ram_read(DATA + 0x4000, 1040) == block0 + block1


def test_unmapped_metadata_buffer_moves_nothing(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8)
    host.ram_write(DATA, b"x" * 512)
    assert io(host, WRITE, mptr=UNMAPPED) == DATA_TRANSFER_ERROR
    assert bytes(storage(host)[0:512]) == bytes(512)
    assert io(host, READ, prp1=DATA, mptr=UNMAPPED) == DATA_TRANSFER_ERROR
    assert host.ram_read(DATA, 512) == b"x" * 512


def test_mdts_counts_extended_metadata(plain: Plain) -> None:
    # MDTS 7 at 4 KiB pages: 524288 bytes. 1008 x 520 = 524160 fits, 1009 x 520 does not.
    host = plain(lba_size=512, md_size=8, extended=True, nlbas=2048)
    assert io(host, READ, nlb=1009) == INVALID_FIELD_DNR
    separate = plain(lba_size=512, md_size=8, nlbas=2048)
    assert io(separate, READ, nlb=1024, mptr=DATA) == SUCCESS


@pytest.mark.parametrize(("lba_size", "md_size", "nlbaf", "flbas", "extra"), [
    (4096, 0, 7, 0x04, None),
    (512, 8, 7, 0x01, None),
    (4096, 64, 7, 0x07, None),
    (512, 32, 8, 0x08, (32, 9)),   # not a standard format: added as format 8
])
def test_identify_namespace_lists_the_formats(plain: Plain, lba_size: int, md_size: int,
                                              nlbaf: int, flbas: int,
                                              extra: tuple[int, int] | None) -> None:
    host = plain(lba_size=lba_size, md_size=md_size, nlbas=10)
    assert host.command(0, 0x06, nsid=1, prp1=DATA, cdw10=0)[5] == SUCCESS
    ident = IdentifyNamespace.parse(host.ram_read(DATA, 4096))
    assert ident.nsze == 10 and ident.nlbaf == nlbaf and ident.flbas == flbas
    assert [(f.ms, f.lbads) for f in ident.lbaf[:8]] == [
        (0, 9), (8, 9), (16, 9), (64, 9), (0, 12), (8, 12), (16, 12), (64, 12)]
    assert (ident.lbaf[8].ms, ident.lbaf[8].lbads) == (extra or (0, 0))
    assert ident.mc == 0x3            # extended and separate metadata both supported
    assert ident.nsfeat == 0x14       # DULBE, OPTPERF (NPDG)
    assert ident.dlfeat == 0x09       # reads of deallocated blocks: zeroes; DEAC supported
    assert ident.npdg == 4096 // lba_size - 1


def test_extended_flag_in_flbas(plain: Plain) -> None:
    host = plain(lba_size=4096, md_size=16, extended=True)
    assert host.command(0, 0x06, nsid=1, prp1=DATA, cdw10=0)[5] == SUCCESS
    assert IdentifyNamespace.parse(host.ram_read(DATA, 4096)).flbas == 0x16


def test_without_a_file_there_is_no_dulbe() -> None:
    host = FakeHost()
    host.enable()
    assert host.command(0, 0x06, nsid=1, prp1=DATA, cdw10=0)[5] == SUCCESS
    assert IdentifyNamespace.parse(host.ram_read(DATA, 4096)).nsfeat == 0x10
    assert set_dulbe(host) == INVALID_FIELD_DNR


# -- Write Zeroes, Dataset Management, DULBE ---------------------------------------------------
def fill(host: FakeHost, slba: int, nlb: int, byte: bytes = b"\xa5") -> None:
    host.ram_write(DATA, byte * 4096 * nlb)
    assert io(host, WRITE, slba=slba, nlb=nlb) == SUCCESS


def test_never_written_blocks_read_zeroes_or_fail_with_dulbe(plain: Plain) -> None:
    host = plain()
    host.ram_write(DATA, b"\xff" * 4096)
    assert io(host, READ, slba=7) == SUCCESS
    assert host.ram_read(DATA, 4096) == bytes(4096)
    assert set_dulbe(host) == SUCCESS
    assert io(host, READ, slba=7) == DEALLOCATED_OR_UNWRITTEN_DNR
    fill(host, 7, 1)
    assert io(host, READ, slba=7) == SUCCESS
    assert set_dulbe(host, on=False) == SUCCESS


def test_write_zeroes_writes_zeroes(plain: Plain) -> None:
    host = plain(md_size=8)
    host.ram_write(MPTR, b"M" * 32)
    host.ram_write(DATA, b"\xa5" * 4096 * 4)
    assert io(host, WRITE, slba=0, nlb=4, mptr=MPTR) == SUCCESS
    assert io(host, WRITE_ZEROES, slba=1, nlb=2) == SUCCESS
    disk = storage(host)
    assert bytes(disk[4096:12288]) == bytes(8192)
    assert bytes(disk[0:4096]) == bytes(disk[12288:16384]) == b"\xa5" * 4096
    assert bytes(disk[64 * 4096:64 * 4096 + 32]) == b"M" * 8 + bytes(16) + b"M" * 8
    assert set_dulbe(host) == SUCCESS
    assert io(host, READ, slba=1, nlb=2, mptr=MPTR) == SUCCESS   # zeroes, but written


def test_write_zeroes_with_deac_deallocates(plain: Plain) -> None:
    host = plain()
    fill(host, 0, 4)
    assert io(host, WRITE_ZEROES, slba=1, nlb=2, cdw12=1 << 25) == SUCCESS
    assert bytes(storage(host)[4096:12288]) == bytes(8192)
    assert set_dulbe(host) == SUCCESS
    assert io(host, READ, slba=1) == DEALLOCATED_OR_UNWRITTEN_DNR
    assert io(host, READ, slba=3) == SUCCESS


def test_dsm_deallocate_punches_holes(plain: Plain) -> None:
    host = plain()
    fill(host, 0, 16)
    assert dsm(host, [(2, 3), (10, 1), (12, 0)]) == SUCCESS  # a zero-length range is no-op
    disk = storage(host)
    assert bytes(disk[2 * 4096:5 * 4096]) == bytes(3 * 4096)
    assert bytes(disk[10 * 4096:11 * 4096]) == bytes(4096)
    assert bytes(disk[12 * 4096:13 * 4096]) == b"\xa5" * 4096
    image = host.ctrl.namespaces[1].allocation  # type: ignore[union-attr]
    assert os.lseek(image.fd, 2 * 4096, os.SEEK_HOLE) == 2 * 4096
    assert set_dulbe(host) == SUCCESS
    assert io(host, READ, slba=4) == DEALLOCATED_OR_UNWRITTEN_DNR
    assert io(host, READ, slba=5) == SUCCESS


def test_dsm_checks_every_range_before_deallocating_any(plain: Plain) -> None:
    host = plain()
    fill(host, 0, 4)
    assert dsm(host, [(0, 2), (63, 2)]) == LBA_OUT_OF_RANGE_DNR
    assert bytes(storage(host)[0:8192]) == b"\xa5" * 8192


def test_dsm_without_deallocate_is_a_hint(plain: Plain) -> None:
    host = plain()
    fill(host, 0, 1)
    assert dsm(host, [(0, 1)], attributes=0b011) == SUCCESS   # IDR, IDW
    assert bytes(storage(host)[0:4096]) == b"\xa5" * 4096


def test_dsm_ranges_unmapped(plain: Plain) -> None:
    host = plain()
    assert host.command(1, DSM, nsid=1, prp1=UNMAPPED, cdw11=1 << 2)[5] == DATA_TRANSFER_ERROR


def test_deallocation_inside_a_file_system_block_zeroes_the_bytes(plain: Plain) -> None:
    host = plain(lba_size=512)
    host.ram_write(DATA, b"\x5a" * 4096)
    assert io(host, WRITE, slba=0, nlb=8) == SUCCESS
    assert dsm(host, [(1, 1)]) == SUCCESS
    disk = storage(host)
    assert bytes(disk[512:1024]) == bytes(512)
    assert bytes(disk[0:512]) == bytes(disk[1024:4096][:512]) == b"\x5a" * 512


# -- Compare ----------------------------------------------------------------------------------
def test_compare_match_and_mismatch(plain: Plain) -> None:
    host = plain()
    fill(host, 5, 2, b"c")
    assert io(host, COMPARE, slba=5, nlb=2) == SUCCESS
    host.ram_write(DATA + 8191, b"d")
    assert io(host, COMPARE, slba=5, nlb=2) == COMPARE_FAILURE_DNR


def test_compare_includes_separate_metadata(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8)
    host.ram_write(DATA, b"c" * 512)
    host.ram_write(MPTR, b"metadata")
    assert io(host, WRITE, mptr=MPTR) == SUCCESS
    assert io(host, COMPARE, mptr=MPTR) == SUCCESS
    host.ram_write(MPTR, b"Metadata")
    assert io(host, COMPARE, mptr=MPTR) == COMPARE_FAILURE_DNR


def test_compare_of_deallocated_blocks(plain: Plain) -> None:
    host = plain()
    host.ram_write(DATA, bytes(4096))
    assert io(host, COMPARE, slba=9) == SUCCESS       # deallocated blocks read as zeroes
    assert set_dulbe(host) == SUCCESS
    assert io(host, COMPARE, slba=9) == DEALLOCATED_OR_UNWRITTEN_DNR


# -- Write Uncorrectable ------------------------------------------------------------------------
def test_write_uncorrectable_until_rewritten(plain: Plain) -> None:
    host = plain()
    fill(host, 0, 8)
    assert io(host, WRITE_UNCORRECTABLE, slba=3, nlb=2, prp1=0) == SUCCESS
    assert io(host, READ, slba=0, nlb=8) == UNRECOVERED_READ_DNR
    assert io(host, READ, slba=4) == UNRECOVERED_READ_DNR
    assert io(host, COMPARE, slba=3) == UNRECOVERED_READ_DNR
    assert io(host, READ, slba=0, nlb=3) == SUCCESS
    assert io(host, READ, slba=5, nlb=3) == SUCCESS
    fill(host, 3, 1, b"n")
    assert io(host, READ, slba=3) == SUCCESS
    assert io(host, READ, slba=4) == UNRECOVERED_READ_DNR
    assert io(host, WRITE_ZEROES, slba=4) == SUCCESS
    assert io(host, READ, slba=0, nlb=8) == SUCCESS


def test_write_uncorrectable_is_not_limited_by_mdts(plain: Plain) -> None:
    host = plain(lba_size=512, nlbas=70000)
    assert io(host, WRITE_UNCORRECTABLE, slba=0, nlb=65536, prp1=0) == SUCCESS
    assert io(host, READ, slba=65535) == UNRECOVERED_READ_DNR
    assert io(host, READ, slba=65536) == SUCCESS


# -- errors common to all ---------------------------------------------------------------------
@pytest.mark.parametrize("opc", [WRITE, READ, WRITE_UNCORRECTABLE, COMPARE, WRITE_ZEROES])
def test_lba_out_of_range(plain: Plain, opc: int) -> None:
    host = plain()
    assert io(host, opc, slba=63, nlb=2) == LBA_OUT_OF_RANGE_DNR
    assert io(host, opc, slba=1 << 40) == LBA_OUT_OF_RANGE_DNR


@pytest.mark.parametrize("opc", [WRITE_UNCORRECTABLE, COMPARE, WRITE_ZEROES])
def test_ocssd_namespaces_do_not_take_in_place_commands(opc: int) -> None:
    device = Device()
    assert device.host.command(1, opc, nsid=1, prp1=DATA)[5] == INVALID_OPCODE_DNR


def test_compare_with_unmapped_metadata_or_in_an_extended_format(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8)
    assert io(host, COMPARE, mptr=UNMAPPED) == DATA_TRANSFER_ERROR
    extended = plain(lba_size=512, md_size=8, extended=True)
    extended.ram_write(DATA, b"e" * 512 + b"E" * 8)
    assert io(extended, WRITE) == SUCCESS
    assert io(extended, COMPARE) == SUCCESS
    extended.ram_write(DATA + 519, b"F")
    assert io(extended, COMPARE) == COMPARE_FAILURE_DNR


# -- serve's options for plain namespaces ------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    (dict(md_size=257), "--md-size must be 0 to 256, not 257"),
    (dict(md_size=-8), "--md-size must be 0 to 256, not -8"),
    (dict(extended_lba=True), "--extended-lba needs metadata"),
    (dict(md_size=8, image="ocssd"), "--md-size and --extended-lba are for plain namespaces"),
])
def test_bad_metadata_options_are_one_line_errors(tmp_path: Path, options: dict[str, object],
                                                  message: str) -> None:
    from ocssd_vfu.app import ServeOptions, assemble
    from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
    from ocssd_vfu.media.ocssd_image import create_image
    from ocssd_vfu.media.raw import ImageError

    image = tmp_path / "disk.img"
    options = dict(options)  # the parameter's dict is shared by every run of the test
    if options.pop("image", None) == "ocssd":
        create_image(image, OcssdGeometry(num_grp=1, num_pu=1, num_chk=12, num_sec=32,
                                          mw_cunits=8))
    else:
        image.write_bytes(bytes(65536))
    before = image.read_bytes()
    with pytest.raises(ImageError, match=message):
        assemble(ServeOptions(socket=tmp_path / "s.sock", image=image, **options))  # type: ignore[arg-type]
    assert image.read_bytes() == before


def test_serve_describes_the_plain_namespace(tmp_path: Path) -> None:
    from ocssd_vfu.app import ServeOptions, assemble

    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(10 * 520 + 7))
    assembled = assemble(ServeOptions(socket=tmp_path / "s.sock", image=image, sec_size=512,
                                      md_size=8))
    try:
        assert assembled.description == ("10 x 512-byte blocks + 8 bytes of metadata "
                                          "(separate buffer), plain NVMe")
        ns = assembled.namespaces[1]
        assert isinstance(ns, PlainNamespace) and ns.md_offset == 5120
    finally:
        assembled.close()


# -- garbage in, a status out -------------------------------------------------------------------
def _fuzz_host(tmp_path: Path, extended: bool) -> tuple[FakeHost, RawImage]:
    # A new file per example: the lock of an earlier example's image lasts until its
    # mapping is collected (the controller is freed by the garbage collector).
    path = tmp_path / f"fuzz-{extended}-{len(list(tmp_path.iterdir()))}.raw"
    with path.open("wb") as f:
        f.truncate(40 * 520)
    image = RawImage(path, 512, 8)
    ns = PlainNamespace(1, image.view, 512, 8, extended, allocation=image)
    host = FakeHost(namespace=ns)
    host.enable()
    host.create_io_queues()
    return host, image


ADDRESSES = st.one_of(st.sampled_from([0, DATA, DATA + 4, DATA + 0xFFC, MPTR, UNMAPPED]),
                      st.integers(0, 2**64 - 1))
DWORDS = st.one_of(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extended=st.booleans(),
       opc=st.sampled_from([WRITE, READ, WRITE_UNCORRECTABLE, COMPARE, WRITE_ZEROES, DSM]),
       prp1=ADDRESSES, prp2=ADDRESSES, mptr=ADDRESSES,
       cdw10=DWORDS, cdw11=st.one_of(st.just(0), DWORDS), cdw12=DWORDS)
def test_any_io_command_gets_a_status(tmp_path: Path, extended: bool, opc: int, prp1: int,
                                      prp2: int, mptr: int, cdw10: int, cdw11: int,
                                      cdw12: int) -> None:
    host, image = _fuzz_host(tmp_path, extended)
    try:
        status = host.command(1, opc, nsid=1, prp1=prp1, prp2=prp2, mptr=mptr, cdw10=cdw10,
                              cdw11=cdw11, cdw12=cdw12)[5]
        assert status & 0x3FFF in set(Status)
    finally:
        os.close(image.fd)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opc=st.sampled_from([0x02, 0x09, 0x0A, 0x80]),
       nsid=st.sampled_from([0, 1, 2, 0xFFFFFFFF]), prp1=ADDRESSES,
       cdw10=DWORDS, cdw11=DWORDS, cdw12=DWORDS, cdw13=DWORDS)
def test_any_admin_command_gets_a_status(tmp_path: Path, opc: int, nsid: int, prp1: int,
                                         cdw10: int, cdw11: int, cdw12: int,
                                         cdw13: int) -> None:
    host, image = _fuzz_host(tmp_path, extended=False)
    try:
        status = host.command(0, opc, nsid=nsid, prp1=prp1, cdw10=cdw10, cdw11=cdw11,
                              cdw12=cdw12, cdw13=cdw13)[5]
        assert status & 0x3FFF in set(Status)
    finally:
        os.close(image.fd)


def test_write_zeroes_of_more_blocks_than_a_zeroing_piece(plain: Plain) -> None:
    host = plain(nlbas=600)                       # 2.3 MiB: three 1 MiB pieces
    host.ram_write(DATA, b"\xa5" * 4096)
    for lba in (0, 255, 256, 257, 598, 599):
        assert io(host, WRITE, slba=lba) == SUCCESS
    assert io(host, WRITE_ZEROES, slba=1, nlb=598) == SUCCESS
    disk = storage(host)
    assert bytes(disk[4096:599 * 4096]) == bytes(598 * 4096)
    assert bytes(disk[0:4096]) == bytes(disk[599 * 4096:600 * 4096]) == b"\xa5" * 4096


@pytest.mark.parametrize(("marks", "clears", "bad"), [
    ([(0, 5), (5, 8)], [], [(0, 8)]),                    # adjacent ranges merge
    ([(10, 12), (0, 5)], [], [(0, 5), (10, 12)]),
    ([(0, 5), (2, 3)], [], [(0, 5)]),
    ([(0, 5), (4, 11), (20, 30)], [], [(0, 11), (20, 30)]),
    ([(0, 5)], [(2, 3)], [(0, 2), (3, 5)]),              # a rewrite in the middle splits
    ([(0, 5)], [(5, 8)], [(0, 5)]),
    ([(0, 5), (10, 15)], [(3, 12)], [(0, 3), (12, 15)]),
    ([(0, 5), (10, 15)], [(0, 15)], []),
])
def test_uncorrectable_block_ranges(marks: list[tuple[int, int]],
                                    clears: list[tuple[int, int]],
                                    bad: list[tuple[int, int]]) -> None:
    ranges = BlockRanges()
    for start, end in marks:
        ranges.add(start, end)
    for start, end in clears:
        ranges.remove(start, end)
    assert list(zip(ranges.starts, ranges.ends, strict=True)) == bad
    for lba in range(32):
        assert ranges.overlaps(lba, lba + 1) == any(a <= lba < b for a, b in bad)


def test_dsm_range_format_agrees_with_the_declaration() -> None:
    from ocssd_vfu.spec.nvme import DSM_RANGE_FORMAT, DatasetManagementRange

    raw = bytes(range(16))
    parsed = DatasetManagementRange.parse(raw)
    assert DSM_RANGE_FORMAT.size == DatasetManagementRange.sizeof() == 16
    assert DSM_RANGE_FORMAT.unpack(raw) == (parsed.context_attributes, parsed.length,
                                            parsed.slba)


def test_mptr_zero_is_no_metadata_buffer(plain: Plain) -> None:
    host = plain(lba_size=512, md_size=8)
    host.ram_write(DATA, b"1" * 512)
    host.ram_write(MPTR, b"metadata")
    assert io(host, WRITE, mptr=MPTR) == SUCCESS
    host.ram_write(DATA, b"2" * 512)
    assert io(host, WRITE, mptr=0) == SUCCESS                 # data only
    disk = storage(host)
    assert bytes(disk[0:512]) == b"2" * 512
    assert bytes(disk[64 * 512:64 * 512 + 8]) == b"metadata"  # kept
    assert io(host, READ, prp1=DATA + 0x4000, mptr=0) == SUCCESS
    assert host.ram_read(DATA + 0x4000, 512) == b"2" * 512
    assert io(host, COMPARE, mptr=0) == SUCCESS
