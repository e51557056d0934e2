"""Images larger than the machine's memory: a sparse OCSSD image is served and inspected
without the server asking the kernel for its size in RAM (a private writable mapping of the
whole file was refused with ENOMEM once the image outgrew RAM + swap)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.media.ocssd_image import create_image

# 8 x 8 x 1024 chunks of 4096 sectors of 4 KiB: 1 TiB of data and 4 GiB of OOB (the file
# is sparse).
TEBIBYTE = OcssdGeometry(num_grp=8, num_pu=8, num_chk=1024, num_sec=4096)


@pytest.fixture(scope="module")
def tebibyte_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = tmp_path_factory.mktemp("large") / "tebibyte.img"
    create_image(image, TEBIBYTE)
    return image


def test_a_tebibyte_image_is_opened_for_serving(tebibyte_image: Path, tmp_path: Path) -> None:
    assembled = assemble(ServeOptions(socket=tmp_path / "unused.sock", image=tebibyte_image))
    try:
        assert assembled.kind.name == "OCSSD 2.0"
        assert assembled.namespaces[1].geometry.num_chk == 1024  # type: ignore[attr-defined]
    finally:
        assembled.close()


def test_image_info_reads_a_tebibyte_image(tebibyte_image: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ocssd_vfu", "image", "info",
                           str(tebibyte_image)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert "check      : OK" in done.stdout


@pytest.mark.skipif(Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1",
                    reason="the kernel grants any mapping (vm.overcommit_memory=1)")
def test_volatile_refuses_an_image_that_cannot_fit_in_memory(tebibyte_image: Path,
                                                             tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ocssd_vfu", "serve", "--volatile",
                           "--socket", str(tmp_path / "vfu.sock"), "--image",
                           str(tebibyte_image)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"ocssd-vfu serve: {tebibyte_image}: --volatile keeps the image "
                           "in memory, and 1103808704512 bytes do not fit (Cannot allocate "
                           "memory)\n")
