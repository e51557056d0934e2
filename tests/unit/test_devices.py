"""Device kind records (devices.py) and the one controller configuration app.py builds
from them: every kind gets the options that apply to all, and refuses, in one line, the
options it does not take."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media import ocssd12_image, ocssd_image
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.nvme.admin import identify_controller
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.spec.nvme import IdentifyController

SGLS = 0x000B0001          # dptr.SGLS: SGLs, Bit Bucket, byte-aligned metadata, MPTR SGL
OACS_DOORBELL_BUFFER_CONFIG = 1 << 8


def image_of(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.img"
    if kind == "1.2":
        ocssd12_image.create_image(path, Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2,
                                                         num_blk=12, num_pg=4, fpg_sz=8192))
    elif kind == "2.0":
        ocssd_image.create_image(path, OcssdGeometry(num_grp=1, num_pu=1, num_chk=12,
                                                     num_sec=32, mw_cunits=8))
    else:
        path.write_bytes(bytes(1 << 20))
    return path


def identify(path: Path, **options: object) -> tuple[int, int, str]:
    """(SGLS, OACS, MN) of the controller `serve` would build for `path`."""
    assembled = assemble(ServeOptions(socket=path.with_suffix(".sock"), image=path,
                                      **options))  # type: ignore[arg-type]
    try:
        ctrl = Controller(GuestMemory(), assembled.namespaces, lambda vector: None,
                          assembled.config)
        ident = IdentifyController.parse(identify_controller(ctrl))
    finally:
        assembled.close()
    return ident.sgls, ident.oacs, ident.mn.rstrip(b" ").decode()


@pytest.mark.parametrize("kind", ["1.2", "2.0", "plain"])
def test_no_sgl_and_no_shadow_doorbells_reach_every_kind(kind: str, tmp_path: Path) -> None:
    path = image_of(kind, tmp_path)
    sgls, oacs, _ = identify(path)
    assert sgls == SGLS and oacs & OACS_DOORBELL_BUFFER_CONFIG
    sgls, oacs, _ = identify(path, sgl=False)
    assert sgls == 0 and oacs & OACS_DOORBELL_BUFFER_CONFIG
    sgls, oacs, _ = identify(path, shadow_doorbells=False)
    assert sgls == SGLS and not oacs & OACS_DOORBELL_BUFFER_CONFIG


@pytest.mark.parametrize("kind", ["1.2", "2.0", "plain"])
def test_poll_reaches_every_kind(kind: str, tmp_path: Path) -> None:
    assembled = assemble(ServeOptions(socket=tmp_path / "s.sock", image=image_of(kind, tmp_path),
                                      poll=True, poll_idle_us=250))
    try:
        assert assembled.config.poll_idle_us == 250
    finally:
        assembled.close()


def test_each_kind_names_its_controller(tmp_path: Path) -> None:
    assert identify(image_of("1.2", tmp_path))[2] == "ocssd_vfu OCSSD 1.2 Ctrl"
    assert identify(image_of("2.0", tmp_path))[2] == "ocssd_vfu OCSSD 2.0 Ctrl"
    assert identify(image_of("plain", tmp_path))[2] == "ocssd_vfu NVMe Ctrl"


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("1.2", dict(early_reset=False), "--no-early-reset is for OCSSD 2.0 images"),
    ("1.2", dict(fast_path=False), "--no-fast-path is for plain and OCSSD 2.0 namespaces"),
    ("1.2", dict(sec_size=512), "--sec-size is for plain namespaces"),
    ("2.0", dict(read_fail=Path("rf")), "--read-fail is for OCSSD 1.2 images"),
    ("plain", dict(volatile=True), "--volatile is for OCSSD images"),
    ("plain", dict(early_reset=False), "--no-early-reset is for OCSSD 2.0 images"),
    ("plain", dict(write_fail=Path("wf")), "--write-fail needs an OCSSD image"),
    ("plain", dict(fault_seed=3), "--fault-seed needs an OCSSD image"),
    ("2.0", dict(poll=True, shadow_doorbells=False), "--poll polls the shadow doorbells: "
     "it cannot go with --no-shadow-doorbells"),
    ("plain", dict(poll_idle_us=50), "--poll-idle-us is for --poll"),
    ("plain", dict(poll=True, poll_idle_us=0), "--poll-idle-us must be 1 to 1000000"),
])
def test_an_option_a_kind_does_not_take_is_refused(kind: str, options: dict[str, object],
                                                   message: str, tmp_path: Path) -> None:
    path = image_of(kind, tmp_path)
    before = path.read_bytes()
    with pytest.raises(ImageError, match=message):
        assemble(ServeOptions(socket=tmp_path / "s.sock", image=path,
                              **options))  # type: ignore[arg-type]
    assert path.read_bytes() == before


def test_mode_insists_on_a_kind(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is not an OCSSD image"):
        assemble(ServeOptions(socket=tmp_path / "s.sock", image=image_of("plain", tmp_path),
                              mode="ocssd"))
    forced = assemble(ServeOptions(socket=tmp_path / "s.sock", image=image_of("2.0", tmp_path),
                                   mode="nvme"))
    try:
        assert forced.kind.name == "plain NVMe"
    finally:
        forced.close()
