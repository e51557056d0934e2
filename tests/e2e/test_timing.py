"""serve --timing in the guest: a large tRD visibly lowers the read IOPS of one PU.

One guest, two devices of 1 group x 4 PUs x 8 chunks x 256 sectors: one served with
--timing --trdt 2000000 (2 ms: one PU completes at most 500 reads/s), one without.
fio reads 4 KiB at random at QD32 from PU 0's LBAs (the first 2048 sectors, 8 MiB) of
each. A coarse check, never a speed assert: the timed device must fall below half of the
untimed one's IOPS and below twice the model's bound.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.owned_processes import Owned

pytestmark = pytest.mark.e2e

TRDT_NS = 2_000_000
BOUND_IOPS = 1e9 / (TRDT_NS + 5_120)  # one PU: tRD + one sector across an 800 MB/s channel
GEOMETRY = ("--num-grp", "1", "--num-pu", "4", "--num-chk", "8", "--num-sec", "256")

FIO_BOTH = """\
for c in /sys/class/nvme/nvme*; do
    echo "device $(cat $c/serial | tr -d ' ')"
    fio --name=pu0 --filename=/dev/$(basename $c)n1 --direct=1 --ioengine=libaio \\
        --iodepth=32 --bs=4k --rw=randread --offset=0 --size=8m --runtime=6 --time_based \\
        --output-format=terse
done
"""


def read_iops(stdout: str) -> dict[str, float]:
    """serial -> read IOPS (terse field 7) of the fio run that followed its line."""
    return {m[1]: float(m[2].split(";")[7])
            for m in re.finditer(r"^device (\S+)\n(3;fio-.*)$", stdout, re.M)}


def test_timing_with_a_large_trd_lowers_one_pu_read_iops(ocssd_vfu: RunCli, owned: Owned,
                                                         workdir: Path) -> None:
    images = [workdir / "timed.img", workdir / "untimed.img"]
    for image in images:
        assert ocssd_vfu("image", "create", str(image), *GEOMETRY).status == 0
    sock = workdir / "timed.sock"
    owned.start_server(sock, images[0], workdir / "timed.log", "--timing", "--trdt",
                       str(TRDT_NS), "--serial", "timed")
    done = ocssd_vfu("guest", "--socket", str(sock), "--image", str(images[1]),
                     "--serve-arg=--serial=untimed", "--timeout", "300", script=FIO_BOTH)
    assert done.status == 0, f"{done.stdout}\n{done.stderr}"
    iops = read_iops(done.stdout)
    assert set(iops) == {"timed", "untimed"}, done.stdout
    print(f"one-PU QD32 4K random reads: {iops['timed']:.0f} IOPS with --timing "
          f"(model's bound {BOUND_IOPS:.0f}), {iops['untimed']:.0f} without")
    assert 0 < iops["timed"] < iops["untimed"] / 2
    assert iops["timed"] < 2 * BOUND_IOPS
