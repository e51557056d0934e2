"""Hardening end to end: a full disk under the image, a guest that deletes its driver's
queues, and a real guest after a hostile client, each with the server living on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCli, mounted_tmpfs
from tests.e2e.guest_runs import guest_on_image
from tests.integration.server_process import running_server
from tests.vfio_user_client import Region

pytestmark = pytest.mark.e2e

ADMIN = "nvme admin-passthru /dev/nvme0"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs this test mounts (the images below are far larger, and sparse)."""
    with mounted_tmpfs(tmp_path, "32m") as mount:
        yield mount


PLAIN_SCRIPT = f"""\
{ADMIN} -o 0x09 --cdw10=0x07 --cdw11=0x00030003 2>&1 | sed 's/^/nq: /'
{ADMIN} -o 0x00 --cdw10=1 2>&1 | sed 's/^/delete sq: /'
{ADMIN} -o 0x04 --cdw10=1 2>&1 | sed 's/^/delete cq: /'
nvme reset /dev/nvme0
sleep 1
dd if=/dev/nvme0n1 of=/dev/null bs=4k count=256 iflag=direct 2>&1 | tail -n 1 \
    | sed 's/^/after reset: /'
yes "ocssd-vfu disk full" | head -c 67108864 > /tmp/p
dd if=/tmp/p of=/dev/nvme0n1 bs=1M count=64 oflag=direct 2>&1 | grep -i -E "error|space" \
    | sed 's/^/full: /'
dd if=/dev/nvme0n1 bs=1M count=8 iflag=direct 2>/dev/null | md5sum | sed 's/-/read-back/'
head -c 8388608 /tmp/p | md5sum | sed 's/-/written/'
dmesg | grep -iE "critical space|nospc|I/O error" | head -n 3 | sed 's/^/dmesg: /'
nvme id-ctrl /dev/nvme0 | grep -E "^sn " | sed 's/^/alive: /'
"""


@pytest.mark.timeout(300)
def test_a_full_disk_and_deleted_queues_under_a_plain_image(ocssd_vfu: RunCli,
                                                            small_fs: Path) -> None:
    raw = small_fs / "plain.raw"
    with raw.open("wb") as f:
        f.truncate(256 << 20)   # 256 MiB sparse on 32 MiB
    done = guest_on_image(ocssd_vfu, raw, PLAIN_SCRIPT, "--serve-arg=--verbose", timeout="240")
    console = done.stdout.replace("\r", "")
    print(console, done.stderr)
    assert re.search(r"^nq: .*\(0x400c\)", console, re.M)           # Command Sequence Error
    assert "after reset: 256+0 records out" in console                   # shadow doorbells on
    assert re.search(r"^full: .*No space left on device", console, re.M)
    sums = {name: md5 for md5, name in re.findall(r"^([0-9a-f]{32})  (\S+)$", console, re.M)}
    assert sums["read-back"] == sums["written"], console
    assert "alive: sn" in console
    assert "Traceback" not in done.stderr


def test_a_real_guest_after_a_hostile_client(ocssd_vfu: RunCli) -> None:
    with running_server() as server:
        with server.connect() as hostile:
            hostile.region_write(Region.CONFIG, 0x10, b"\x0D\x00\x00\x00")   # BAR0
            hostile.region_write(Region.CONFIG, 0x04, b"\x00\x00")           # COMMAND
        done = ocssd_vfu("guest", "--socket", str(server.socket), "--timeout", "120",
                         script="nvme id-ctrl /dev/nvme0 | grep -E '^sn '\n"
                                "dd if=/dev/nvme0n1 of=/dev/null bs=4k count=16 iflag=direct "
                                "2>&1 | tail -n 1 | sed 's/^/read: /'\n")
        console = done.stdout.replace("\r", "")
        assert done.status == 0, console + done.stderr
        assert re.search(r"^sn\s+: ocssd-vfu-0", console, re.M), console
        assert "read: 16+0 records out" in console
        server.assert_alive()


PBLK_SCRIPT = """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
yes "ocssd-vfu pblk disk full" | head -c 100663296 > /tmp/p
dd if=/tmp/p of=/dev/disk bs=1M count=8 oflag=direct 2>&1 | tail -n 1 | sed 's/^/first: /'
sync
dd if=/tmp/p of=/dev/disk bs=1M count=88 seek=8 oflag=direct >/tmp/full.log 2>&1 &
for i in $(seq 60); do dmesg | grep -q 'error:16513' && break; sleep 1; done
dd if=/dev/disk bs=1M count=8 iflag=direct 2>/dev/null | md5sum | sed 's/-/read-back/'
head -c 8388608 /tmp/p | md5sum | sed 's/-/written/'
echo "capacity exceeded: $(dmesg | grep -c 'error:16513')"
dmesg | grep -E "no free lines" | sed 's/^/dmesg: /'
"""


@pytest.mark.timeout(400)
def test_a_full_disk_under_pblk(ocssd_vfu: RunCli, small_fs: Path) -> None:
    image = small_fs / "ocssd.img"
    created = ocssd_vfu("image", "create", str(image), "--num-grp", "2", "--num-pu", "2",
                        "--num-chk", "24", "--num-sec", "1024")
    assert created.status == 0, created.stderr
    done = guest_on_image(ocssd_vfu, image, PBLK_SCRIPT, "--serve-arg=--verbose", timeout="200")
    console = done.stdout.replace("\r", "")
    print(console, done.stderr)
    assert "Traceback" not in done.stderr
    assert "first: 8+0 records out" in console
    sums = {name: md5 for md5, name in re.findall(r"^([0-9a-f]{32})  (\S+)$", console, re.M)}
    assert sums["read-back"] == sums["written"], console
    # Each line pblk opened failed with Capacity Exceeded | DNR (0x4081 = 16513) until it
    # had none left; pblk then stalls its writer (it acknowledged the data from its buffer
    # and has no way to fail it): the device side is what this checks.
    assert int(re.search(r"^capacity exceeded: (\d+)$", console, re.M)[1]) > 0
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
