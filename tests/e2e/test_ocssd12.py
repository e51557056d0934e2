"""The OCSSD 1.2 device end to end: LightNVM's 1.2 path, nvme-cli's lnvm id-ns and
bad-block commands, pblk (recovered through the kernel's chunk scan) and ext4, across
a restart of the server and the guest. Expected values are literals: the identity
from the geometry by hand, pblk's capacities as Linux 5.10 computes them.

Geometry: 2 channels x 2 LUNs x 32 blocks x 64 pages x 2 planes, 16 KiB pages of
four 4096 + 16 byte sectors: PPA = sec | pl << 2 | pg << 3 | blk << 9 | lun << 14 |
ch << 15; a block of both planes is 512 sectors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.guest_runs import NUMBERS_2M_MD5, PATTERN_16M_MD5, READ_BACK, guest_on_image, md5s

pytestmark = pytest.mark.e2e

GEOMETRY = ["--spec", "1.2", "--num-ch", "2", "--num-lun", "2", "--num-pln", "2",
            "--num-blk", "32", "--num-pg", "64"]
FILES = {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}


def _create(ocssd_vfu: RunCli, path: Path, *extra: str) -> Path:
    done = ocssd_vfu("image", "create", str(path), *GEOMETRY, *extra)
    assert done.status == 0, done.stderr
    return path


def _field(out: str, name: str, value: str) -> bool:
    return re.search(rf"^\s*{re.escape(name)}\s*: {re.escape(value)}$", out, re.M) is not None


FIRST_BOOT = """\
dmesg | grep 'nvm: registered'
cat /sys/block/nvme0n1/lightnvm/version /sys/block/nvme0n1/lightnvm/ppa_format
nvme lnvm id-ns /dev/nvme0n1
nvme lnvm diag-bbtbl /dev/nvme0n1 -c 0 -l 1
nvme lnvm diag-set-bbtbl /dev/nvme0n1 -c 1 -l 1 -p 0 -b 28 -v 2
echo "raw $(nvme lnvm diag-bbtbl /dev/nvme0n1 -c 1 -l 1 -b | od -An -tx1 -v | tr -d ' \\n')"
nvme lnvm create -d nvme0n1 -n disk -t pblk
dmesg | grep 'pblk disk: luns'
mkfs.ext4 -q /dev/disk && mount /dev/disk /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
mkdir /mnt/dir && seq 1 400000 | head -c 2097152 > /mnt/dir/numbers
sync
""" + READ_BACK.format(files="pattern dir/numbers") + "umount /mnt\n"
# No `nvme lnvm remove`: pblk's open line is left as a power cut leaves it.

SECOND_BOOT = """\
nvme lnvm diag-bbtbl /dev/nvme0n1 -c 1 -l 1
nvme lnvm create -d nvme0n1 -n disk -t pblk
dmesg | grep 'pblk disk: luns'
mount /dev/disk /mnt
""" + READ_BACK.format(files="pattern dir/numbers") + "umount /mnt\nnvme lnvm remove -n disk\n"


def test_pblk_on_12_recovers_files_and_bad_block_table_across_restart(ocssd_vfu: RunCli,
                                                                      tmp_path: Path) -> None:
    bbt = tmp_path / "bbt"
    bbt.write_text("ch=0 lun=1 pln=0 blk=7 state=FACTORY\nch=1 lun=0 pln=1 blk=30 state=HOST\n")
    image = _create(ocssd_vfu, tmp_path / "one2.img", "--bbt", str(bbt))

    first = guest_on_image(ocssd_vfu, image, FIRST_BOOT).stdout
    assert "nvm: registered nvme0n1 [4/8/32/4/2]" in first   # ws_min/ws_opt/blocks/LUNs/ch
    # sysfs: version 1; ppaf ch 15/1 lun 14/1 pln 2/1 blk 9/5 pg 3/6 sec 0/2
    assert re.search(r"^1\n0x0f010e010201090503060002$", first, re.M)
    for name, value in (("verid", "0x1"), ("cgrps", "1"), ("cap", "0x1"), ("dom", "0"),
                        ("ch offs", "15 ch bits  : 1"), ("lun offs", "14 lun bits : 1"),
                        ("pl offs", "2 pl bits  : 1"), ("blk offs", "9 blk bits : 5"),
                        ("pg offs", "3 pg bits  : 6"), ("sec offs", "0 sec bits : 2"),
                        ("mtype", "0"), ("chnls", "2"), ("luns", "2"), ("plns", "2"),
                        ("blks", "32"), ("pgs", "64"), ("fpg_sz", "16384"), ("csecs", "4096"),
                        ("sos", "16"), ("mpos", "0x20202")):
        assert _field(first, name, value), name
    assert _field(first, "tblks", "64") and _field(first, "tfact", "1")
    assert "Updating: Ch.: 1 LUN: 1 Plane: 0 Block: 28 -> 2" in first
    # nvme-cli's raw output is the table after the header: block 28 plane 0 = 02
    raw = re.search(r"^raw ([0-9a-f]+)$", first, re.M)
    assert raw and raw[1] == "00" * 56 + "02" + "00" * 7
    # The host-reserved plane does not take its block offline (Linux checks bits 0-1 and
    # the first plane): 2 offline blocks, 2 x 512 sectors fewer than a clean device's 44,544
    assert "pblk disk: luns:4, lines:32, secs:43520," in first
    assert md5s(first) == FILES

    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert "bad blocks : FACTORY 1, GROWN 1, DEVICE 0, HOST 1" in info.stdout
    blocks = re.search(r"^blocks     : FREE \d+, OPEN (\d+), CLOSED (\d+), OFFLINE 2$",
                       info.stdout, re.M)
    assert blocks and int(blocks[1]) >= 1 and int(blocks[2]) >= 8  # pblk's line left open
    grown = ocssd_vfu("image", "chunks", str(image), "--ch", "1", "--lun", "1", "--state",
                      "OFFLINE")
    assert grown.stdout.splitlines() == [
        " [  124] { ch:   1, lun:   1, blk:    28, State: OFFLINE , Pages: 0/0, "
        "BBT: GROWN/GOOD, Erases: 0/0 }"]

    second = guest_on_image(ocssd_vfu, image, SECOND_BOOT).stdout  # a new server and guest
    assert _field(second, "tgrown", "1")
    assert "pblk disk: luns:4, lines:32, secs:43520," in second
    assert md5s(second) == FILES


BAD_BLOCKS_BOOT = """\
nvme lnvm diag-bbtbl /dev/nvme0n1 -c 0 -l 0
nvme lnvm create -d nvme0n1 -n disk -t pblk
dmesg | grep 'pblk disk: luns'
mkfs.ext4 -q /dev/disk && mount /dev/disk /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
sync
echo 3 > /proc/sys/vm/drop_caches
""" + READ_BACK.format(files="pattern") + """\
cat /sys/block/disk/pblk/errors
echo "size $(cat /sys/block/disk/size)"
umount /mnt
nvme lnvm remove -n disk
"""


def test_pblk_capacity_excludes_generated_bad_blocks_and_survives_a_write_failure(
        ocssd_vfu: RunCli, tmp_path: Path) -> None:
    """Every 13th block of a plane factory bad (19 of 256, all LUNs), a program failure
    injected in line 2 (line 0 holds bad blocks: Linux 5.10's pblk oopses when a line with
    offline chunks also has a write error), and the trace shows it decoded."""
    image = _create(ocssd_vfu, tmp_path / "bad.img", "--bad-block-frequency", "13")
    fail, trace = tmp_path / "writefail", tmp_path / "trace"
    fail.write_text("ch=0 lun=0 pln=0 blk=2 pg=5 writefail_prob=100\n")
    done = guest_on_image(ocssd_vfu, image, BAD_BLOCKS_BOOT, f"--serve-arg=--write-fail={fail}",
                          f"--serve-arg=--trace={trace}").stdout
    assert _field(done, "tblks", "64") and _field(done, "tfact", "4")
    # 19 offline blocks: 34,816 sectors where a clean device of this geometry has 44,544
    assert "pblk disk: luns:4, lines:32, secs:34816," in done
    assert "size 278528" in done                                # 34,816 x 8 512-byte units
    assert md5s(done) == {"pattern": PATTERN_16M_MD5}
    errors = re.search(r"write_failed=(\d+)", done)  # 2 when the next page was in flight
    assert errors and int(errors[1]) >= 1, done
    failed = [line for line in trace.read_text().splitlines() if "WRITE_FAIL" in line]
    assert failed and re.search(r"VECTOR_CHUNK_WRITE nsid 1 lbas \d+ \[[^]]*0/0/2/0/5/0-3, "
                                r"0/0/2/1/5/0-3[^]]*\] .*-> OCSSD12_WRITE_FAIL\+DNR result "
                                r"0xf0*$", failed[0])  # the 4 PPAs of plane 0's page
    block = ocssd_vfu("image", "chunks", str(image), "--ch", "0", "--lun", "0").stdout
    assert re.search(r"blk:     2, State: OPEN    , Pages: 5/\d+, BBT: GOOD/GOOD", block)
