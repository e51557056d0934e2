"""The qemu-nvme `ocssd` image format, `ocssd-vfu image ...` and the test-file parsers."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd20 import AddressFormat, OcssdGeometry
from ocssd_vfu.imagetool.report20 import Chunk, problems
from ocssd_vfu.media.ocssd_image import OcssdImage
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.ocssd.faults import parse_chunk_states, parse_reset_fail, parse_write_fail
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.openchannel.faults import FaultFileError
from tests.conftest import RunCli
from tests.reference_images import FRESH_IMG_MD5, decompress

SMALL = ["--num-grp", "2", "--num-pu", "2", "--num-chk", "16", "--num-sec", "1024"]
SMALL_SIZE = 269_496_360         # what qemu-img made (ocssd-spec §5.1 file-size quirk)
SMALL_FULL_SIZE = 269_500_416    # the layout with the header padded to a sector


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_create_matches_qemu_img_byte_for_byte(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    done = ocssd_vfu("image", "create", str(image), *SMALL)
    assert done.status == 0, done.stderr
    assert image.stat().st_size == SMALL_SIZE
    assert md5(image) == FRESH_IMG_MD5
    assert md5(decompress("fresh.img", tmp_path / "fresh.img")) == FRESH_IMG_MD5


def test_default_image_is_sparse_and_has_qemu_img_defaults(ocssd_vfu: RunCli,
                                                           tmp_path: Path) -> None:
    image = tmp_path / "default.img"
    assert ocssd_vfu("image", "create", str(image)).status == 0
    # 2 x 8 x 60 chunks of 4096 x (4096 + 16) bytes, + geometry, log (30720 -> 32768), predef.
    assert image.stat().st_size == 40 + 960 * 4096 * 4112 + 4096 + 32768 + 4096
    assert image.stat().st_blocks * 512 < 1 << 20
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert "num_grp 2, num_pu 8, num_chk 60, clba 4096" in info.stdout
    assert "ws_min 4, ws_opt 8, mw_cunits 24, maxoc 0, maxocpu 0, mccap 0x0" in info.stdout
    assert "chunks     : FREE 960, OPEN 0, CLOSED 0, OFFLINE 0" in info.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--ws-opt", "12"], "ws_opt=12: must divide num_sec (4096)"),
    (["--num-pu", "0"], "num_pu=0"),
    (["--sec-size", "3000"], "sec_size=3000"),
])
def test_create_refuses_impossible_geometries(ocssd_vfu: RunCli, tmp_path: Path,
                                              args: list[str], message: str) -> None:
    image = tmp_path / "bad.img"
    done = ocssd_vfu("image", "create", str(image), *args)
    assert done.status == 1 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not image.exists()


def test_create_does_not_overwrite(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "precious.img"
    image.write_bytes(b"keep me")
    done = ocssd_vfu("image", "create", str(image))
    assert done.status == 1 and "exists" in done.stderr
    assert image.read_bytes() == b"keep me"


def _small(tmp_path: Path, ocssd_vfu: RunCli) -> Path:
    image = tmp_path / "small.img"
    assert ocssd_vfu("image", "create", str(image), *SMALL).status == 0
    return image


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b"XXXX" + b[4:], "magic b'XXXX': not an OCSSD image"),
    (lambda b: b[:4] + struct.pack("<I", 2) + b[8:], "version 2"),
    (lambda b: b[:32] + struct.pack("<Q", 12345) + b[40:], "ns_size 12345"),
    (lambda b: b[:4096 + 132] + struct.pack("<I", 7) + b[4096 + 136:], "ws_opt=7"),
])
def test_info_names_the_bad_field_and_changes_nothing(ocssd_vfu: RunCli, tmp_path: Path,
                                                      damage, message: str) -> None:  # type: ignore[no-untyped-def]
    image = _small(tmp_path, ocssd_vfu)
    with image.open("r+b") as f:
        head = f.read(8192)
        f.seek(0)
        f.write(damage(head))
    before = (image.open('rb').read(16384), image.stat().st_size, image.stat().st_mtime_ns)
    for command in (["image", "info", str(image)], ["image", "chunks", str(image)]):
        done = ocssd_vfu(*command)
        assert done.status == 1 and message in done.stderr, done.stderr
    assert (image.open('rb').read(16384), image.stat().st_size, image.stat().st_mtime_ns) == before


def test_truncated_image_is_refused(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = _small(tmp_path, ocssd_vfu)
    os.truncate(image, SMALL_SIZE - 1)
    done = ocssd_vfu("image", "info", str(image))
    assert done.status == 1
    assert f"truncated: {SMALL_SIZE - 1} bytes, the layout needs {SMALL_SIZE}" in done.stderr


def test_info_reports_an_inconsistent_chunk_descriptor(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = _small(tmp_path, ocssd_vfu)
    with image.open("r+b") as f:
        f.seek(8192 + 5 * 32)
        f.write(bytes([0x06]))  # chunk 5: CLOSED and OPEN at once
    done = ocssd_vfu("image", "info", str(image))
    assert done.status == 1
    assert "chunk 5 (grp 0 pu 0 chk 5): state 0x6 is not exactly one of" in done.stdout


def test_serving_extends_a_qemu_img_file_and_keeps_data_across_reopen(ocssd_vfu: RunCli,
                                                                      tmp_path: Path) -> None:
    path = _small(tmp_path, ocssd_vfu)
    image = OcssdImage(path)
    assert path.stat().st_size == SMALL_FULL_SIZE
    (layout,) = image.description.layouts()
    ns = OcssdNamespace(1, image.description.geometry, *image.namespace_views(layout))
    memory = GuestMemory()
    ram = bytearray(0x20000)
    memory.add(0x10000, ram)   # OOB at 0x11000, PRP list at 0x12000, data at 0x20000
    ram[0x2000:0x2038] = struct.pack("<7Q", *range(0x21000, 0x28000, 0x1000))
    ram[0x1000:0x1080] = bytes(range(128))
    last_chunk = 1 << 15 | 1 << 14 | 15 << 10   # grp 1, pu 1, chk 15
    for start in range(0, 1024, 8):
        ram[0x10000:0x18000] = bytes([start % 251]) * 0x8000
        lbas = [last_chunk | sec for sec in range(start, start + 8)]
        write = Command(0x91, 0, 1, 1, 0, 0, 0x11000, 0x20000, 0x12000, 0, 0, 7, 0, 0, 0)
        assert ns.write(memory, 4096, lbas, write) == (0, 0)
    image.close()
    again = OcssdImage(path)
    ns = OcssdNamespace(1, again.description.geometry, *again.namespace_views(layout))
    assert ns.chunks.state[63] == 2 and ns.chunks.wp[63] == 1024
    assert bytes(ns.oob[-128:]) == bytes(range(128))
    again.close()


def test_volatile_image_leaves_the_file_untouched(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    path = _small(tmp_path, ocssd_vfu)
    image = OcssdImage(path, volatile=True)
    (layout,) = image.description.layouts()
    ns = OcssdNamespace(1, image.description.geometry, *image.namespace_views(layout))
    ns.chunks.set(0, 4, 1, 8, 0)
    image.close()
    assert md5(path) == FRESH_IMG_MD5 and path.stat().st_size == SMALL_SIZE


def test_a_second_server_cannot_open_a_locked_image(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    path = _small(tmp_path, ocssd_vfu)
    first = OcssdImage(path)
    with pytest.raises(ImageError, match="in use by another server"):
        OcssdImage(path)
    first.close()


# -- qemu-nvme test files -----------------------------------------------------------------
G = OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=1024)


def test_chunk_state_file(tmp_path: Path) -> None:
    f = tmp_path / "states"
    f.write_text("# comment\n\ngrp=0 pu=0 chk=1 state=OFFLINE wp=65535 type=W_SEQ wi=0\n"
                 "grp=1 pu=1 chk=15 state=OPEN wp=16 type=W_RAN wi=7\n")
    lines = parse_chunk_states(f, G)
    assert [(x.chunk, x.state, x.chunk_type, x.wp, x.wli) for x in lines] == \
        [(1, 8, 1, 65535, 0), (63, 4, 2, 16, 7)]


@pytest.mark.parametrize(("text", "message"), [
    ("grp=0 pu=0 chk=1 state=OPEN wp=8 type=W_SEQ", ":1: missing wi"),
    ("grp=0 pu=0 chk=16 state=OPEN wp=8 type=W_SEQ wi=0", ":1: chk=16 out of range (0..15)"),
    ("grp=0 pu=0 chk=1 state=SHUT wp=8 type=W_SEQ wi=0", "state='SHUT': expected one of"),
    ("\ngrp=0 pu=0 chk=1 state=FREE wp=8 type=W_SEQ wi=0", ":2: a FREE chunk has wp=0"),
    ("grp=0 pu=0 chk=1 state=OPEN wp=x type=W_SEQ wi=0", "wp='x' is not a number"),
    ("grp=0 pu=0 chk=1 state=CLOSED wp=8 type=W_RAN wi=0", "a W_RAN chunk must be OPEN"),
    ("grp=0 pu=0 chk=1 state=OPEN wp=8 type=W_SEQ wi=0 colour=red", "unknown key 'colour'"),
    ("grp=0 pu=0 chk=1 state=CLOSED wp=1025 type=W_SEQ wi=0", "wp=1025 exceeds the chunk's 1024"),
    ("grp=0 pu=0 chk=1 state=OPEN wp=1024 type=W_SEQ wi=0", "an OPEN chunk has wp < 1024"),
])
def test_malformed_chunk_state_lines_are_refused(tmp_path: Path, text: str,
                                                 message: str) -> None:
    f = tmp_path / "states"
    f.write_text(text + "\n")
    with pytest.raises(FaultFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_chunk_states(f, G)


def test_fault_files(tmp_path: Path) -> None:
    write_fail, reset_fail = tmp_path / "wf", tmp_path / "rf"
    write_fail.write_text("grp=1 pu=0 chk=2 sec=40 writefail_prob=100\n")
    reset_fail.write_text("grp=0 pu=1 chk=3 resetfail_prob=50\n")
    assert parse_write_fail(write_fail, G) == {(34, 40): 100}
    assert parse_reset_fail(reset_fail, G) == {19: 50}
    write_fail.write_text("grp=1 pu=0 chk=2 sec=40 writefail_prob=101\n")
    with pytest.raises(FaultFileError, match=r"wf:1: writefail_prob=101 out of range"):
        parse_write_fail(write_fail, G)


@pytest.mark.parametrize(("descriptor", "found"), [
    # (state, type, slba, cnlb, wp) of chunk 17 = grp 0 pu 1 chk 1, SLBA 0x4400 in G.
    ((4, 1, 0x4400, 1024, 8), []),
    ((8, 1, 0x4400, 1024, 0xFFFF), []),
    ((3, 1, 0x4400, 1024, 0), ["state 0x3 is not exactly one of FREE, CLOSED, OPEN, OFFLINE"]),
    ((1, 0x23, 0x4400, 1024, 0), ["type 0x23 is neither sequential nor random"]),
    ((1, 0x11, 0x4400, 512, 0), []),
    ((1, 1, 0x4400, 512, 0), ["cnlb 512, expected 1024"]),
    ((1, 1, 0x4400, 1024, 8), ["FREE with wp 8"]),
    ((2, 1, 0x4400, 1024, 1025), ["wp 1025 beyond cnlb 1024"]),
    ((4, 1, 0x4400, 1024, 1025), ["wp 1025 beyond cnlb 1024",
                                  "OPEN with wp 1025 = cnlb (should be CLOSED)"]),
    ((4, 2, 0x4400, 1024, 1024), []),
    ((8, 1, 0x4400, 1024, 2000), ["OFFLINE with wp 2000"]),
    ((1, 1, 0x2000, 1024, 0), ["slba 0x2000, expected 0x4400"]),
])
def test_chunk_descriptor_problems(descriptor: tuple[int, ...], found: list[str]) -> None:
    state, chunk_type, slba, cnlb, wp = descriptor
    chunk = Chunk(1, 17, 0, 1, 1, state, chunk_type, 0, slba, cnlb, wp)
    assert problems(chunk, AddressFormat(G)) == \
        [f"namespace 1 chunk 17 (grp 0 pu 1 chk 1): {text}" for text in found]


def test_chunk_state_file_is_applied_at_start_and_persisted(ocssd_vfu: RunCli,
                                                            tmp_path: Path) -> None:
    from ocssd_vfu.app import ServeOptions, assemble

    image = _small(tmp_path, ocssd_vfu)
    states = tmp_path / "states"
    states.write_text("grp=0 pu=1 chk=2 state=OFFLINE wp=0 type=W_SEQ wi=3\n"
                      "grp=1 pu=0 chk=0 state=OPEN wp=24 type=W_SEQ wi=1\n")
    assembled = assemble(ServeOptions(socket=tmp_path / "s", image=image, chunk_state=states))
    assembled.close()
    done = ocssd_vfu("image", "chunks", str(image), "--state", "OFFLINE")
    assert done.stdout.splitlines() == [
        " [   18] { SLBA: 0x0000000000004800, WP: 0x000000000000ffff, CNLB: 0x0000000000000400,"
        " State: OFFLINE , Type: SEQWRITE_REQ        , Attr: NONE    , WLI:    3 }"]
    assert "WP: 0x0000000000000018" in ocssd_vfu("image", "chunks", str(image), "--state",
                                                 "OPEN").stdout
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0 and "FREE 62, OPEN 1, CLOSED 0, OFFLINE 1" in info.stdout


def test_malformed_fault_file_stops_the_server_before_it_listens(ocssd_vfu: RunCli,
                                                                 tmp_path: Path) -> None:
    image = _small(tmp_path, ocssd_vfu)
    bad = tmp_path / "wf"
    bad.write_text("grp=0 pu=0 chk=0 sec=4096 writefail_prob=100\n")
    done = ocssd_vfu("serve", "--socket", str(tmp_path / "s"), "--image", str(image),
                     "--write-fail", str(bad))
    assert done.status == 1
    assert f"{bad}:1: sec=4096 out of range (0..1023)" in done.stderr
    assert not (tmp_path / "s").exists()


def test_info_and_chunks_show_erase_counts_an_image_keeps(ocssd_vfu: RunCli,
                                                          tmp_path: Path) -> None:
    image = _small(tmp_path, ocssd_vfu)
    assert "erases" not in ocssd_vfu("image", "info", str(image)).stdout   # none kept yet
    with image.open("r+b") as f:   # chunk 2: FREE, WLI 170 (--pe-cycles 3), 2 erases kept
        f.seek(8192 + 2 * 32 + 2)
        f.write(bytes([170, 0, 2, 0, 0, 0]))
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert "erases     : min 0, max 2, mean 0.03 (P/E cycles spent)" in info.stdout
    chunks = ocssd_vfu("image", "chunks", "--erases", "--pu", "0", str(image)).stdout
    assert "State: FREE    , Type: SEQWRITE_REQ        , Attr: NONE    , WLI:  170 } erases: 2" \
        in chunks.splitlines()[2]
