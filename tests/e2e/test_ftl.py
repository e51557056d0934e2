"""`serve --mode ftl` end to end: the guest sees an ordinary NVMe disk (no LightNVM),
keeps an ext4 file system on it across server and guest restarts (OCSSD 1.2 media after a
clean shutdown, OCSSD 2.0 media after a SIGKILL of the server, fsync'd files), and fio
verifies random writes over twice the capacity while GC runs. Sizes are literals from the
capacity formula (README "Device-side FTL") by hand."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.guest_runs import (
    NUMBERS_2M_MD5,
    PATTERN_16M_MD5,
    READ_BACK,
    guest_on_image,
    md5s,
)
from tests.e2e.owned_processes import Console, Owned, guest_argv

pytestmark = pytest.mark.e2e

FTL = ("--serve-arg=--mode", "--serve-arg=ftl", "--serve-arg=--op-percent",
       "--serve-arg=20")

IDENTITY = """\
nvme list
nvme lnvm list
cat /sys/block/nvme0n1/size /sys/block/nvme0n1/queue/logical_block_size
for d in /sys/bus/pci/devices/*; do echo "pci $(cat $d/vendor):$(cat $d/device)"; done
"""
FIRST = IDENTITY + """\
mkfs.ext4 -q /dev/nvme0n1 && mount /dev/nvme0n1 /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
mkdir /mnt/dir && seq 1 400000 | head -c 2097152 > /mnt/dir/numbers
sync
umount /mnt
"""
AGAIN = "mount /dev/nvme0n1 /mnt\n" + READ_BACK.format(files="pattern dir/numbers") + \
    "umount /mnt\ne2fsck -fn /dev/nvme0n1 >/dev/null 2>&1; echo \"e2fsck status $?\"\n"


def assert_a_plain_disk(out: str, blocks: int) -> None:
    """IDENTITY's output: an FTL NVMe disk of BLOCKS 4 KiB blocks, no LightNVM device, a
    plain NVMe PCI function."""
    assert re.search(r"^/dev/nvme0n1 .* ocssd_vfu FTL NVMe Ctrl .* 4 KiB \+  0 B ", out, re.M), out
    assert "Number of devices: 0" in out, out
    assert re.search(rf"^{blocks * 8}\n4096$", out, re.M), out
    assert "pci 0x1b36:0x0010" in out and "0x1d1d" not in out


def test_a_plain_disk_keeps_ext4_files_across_restarts(ocssd_vfu: RunCli,
                                                       tmp_path: Path) -> None:
    """OCSSD 1.2 media (the 2.0 kind: test_fsynced_files_survive_a_sigkill_of_the_server).
    2 x 2 x 32 blocks of 128 pages x 2 planes x 4 sectors: (128 - 3) x 1024 x 80 %."""
    blocks = 102400
    image = tmp_path / "ftl.img"
    assert ocssd_vfu("image", "create", str(image), "--spec", "1.2", "--num-ch", "2",
                     "--num-lun", "2", "--num-blk", "32", "--num-pg", "128", "--num-pln", "2",
                     "--fpg-sz", "16384").status == 0
    out = guest_on_image(ocssd_vfu, image, FIRST, *FTL).stdout.replace("\r", "")
    assert_a_plain_disk(out, blocks)
    again = guest_on_image(ocssd_vfu, image, AGAIN).stdout.replace("\r", "")  # --mode auto
    assert md5s(again) == {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}
    assert "e2fsck status 0" in again
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0 and "check      : OK" in info.stdout, info.stdout
    assert f"op 20 %, {blocks} logical blocks" in info.stdout


def test_fio_verifies_random_writes_over_twice_the_capacity(ocssd_vfu: RunCli,
                                                            tmp_path: Path) -> None:
    """2 x 2 x 16 chunks of 256 sectors, op 25 %: (64 - 3) x 256 x 75 % = 11712 blocks,
    written twice in random order (each pass verified; the second pass in another order,
    so that victims still hold valid sectors): GC must move data and reclaim chunks."""
    image = tmp_path / "small.img"
    assert ocssd_vfu("image", "create", str(image), "--num-grp", "2", "--num-pu", "2",
                     "--num-chk", "16", "--num-sec", "256").status == 0
    script = ("fio --name=gc --filename=/dev/nvme0n1 --rw=randwrite --bs=4k --direct=1 "
              "--ioengine=libaio --iodepth=16 --size=100% --loops=2 --randrepeat=0 "
              "--verify=crc32c "
              "--verify_fatal=1 --output-format=terse\necho \"fio status $?\"\n")
    out = guest_on_image(ocssd_vfu, image, script, "--serve-arg=--mode", "--serve-arg=ftl",
                         "--serve-arg=--op-percent", "--serve-arg=25",
                         timeout="600").stdout
    assert "fio status 0" in out, out
    info = ocssd_vfu("image", "info", str(image)).stdout
    print(info)
    assert "check      : OK" in info
    assert "op 25 %, 11712 logical blocks" in info
    written = re.search(r"host (\d+) sectors, media (\d+) \(GC (\d+),.* WAF (\d+\.\d+)",
                        info)
    gc = re.search(r"GC       : (\d+) runs, (\d+) chunks erased", info)
    assert written is not None and gc is not None, info
    assert int(written[1]) == 2 * 11712          # as of the shutdown's checkpoint
    assert int(written[3]) > 0 and float(written[4]) > 1.0
    assert int(gc[1]) > 0 and int(gc[2]) > 0


KILL_ROUND = IDENTITY + """\
set -e
mkfs.ext4 -q /dev/nvme0n1 && mount /dev/nvme0n1 /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
mkdir /mnt/dir && seq 1 400000 | head -c 2097152 > /mnt/dir/numbers
sync
echo "ftl: synced"
set +e
yes "busy" | head -c 4194304 > /tmp/busy
( while true; do dd if=/tmp/busy of=/mnt/direct bs=1M oflag=direct 2>/dev/null; done ) &
i=0
while true; do
    i=$((i + 1))
    dd if=/tmp/busy of=/mnt/busy$((i % 3)) bs=1M conv=fsync 2>/dev/null
done
"""


@pytest.mark.timeout(600)
def test_fsynced_files_survive_a_sigkill_of_the_server(workdir: Path, owned: Owned,
                                                       ocssd_vfu: RunCli) -> None:
    """OCSSD 2.0 media, 2 x 2 x 24 chunks of 1024: (96 - 1 superblock - 2 x 1 checkpoint)
    x 1024 x 80 % = 76185 blocks; the restart after the SIGKILL is in --mode auto."""
    image = workdir / "ftl.img"
    assert ocssd_vfu("image", "create", str(image), "--num-grp", "2", "--num-pu", "2",
                     "--num-chk", "24", "--num-sec", "1024").status == 0
    sock, log, script = workdir / "s.sock", workdir / "serve.log", workdir / "kill.sh"
    script.write_text(KILL_ROUND)
    server = owned.start_server(sock, image, log, "--mode", "ftl", "--op-percent", "20")
    err = workdir / "runner.err"
    with err.open("wb") as stderr:
        runner = owned.start(guest_argv(script, 300, "--socket", str(sock)),
                             stdout=subprocess.PIPE, stderr=stderr)
    assert runner.stdout is not None
    console = Console(runner.stdout, "ftl: synced")
    deadline = time.monotonic() + 240
    while not console.marker_seen.wait(0.5):
        assert runner.poll() is None and time.monotonic() < deadline, (
            f"no marker\n{console.text}\n{err.read_text()}\n{log.read_text()}")
    time.sleep(1.5)   # the writers are busy
    assert server.poll() is None, log.read_text()
    server.kill()
    assert server.wait(timeout=10) == -signal.SIGKILL
    owned.stop(runner)
    console.thread.join(timeout=10)
    assert_a_plain_disk(console.text, 76185)
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0 and "check      : OK" in info.stdout, info.stdout
    assert "op 20 %, 76185 logical blocks" in info.stdout
    again = guest_on_image(ocssd_vfu, image, AGAIN).stdout.replace("\r", "")
    assert md5s(again) == {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}, again
    assert "e2fsck status 0" in again
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0 and "check      : OK" in info.stdout, info.stdout
