"""`serve --timing` and the time overrides: the geometry the guest reads equals the model in
force; options that do not apply are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.spec.ocssd import Geometry
from tests.unit.test_devices import image_of


def assembled(path: Path, **options: object):  # type: ignore[no-untyped-def]
    return assemble(ServeOptions(socket=path.with_suffix(".sock"), image=path,
                                 **options))  # type: ignore[arg-type]


def test_2_0_overrides_reach_the_geometry_page_and_the_model(tmp_path: Path) -> None:
    device = assembled(image_of("2.0", tmp_path), timing=True, trdt=500_000, twrt=200_000,
                       tcrst=4_000_000, channel_mbps=400, write_buffer_sectors=24)
    try:
        ns = device.namespaces[1]
        page = Geometry.parse(ns.geometry_page())  # type: ignore[attr-defined]
        assert (page.trdt, page.trdm, page.twrt, page.twrm, page.tcrst, page.tcrsm) == \
            (500_000, 500_000, 200_000, 3_500_000, 4_000_000, 4_000_000)
        p = ns.timing.parameters  # type: ignore[attr-defined]
        assert (p.read_ns, p.program_ns, p.erase_ns, p.page_sectors, p.channel_mbps,
                p.buffer_sectors_per_pu) == (500_000, 200_000, 4_000_000, 8, 400, 24)
    finally:
        device.close()


def test_1_2_overrides_reach_the_identity_and_the_model(tmp_path: Path) -> None:
    device = assembled(image_of("1.2", tmp_path), timing=True, trdt=90_000, tprt=800_000,
                       tbet=5_000_000)
    try:
        ns = device.namespaces[1]
        ident = Ocssd12Geometry.from_bytes(ns.geometry_page())  # type: ignore[attr-defined]
        assert (ident.trdt, ident.trdm, ident.tprt, ident.tprm, ident.tbet, ident.tbem) == \
            (90_000, 100_000, 800_000, 3_500_000, 5_000_000, 5_000_000)
        p = ns.timing.parameters  # type: ignore[attr-defined]
        # 2 sectors per page, 2 planes: 8 pages' sectors (16) + one multi-plane page (4)
        assert (p.read_ns, p.program_ns, p.erase_ns, p.page_sectors, p.planes,
                p.buffer_sectors_per_pu) == (90_000, 800_000, 5_000_000, 2, 2, 20)
        assert ns.timing.layout.pus == 4  # type: ignore[attr-defined]
    finally:
        device.close()


def test_without_timing_no_model_but_the_overrides_are_reported(tmp_path: Path) -> None:
    device = assembled(image_of("2.0", tmp_path), trdt=123_000)
    try:
        ns = device.namespaces[1]
        assert ns.timing is None  # type: ignore[attr-defined]
        assert Geometry.parse(ns.geometry_page()).trdt == 123_000  # type: ignore[attr-defined]
    finally:
        device.close()


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("plain", dict(timing=True), "--timing is for OCSSD images"),
    ("plain", dict(trdt=5), "--trdt is for OCSSD images"),
    ("plain", dict(channel_mbps=100), "--channel-mbps is for OCSSD images"),
    ("1.2", dict(twrt=5), "--twrt and --tcrst are for OCSSD 2.0 images"),
    ("2.0", dict(tbet=5), "--tprt and --tbet are for OCSSD 1.2 images"),
    ("2.0", dict(trdt=-1), "--trdt must be 0 to"),
    ("2.0", dict(timing=True, write_buffer_sectors=3), "timing: buffer_sectors_per_pu=3"),
    ("1.2", dict(timing=True, channel_mbps=0), "--channel-mbps must be at least 1"),
])
def test_timing_options_are_refused_where_they_do_not_apply(
        kind: str, options: dict[str, object], message: str, tmp_path: Path) -> None:
    path = image_of(kind, tmp_path)
    before = path.read_bytes()
    with pytest.raises(ImageError, match=message):
        assembled(path, **options)
    assert path.read_bytes() == before
