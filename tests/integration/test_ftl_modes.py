"""Mode switches never destroy data silently: `ocssd-vfu serve` refuses, in one line
naming what the image holds and leaving the file as it was, --mode ftl on an image pblk
wrote and --mode ocssd on an FTL image; --reformat goes ahead. No guest needed: the
refusal comes before the server listens."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ocssd_vfu.app import ServeOptions, assemble
from tests.conftest import RunCli
from tests.integration.server_process import short_tmpdir
from tests.reference_images import WRITTEN_IMG_MD5, decompress


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def serve_lines(ocssd_vfu: RunCli, image: Path, *args: str) -> tuple[int, list[str]]:
    with short_tmpdir() as workdir:
        done = ocssd_vfu("serve", "--socket", str(workdir / "s.sock"), "--image", str(image),
                         "--once", *args, timeout=120)
    return done.status, done.stderr.strip().splitlines()


def test_ftl_mode_on_the_reference_pblk_image_is_refused(ocssd_vfu: RunCli,
                                                         tmp_path: Path) -> None:
    image = decompress("written.img", tmp_path / "written.img")
    # 12 chunks OPEN or CLOSED (`image info`: FREE 52, OPEN 0, CLOSED 12)
    status, lines = serve_lines(ocssd_vfu, image, "--mode", "ftl")
    assert status == 1
    assert lines == [f"ocssd-vfu serve: {image} holds pblk data (12 chunks written): --mode "
                     "ftl would erase it; pass --reformat to do so"]
    assert md5(image) == WRITTEN_IMG_MD5


def test_ocssd_mode_on_an_ftl_image_is_refused(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "ftl.img"
    assert ocssd_vfu("image", "create", str(image), "--num-grp", "2", "--num-pu", "2",
                     "--num-chk", "16", "--num-sec", "256").status == 0
    assemble(ServeOptions(socket=tmp_path / "unused.sock", image=image, mode="ftl",
                          op_percent=25)).close()
    before = md5(image)
    status, lines = serve_lines(ocssd_vfu, image, "--mode", "ocssd")
    assert status == 1
    assert lines == [f"ocssd-vfu serve: {image} holds an FTL (--mode ftl, op 25 %, 11712 "
                     "blocks of 4096 bytes): serve it with --mode ftl, or pass --reformat "
                     "to erase it for --mode ocssd"]
    assert md5(image) == before
