"""`serve --mode ftl`: the FTL namespace kind through the real controller (fake host,
guest memory a bytearray) on image files, and the mode-switch rules of devices.py."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.app import Assembled, ServeOptions, assemble
from ocssd_vfu.cli import main as cli_main
from ocssd_vfu.ftlns.namespace import FtlNamespace
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.imagetool import report20
from ocssd_vfu.media import ocssd12_image, ocssd_image
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.ocssd.chunks import ChunkTable
from ocssd_vfu.spec.ftl import FtlLogPage
from ocssd_vfu.spec.nvme import DSM_RANGE_FORMAT, IdentifyNamespace, SmartHealthLog
from tests.unit.fakehost import DATA, FakeHost, prp_list

GET_LOG_PAGE, IDENTIFY = 0x02, 0x06
WRITE, READ, WRITE_ZEROES, DSM = 0x01, 0x02, 0x08, 0x09
SUCCESS, LBA_OUT_OF_RANGE, INVALID_LOG_PAGE = 0, 0x80, 0x109
DNR = 1 << 14
PRP_LIST = DATA + 0x100000

GEOMETRY_20 = OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=32, mw_cunits=8)
GEOMETRY_12 = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=16, num_pg=4,
                              fpg_sz=8192)


def image_20(tmp_path: Path) -> Path:
    path = tmp_path / "ftl20.img"
    ocssd_image.create_image(path, GEOMETRY_20)
    return path


def serve_options(path: Path, **options: object) -> ServeOptions:
    return ServeOptions(socket=path.with_suffix(".sock"), image=path,
                        **options)  # type: ignore[arg-type]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Assembled, FakeHost]]:
    assembled = assemble(serve_options(image_20(tmp_path), mode="ftl", op_percent=20))
    host = FakeHost(namespace=assembled.namespaces[1])
    host.enable()
    host.create_io_queues()
    try:
        yield assembled, host
    finally:
        assembled.close()


def pattern(lba: int) -> bytes:
    return bytes([lba % 251 + 1]) * 4096


def prp2(host: FakeHost, nlb: int) -> int:
    """The second PRP of a buffer of `nlb` pages at DATA: the second page or a list."""
    if nlb <= 2:
        return DATA + 4096
    host.ram_write(PRP_LIST, prp_list([DATA + 4096 * page for page in range(1, nlb)]))
    return PRP_LIST


def write(host: FakeHost, slba: int, nlb: int) -> int:
    host.ram_write(DATA, b"".join(pattern(lba) for lba in range(slba, slba + nlb)))
    return host.command(1, WRITE, nsid=1, prp1=DATA, prp2=prp2(host, nlb), cdw10=slba,
                        cdw12=nlb - 1)[5]


def read(host: FakeHost, slba: int, nlb: int) -> tuple[int, bytes]:
    host.ram_write(DATA, b"\xee" * nlb * 4096)
    status = host.command(1, READ, nsid=1, prp1=DATA, prp2=prp2(host, nlb), cdw10=slba,
                          cdw12=nlb - 1)[5]
    return status, host.ram_read(DATA, nlb * 4096)


def nlbas(assembled: Assembled) -> int:
    ns = assembled.namespaces[1]
    assert isinstance(ns, FtlNamespace)
    return ns.nlbas


def log_page(host: FakeHost, lid: int, size: int, nsid: int) -> tuple[int, bytes]:
    status = host.command(0, GET_LOG_PAGE, nsid=nsid, prp1=DATA,
                          cdw10=lid | (size // 4 - 1) << 16)[5]
    return status, host.ram_read(DATA, size)


def test_the_namespace_is_plain_nvme_of_the_ftl_capacity(served: tuple[Assembled,
                                                                       FakeHost]) -> None:
    assembled, host = served
    assert (assembled.kind.name, assembled.identity.vendor, assembled.identity.device) == \
        ("FTL over OCSSD 2.0", 0x1B36, 0x0010)
    assert host.command(0, IDENTIFY, nsid=1, prp1=DATA)[5] == SUCCESS
    ns = IdentifyNamespace.parse(host.ram_read(DATA, 4096))
    # (64 chunks - 1 superblock - 2 checkpoints) * 32 sectors * 80 / 100
    assert (ns.nsze, ns.ncap, ns.nuse) == (1561, 1561, 0)
    assert (ns.nlbaf, ns.flbas, ns.lbaf[0].lbads, ns.lbaf[0].ms) == (0, 0, 12, 0)
    assert ns.dlfeat == 0x9          # reads zeroes; Write Zeroes deallocates
    assert ns.vs[0] == 0             # no LightNVM vendor byte


def test_writes_read_back_and_deallocated_blocks_read_zeroes(
        served: tuple[Assembled, FakeHost]) -> None:
    _, host = served
    assert write(host, 10, 2) == SUCCESS
    assert read(host, 9, 4) == (SUCCESS, bytes(4096) + pattern(10) + pattern(11) + bytes(4096))
    host.ram_write(PRP_LIST, DSM_RANGE_FORMAT.pack(0, 1, 11))
    assert host.command(1, DSM, nsid=1, prp1=PRP_LIST, cdw10=0, cdw11=0x4)[5] == SUCCESS
    assert read(host, 10, 2) == (SUCCESS, pattern(10) + bytes(4096))
    assert host.command(1, WRITE_ZEROES, nsid=1, cdw10=10, cdw12=0)[5] == SUCCESS
    assert read(host, 10, 1) == (SUCCESS, bytes(4096))
    assert write(host, 1560, 2) == LBA_OUT_OF_RANGE | DNR


def test_smart_counts_host_writes_and_log_c0h_has_the_ftl_figures(
        served: tuple[Assembled, FakeHost]) -> None:
    _, host = served
    for _ in range(3):
        assert write(host, 0, 2) == SUCCESS
    status, smart = log_page(host, 0x02, 512, 0xFFFFFFFF)
    assert (status, SmartHealthLog.parse(smart).data_units_written) == (SUCCESS, 1)
    status, raw = log_page(host, 0xC0, 512, 1)
    page = FtlLogPage.parse(raw)
    assert status == SUCCESS
    assert (page.version, page.op_percent, page.logical_blocks, page.mapped_blocks) == \
        (1, 20, 1561, 2)
    # media: the superblock's unit, the first checkpoint's, one host unit (2 sectors staged)
    assert (page.counters.host_sectors, page.counters.media_sectors) == (6, 12)
    assert log_page(host, 0xD0, 512, 1)[0] == INVALID_LOG_PAGE | DNR


def test_the_trace_shows_the_media_operations_of_a_command(
        served: tuple[Assembled, FakeHost]) -> None:
    _, host = served
    out = io.StringIO()
    host.ctrl.tracer = make_tracer(host.ctrl, out, "text")
    assert write(host, 0, 5) == SUCCESS
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sq 1 cid 1 WRITE nsid 1 slba 0x0 nlb 5 ")
    # chunk 0 holds the superblock, chunk 1 the checkpoint
    assert lines[1:] == ["    program host grp 0 pu 0 chk 2 sectors 0+4",
                         "    stage host grp 1 pu 0 chk 0 sectors 0+1"]


def test_an_ftl_image_recovers_and_auto_serves_it_as_ftl(tmp_path: Path) -> None:
    path = image_20(tmp_path)
    first = assemble(serve_options(path, mode="ftl", op_percent=20))
    host = FakeHost(namespace=first.namespaces[1])
    host.enable()
    host.create_io_queues()
    assert write(host, 7, 3) == SUCCESS
    first.close()
    assert report20.inspect(path).problems == []
    again = assemble(serve_options(path))
    try:
        assert again.kind.name == "FTL over OCSSD 2.0"
        assert again.description.startswith("FTL (recovered) over OCSSD 2.0")
        host = FakeHost(namespace=again.namespaces[1])
        host.enable()
        host.create_io_queues()
        assert read(host, 7, 3) == (SUCCESS, pattern(7) + pattern(8) + pattern(9))
    finally:
        again.close()


def test_ocssd_mode_on_an_ftl_image_is_refused_unless_reformat(tmp_path: Path) -> None:
    path = image_20(tmp_path)
    assemble(serve_options(path, mode="ftl", op_percent=20)).close()
    before = path.read_bytes()
    with pytest.raises(ImageError, match=r"holds an FTL \(--mode ftl, op 20 %, 1561 blocks of "
                                         r"4096 bytes\): serve it with --mode ftl, or pass "
                                         r"--reformat"):
        assemble(serve_options(path, mode="ocssd"))
    with pytest.raises(ImageError, match="its capacity is fixed"):
        assemble(serve_options(path, mode="ftl", op_percent=25))
    assert path.read_bytes() == before
    erased = assemble(serve_options(path, mode="ocssd", reformat=True))
    erased.close()
    assert assemble(serve_options(path)).kind.name == "OCSSD 2.0"


def test_ftl_mode_on_open_channel_data_is_refused_unless_reformat(tmp_path: Path) -> None:
    path = image_20(tmp_path)
    image = ocssd_image.OcssdImage(path)
    log, _, _ = image.namespace_views(image.description.layouts()[0])
    ChunkTable(log, GEOMETRY_20).set(5, 0x4, 0x1, 8, 0)   # OPEN, sequential, WP 8
    image.close()
    with pytest.raises(ImageError, match=r"holds Open-Channel data \(1 chunks written\): "
                                         r"--mode ftl would erase it; pass --reformat"):
        assemble(serve_options(path, mode="ftl"))
    formatted = assemble(serve_options(path, mode="ftl", reformat=True, op_percent=20))
    try:
        assert nlbas(formatted) == 1561   # 61 * 32 * 80 / 100
    finally:
        formatted.close()


def test_chunk_state_applies_only_when_formatting(tmp_path: Path) -> None:
    path = image_20(tmp_path)
    states = tmp_path / "states"
    states.write_text("grp=0 pu=0 chk=0 state=OFFLINE wp=0 type=W_SEQ wi=0\n")
    first = assemble(serve_options(path, mode="ftl", chunk_state=states, op_percent=20))
    try:
        assert nlbas(first) == 1536   # 60 * 32 * 80 / 100: one chunk offline
    finally:
        first.close()
    with pytest.raises(ImageError, match="--chunk-state applies only when an FTL is formatted"):
        assemble(serve_options(path, mode="ftl", chunk_state=states, op_percent=20))


@pytest.mark.parametrize(("options", "message"), [
    (dict(op_percent=10), "--op-percent is for --mode ftl"),
    (dict(gc_policy="cost-benefit"), "--gc-policy is for --mode ftl"),
    (dict(gc_threshold=4), "--gc-threshold is for --mode ftl"),
])
def test_ftl_options_are_refused_elsewhere(options: dict[str, object], message: str,
                                           tmp_path: Path) -> None:
    path = image_20(tmp_path)
    with pytest.raises(ImageError, match=message):
        assemble(serve_options(path, mode="ocssd", **options))


def test_an_ocssd12_image_serves_an_ftl(tmp_path: Path) -> None:
    path = tmp_path / "ftl12.img"
    ocssd12_image.create_image(path, GEOMETRY_12)
    assembled = assemble(serve_options(path, mode="ftl", gc_policy="cost-benefit",
                                       op_percent=30))
    try:
        host = FakeHost(namespace=assembled.namespaces[1])
        host.enable()
        host.create_io_queues()
        assert nlbas(assembled) == 660   # (64 - 5) * 16 * 70 / 100
        assert write(host, 3, 2) == SUCCESS
        assert read(host, 3, 2) == (SUCCESS, pattern(3) + pattern(4))
    finally:
        assembled.close()


def test_image_info_reports_the_ftl_and_still_validates(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    path = image_20(tmp_path)
    assembled = assemble(serve_options(path, mode="ftl", op_percent=20))
    host = FakeHost(namespace=assembled.namespaces[1])
    host.enable()
    host.create_io_queues()
    for _ in range(2):
        assert write(host, 0, 8) == SUCCESS
    assembled.close()                    # shutdown: padding and a checkpoint
    assert cli_main(["image", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "check      : OK" in out
    assert "FTL ns 1   : op 20 %, 1561 logical blocks of 4096 bytes (6 MiB), 8 mapped" in out
    # as of the shutdown's checkpoint, which does not count itself: superblock 4, the
    # first checkpoint 4, host 16 (whole units: no padding)
    assert "  written  : host 16 sectors, media 24 (GC 0, padding 0, metadata 8), " \
           "WAF 1.50" in out
