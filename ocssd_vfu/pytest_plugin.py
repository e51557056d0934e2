"""pytest fixtures for testing with an emulated Open-Channel SSD.

Registered as a pytest plugin when ocssd-vfu is installed (entry point `ocssd_vfu`):

    def test_my_ftl(ocssd_served):
        qemu = start_qemu("-device", ocssd_served.qemu_device_json())
        ocssd_served.control.execute("inject-fault", op="write", grp=0, pu=0, chk=5)

- `ocssd_image_factory(**geometry)`: a new OCSSD 2.0 image in the test's tmp_path
  (`spec="1.2"` for a 1.2 one), sparse;
- `ocssd_image`: a small 2.0 image pblk accepts (2 groups x 4 PUs x 16 chunks x 4096
  sectors, 2 GiB sparse);
- `ocssd_served`: that image served with a control socket (api.served_device); the
  test is skipped if this ocssd-vfu's serve has no --control.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ocssd_vfu.api import served_device

if TYPE_CHECKING:
    from ocssd_vfu.api import ServedDevice

SMALL_GEOMETRY = {"num_grp": 2, "num_pu": 4, "num_chk": 16, "num_sec": 4096}

ImageFactory = Callable[..., Path]


@pytest.fixture
def ocssd_image_factory(tmp_path: Path) -> ImageFactory:
    made = 0

    def make(spec: str = "2.0", **geometry: Any) -> Path:
        # Imported here, not when pytest loads the plugin: media/ loads the C shim, whose
        # SIGBUS/SIGSEGV guard must be installed after the test session's faulthandler
        # (native/guard.h), or faulthandler re-raises the faults the guard handles.
        from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
        from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
        from ocssd_vfu.media import ocssd12_image
        from ocssd_vfu.media.ocssd_image import create_image

        nonlocal made
        made += 1
        path = tmp_path / f"ocssd{made}.img"
        if spec == "1.2":
            ocssd12_image.create_image(path, Ocssd12Geometry(**geometry))
        else:
            create_image(path, OcssdGeometry(**geometry))
        return path

    return make


@pytest.fixture
def ocssd_image(ocssd_image_factory: ImageFactory) -> Path:
    return ocssd_image_factory(**SMALL_GEOMETRY)


@pytest.fixture
def ocssd_served(ocssd_image: Path) -> Iterator[ServedDevice]:
    with served_device(ocssd_image) as device:
        yield device
