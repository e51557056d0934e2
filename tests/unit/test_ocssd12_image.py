"""The OCSSD 1.2 image (docs/image-format.md), `ocssd-vfu image ... --spec 1.2`, the --bbt
and 1.2 fault-file parsers, and persistence of blocks and bad-block tables.

The small geometry: 2 channels x 2 LUNs x 12 blocks x 4 pages x 2 planes of two
4096 + 16 byte sectors: 96 plane blocks, 768 sectors. Its layout, by hand:
header 0 (padded to 4096) | identity 4096 | bad-block table 8192 (96 bytes, area
4096) | block records 12288 (384 bytes, area 4096) | data 16384 (3,145,728) |
OOB 3,162,112 (12,288) | end 3,174,400.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.media.ocssd12_image import Ocssd12Image
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.ocssd12.bad_blocks import (
    generated_bad_blocks,
    parse_bad_blocks,
    parse_read_fail,
    parse_reset_fail,
    parse_write_fail,
)
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import FaultFileError
from tests.conftest import RunCli

# PRP1 0x20000, PRP2 0x12000 (a PRP list), MPTR 0x11000 (the OOB)
POINTERS = Command(opc=0, flags=0, cid=0, nsid=1, cdw2=0, cdw3=0, mptr=0x11000, prp1=0x20000,
                   prp2=0x12000, cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0)

SMALL = ["--spec", "1.2", "--num-ch", "2", "--num-lun", "2", "--num-pln", "2", "--num-blk", "12",
         "--num-pg", "4", "--fpg-sz", "8192"]
SMALL_SIZE = 3_174_400
G = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=12, num_pg=4, fpg_sz=8192)


def _create(ocssd_vfu: RunCli, path: Path, *extra: str) -> Path:
    done = ocssd_vfu("image", "create", str(path), *SMALL, *extra)
    assert done.status == 0, done.stderr
    return path


def test_create_writes_header_identity_and_bad_block_table(ocssd_vfu: RunCli,
                                                           tmp_path: Path) -> None:
    bbt = tmp_path / "bbt"
    bbt.write_text("# two bad blocks\nch=0 lun=1 pln=0 blk=7 state=FACTORY\n\n"
                   "ch=1 lun=1 pln=1 blk=11 state=HOST\n")
    image = _create(ocssd_vfu, tmp_path / "small12.img", "--bbt", str(bbt))
    raw = image.read_bytes()
    assert len(raw) == SMALL_SIZE
    # magic "LNVM", version 1, 1 namespace, sector 4096, OOB 16, ns_size 3,170,304
    assert raw[:40] == (b"MVNL" + struct.pack("<III", 1, 1, 0) + struct.pack("<QI", 4096, 16)
                        + bytes(4) + struct.pack("<Q", 3_170_304))
    assert raw[40:4096] == bytes(4056)
    assert raw[4096:4100] == bytes([1, 0, 1, 0])                # identity: version 1
    assert raw[4096 + 260:4096 + 263] == bytes([2, 2, 2])        # channels, LUNs, planes
    table = bytearray(96)
    table[(0 * 2 + 1) * 24 + 7 * 2 + 0] = 1                      # entry 38
    table[(1 * 2 + 1) * 24 + 11 * 2 + 1] = 8                     # entry 95
    assert raw[8192:8192 + 96] == table
    assert raw[8192 + 96:] == bytes(SMALL_SIZE - 8192 - 96)      # blocks erased, no data
    assert os.stat(image).st_blocks * 512 < 64 * 1024            # sparse


def test_default_12_image_is_qemu_ox_geometry(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "ox.img"
    done = ocssd_vfu("image", "create", str(image), "--spec", "1.2")
    assert done.status == 0
    assert "8 channels x 4 LUNs x 32 blocks x 128 pages x 2 planes x 4 sectors (4.00 GiB" \
        in done.stdout
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert "ppaf       : sec 0/2, pln 2/1, pg 3/7, blk 10/5, lun 15/2, ch 17/3" in info.stdout
    assert "blocks     : FREE 1024, OPEN 0, CLOSED 0, OFFLINE 0" in info.stdout


def test_bad_block_frequency_marks_every_nth_plane_block() -> None:
    marked = generated_bad_blocks(G, 10)
    assert sorted(marked) == [9, 19, 29, 39, 49, 59, 69, 79, 89]
    assert set(marked.values()) == {1}
    with pytest.raises(FaultFileError, match="--bad-block-frequency 0: must be at least 1"):
        generated_bad_blocks(G, 0)


def test_image_tools_show_blocks_and_bad_blocks(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = _create(ocssd_vfu, tmp_path / "freq.img", "--bad-block-frequency", "10")
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0
    assert "blocks     : FREE 39, OPEN 0, CLOSED 0, OFFLINE 9" in info.stdout
    assert "bad blocks : FACTORY 9, GROWN 0, DEVICE 0, HOST 0" in info.stdout
    chunks = ocssd_vfu("image", "chunks", str(image), "--ch", "0", "--lun", "0",
                       "--state", "OFFLINE")
    assert chunks.stdout.splitlines() == [
        " [    4] { ch:   0, lun:   0, blk:     4, State: OFFLINE , Pages: 0/0, "
        "BBT: GOOD/FACTORY, Erases: 0/0 }",
        " [    9] { ch:   0, lun:   0, blk:     9, State: OFFLINE , Pages: 0/0, "
        "BBT: GOOD/FACTORY, Erases: 0/0 }"]
    wrong = ocssd_vfu("image", "chunks", str(image), "--grp", "0")
    assert wrong.status == 1 and "--grp: not for an OCSSD 1.2 image" in wrong.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--num-grp", "2"], "--num-grp: not an OCSSD 1.2 option"),
    (["--num-pln", "3"], "num_pln=3: must be 1, 2 or 4"),
])
def test_create_refuses_foreign_options_and_impossible_geometries(
        ocssd_vfu: RunCli, tmp_path: Path, args: list[str], message: str) -> None:
    image = tmp_path / "bad.img"
    done = ocssd_vfu("image", "create", str(image), *SMALL, *args)
    assert done.status == 1 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not image.exists()
    two = ocssd_vfu("image", "create", str(image), "--bad-block-frequency", "3")
    assert two.status == 1 and "--bad-block-frequency: not an OCSSD 2.0 option" in two.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("ch=0 lun=0 pln=0 blk=1 state=BROKEN\n", ":1: state='BROKEN': expected one of FACTORY, "
                                              "GROWN, DEVICE, HOST"),
    ("# fine\nch=2 lun=0 pln=0 blk=1 state=GROWN\n", ":2: ch=2 out of range (0..1)"),
    ("ch=0 lun=0 blk=1 state=GROWN\n", ":1: missing pln"),
    ("ch=0 lun=0 pln=2 blk=1 state=GROWN\n", ":1: pln=2 out of range (0..1)"),
    ("ch=0 lun=0 pln=0 blk=x state=GROWN\n", ":1: blk='x' is not a number"),
])
def test_malformed_bbt_lines_name_file_and_line(ocssd_vfu: RunCli, tmp_path: Path, text: str,
                                                message: str) -> None:
    bbt = tmp_path / "bbt"
    bbt.write_text(text)
    with pytest.raises(FaultFileError) as caught:
        parse_bad_blocks(bbt, G)
    assert str(caught.value) == f"{bbt}{message}"
    image = tmp_path / "x.img"
    done = ocssd_vfu("image", "create", str(image), *SMALL, "--bbt", str(bbt))
    assert done.status == 1 and f"{bbt}{message}" in done.stderr
    assert not image.exists()


def test_fault_files_of_a_12_device(tmp_path: Path) -> None:
    wf, rf = tmp_path / "wf", tmp_path / "rf"
    wf.write_text("ch=1 lun=0 pln=1 blk=3 pg=2 writefail_prob=100\n")
    rf.write_text("ch=0 lun=1 blk=11 resetfail_prob=50\n")
    assert parse_write_fail(wf, G) == {(((1 * 2 + 0) * 12 + 3) * 2 + 1, 2): 100}
    assert parse_reset_fail(rf, G) == {(0 * 2 + 1) * 12 + 11: 50}
    rd = tmp_path / "rd"
    rd.write_text("ch=0 lun=0 pln=1 blk=0 pg=3 status=HIGH_ECC readfail_prob=30\n"
                  "ch=0 lun=0 pln=0 blk=1 pg=0 status=ECC readfail_prob=100\n")
    assert parse_read_fail(rd, G) == {(1, 3): (0x4700, 30), (2, 0): (0x4281, 100)}
    rd.write_text("ch=0 lun=0 pln=1 blk=0 pg=3 status=CRC readfail_prob=30\n")
    with pytest.raises(FaultFileError, match="rd:1: status='CRC': expected one of ECC, "
                                             "HIGH_ECC"):
        parse_read_fail(rd, G)
    wf.write_text("ch=1 lun=0 pln=1 blk=3 pg=4 writefail_prob=100\n")
    with pytest.raises(FaultFileError, match=r"wf:1: pg=4 out of range \(0..3\)"):
        parse_write_fail(wf, G)


def _namespace(image: Ocssd12Image) -> Ocssd12Namespace:
    (layout,) = image.description.layouts()
    return Ocssd12Namespace(1, image.description.geometry, *image.namespace_views(layout))


def test_pages_erases_and_bad_blocks_persist_across_reopen(ocssd_vfu: RunCli,
                                                           tmp_path: Path) -> None:
    path = _create(ocssd_vfu, tmp_path / "persist.img")
    image = Ocssd12Image(path)
    ns = _namespace(image)
    memory = GuestMemory()
    ram = bytearray(0x20000)
    memory.add(0x10000, ram)   # OOB at 0x11000, PRP list at 0x12000, data at 0x20000
    ram[0x2000:0x2018] = struct.pack("<3Q", 0x21000, 0x22000, 0x23000)
    ram[0x1000:0x1040] = bytes(range(64))
    ram[0x10000:0x14000] = b"".join(bytes([0x60 + i]) * 4096 for i in range(4))
    last_block = 1 << 9 | 1 << 8 | 11 << 4    # ch 1, lun 1, blk 11
    dual_page = [last_block | pl << 1 | sec for pl in (0, 1) for sec in (0, 1)]
    assert ns.write(memory, 4096, dual_page, POINTERS, control=1) == (0, 0)
    assert ns.erase([1 << 4], control=1) == (0, 0)                  # ch 0 lun 0 blk 1
    assert ns.set_bad_blocks([2 << 4 | 1 << 1], 2) == (0, 0)        # blk 2 plane 1 grown
    image.close()
    raw = path.read_bytes()
    assert raw[8192 + 5] == 2
    assert raw[12288 + 2 * 4:12288 + 4 * 4] == bytes([0, 0, 1, 0, 0, 0, 1, 0])
    assert raw[12288 + 94 * 4:12288 + 96 * 4] == bytes([1, 0, 0, 0, 1, 0, 0, 0])
    # block 47, page 0: sectors 752-755 of the data and OOB areas
    assert raw[16384 + 752 * 4096:16384 + 756 * 4096:4096] == bytes([0x60, 0x61, 0x62, 0x63])
    assert raw[3_162_112 + 752 * 16:3_162_112 + 756 * 16] == bytes(range(64))
    again = Ocssd12Image(path)
    ns = _namespace(again)
    ram[0x10000:0x14000] = bytes(0x4000)
    assert ns.read(memory, 4096, dual_page, POINTERS, control=0) == (0, 0)
    assert ram[0x10000:0x14000:4096] == bytes([0x60, 0x61, 0x62, 0x63])
    assert ns.bad_block_table(0)[64 + 5] == 2
    again.close()
    info = ocssd_vfu("image", "info", str(path))
    assert "blocks     : FREE 46, OPEN 1, CLOSED 0, OFFLINE 1" in info.stdout
    assert "wear       : erases min 0, max 1, mean 0.02" in info.stdout


def test_info_reports_a_damaged_block_record_and_identity(ocssd_vfu: RunCli,
                                                          tmp_path: Path) -> None:
    path = _create(ocssd_vfu, tmp_path / "damaged.img")
    with path.open("r+b") as f:
        f.seek(12288 + 3 * 4)
        f.write(struct.pack("<H", 5))          # ch 0 lun 0 blk 1 plane 1: 5 of 4 pages
    done = ocssd_vfu("image", "info", str(path))
    assert done.status == 1
    assert "namespace 1 block 1 (ch 0 lun 0 blk 1) plane 1: 5 pages programmed, a block " \
           "has 4" in done.stdout
    with path.open("r+b") as f:
        f.seek(4096 + 12)
        f.write(bytes([10]))                   # ppaf ch offset
    done = ocssd_vfu("image", "info", str(path))
    assert done.status == 1 and "namespace 1: ppaf" in done.stderr
    os.truncate(path, SMALL_SIZE - 1)
    with pytest.raises(ImageError, match="namespace 1: ppaf"):
        Ocssd12Image(path)


def test_truncated_12_image_is_refused(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    path = _create(ocssd_vfu, tmp_path / "short.img")
    os.truncate(path, SMALL_SIZE - 1)
    done = ocssd_vfu("image", "info", str(path))
    assert done.status == 1
    assert f"truncated: {SMALL_SIZE - 1} bytes, the layout needs {SMALL_SIZE}" in done.stderr


def test_serve_assembles_a_12_device_and_refuses_chunk_state(ocssd_vfu: RunCli,
                                                             tmp_path: Path) -> None:
    from ocssd_vfu.app import ServeOptions, assemble

    path = _create(ocssd_vfu, tmp_path / "serve.img")
    assembled = assemble(ServeOptions(socket=tmp_path / "s", image=path))
    try:
        assert isinstance(assembled.namespaces[1], Ocssd12Namespace)
        assert (assembled.identity.vendor, assembled.identity.device) == (0x1D1D, 0x1F1F)
        assert assembled.config.model == "ocssd_vfu OCSSD 1.2 Ctrl"
    finally:
        assembled.close()
    states = tmp_path / "states"
    states.write_text("grp=0 pu=0 chk=0 state=OFFLINE wp=0 type=W_SEQ wi=0\n")
    with pytest.raises(ImageError, match="--chunk-state is for OCSSD 2.0 images"):
        assemble(ServeOptions(socket=tmp_path / "s", image=path, chunk_state=states))
    bad = tmp_path / "wf"
    bad.write_text("ch=0 lun=0 pln=0 blk=12 pg=0 writefail_prob=1\n")
    done = ocssd_vfu("serve", "--socket", str(tmp_path / "s"), "--image", str(path),
                     "--write-fail", str(bad))
    assert done.status == 1 and f"{bad}:1: blk=12 out of range (0..11)" in done.stderr
    assert not (tmp_path / "s").exists()


def test_volatile_12_image_leaves_the_file_untouched_and_namespaces_are_apart(
        ocssd_vfu: RunCli, tmp_path: Path) -> None:
    path = _create(ocssd_vfu, tmp_path / "two.img", "--num-ns", "2")
    assert path.stat().st_size == 4096 + 2 * 3_170_304
    before = path.read_bytes()
    image = Ocssd12Image(path, volatile=True)
    first, second = (Ocssd12Namespace(layout.index + 1, image.description.geometry,
                                      *image.namespace_views(layout))
                     for layout in image.description.layouts())
    assert first.set_bad_blocks([0], 2) == (0, 0)
    assert first.bad_block_table(0)[64] == 2 and second.bad_block_table(0)[64] == 0
    image.close()
    assert path.read_bytes() == before
