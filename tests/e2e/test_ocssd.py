"""The OCSSD 2.0 device end to end: LightNVM, nvme-cli's lnvm plugin, pblk and ext4 in a
Linux 5.10 guest, across restarts of the server and the guest. Expected values are
literals (from the geometry by hand, or the reference emulator's golden data)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli, fio_terse_fields
from tests.e2e.guest_runs import (
    NUMBERS_2M_MD5,
    PATTERN_16M_MD5,
    READ_BACK,
    guest_on_image,
    md5s,
    state_counts,
)
from tests.reference_images import WRITTEN_FILES_MD5, decompress

pytestmark = pytest.mark.e2e

def _create(ocssd_vfu: RunCli, path: Path, *geometry: str) -> Path:
    done = ocssd_vfu("image", "create", str(path), *geometry)
    assert done.status == 0, done.stderr
    return path


def test_reference_image_recovers_across_restarts(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    """qemu-nvme's own image: pblk recovers without -f, ext4 mounts, files match, twice."""
    image = decompress("written.img", tmp_path / "written.img")
    script = ("nvme lnvm create -d nvme0n1 -n x -t pblk\nmount /dev/x /mnt\n"
              + READ_BACK.format(files=" ".join(WRITTEN_FILES_MD5))
              + "umount /mnt\nnvme lnvm remove -n x\n")
    for _ in range(2):  # a new server and a new guest each time
        done = guest_on_image(ocssd_vfu, image, script)
        assert md5s(done.stdout) == WRITTEN_FILES_MD5
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert "check      : OK" in info.stdout


LNVM_TOOLS = """\
dmesg | grep 'nvm: registered'
cat /sys/block/nvme0n1/lightnvm/version /sys/block/nvme0n1/lightnvm/groups
nvme lnvm list
nvme lnvm info
nvme lnvm id-ns /dev/nvme0n1
nvme lnvm chunk-log /dev/nvme0n1 | head -3
for d in /sys/bus/pci/devices/*; do
    echo "pci $(cat $d/vendor):$(cat $d/device) $(cat $d/class)"
done
"""


def test_pblk_and_ext4_keep_files_across_server_and_guest_restarts(ocssd_vfu: RunCli,
                                                                   tmp_path: Path) -> None:
    """A multi-group geometry: 4 groups x 2 PUs x 24 chunks x 1024 sectors (8 PUs)."""
    image = _create(ocssd_vfu, tmp_path / "four.img", "--num-grp", "4", "--num-pu", "2",
                    "--num-chk", "24", "--num-sec", "1024")
    first = guest_on_image(ocssd_vfu, image, LNVM_TOOLS + """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
dmesg | grep 'pblk disk:'
mkfs.ext4 -q /dev/disk && mount /dev/disk /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
mkdir /mnt/dir && seq 1 400000 | head -c 2097152 > /mnt/dir/numbers
sync
""" + READ_BACK.format(files="pattern dir/numbers") + """\
umount /mnt
nvme lnvm remove -n disk
nvme lnvm chunk-log /dev/nvme0n1
""")
    out = first.stdout
    assert "nvm: registered nvme0n1 [4/8/24/8/4]" in out
    assert re.search(r"^2\.0\n4$", out, re.M)
    assert re.search(r"^nvme0n1\s+gennvm\s+\(1,0,0\)$", out, re.M)
    assert re.search(r"^pblk\s+\(1,0,0\)$", out, re.M)
    for field, value in (("ver_major", "0x2"), ("mccap", "0x4"), ("num_grp", "4"),
                         ("num_pu", "2"), ("num_chk", "24"), ("clba", "1024"), ("ws_min", "4"),
                         ("ws_opt", "8"), ("mw_cunits", "24"), ("grp len", "2"),
                         ("pu len", "1"), ("chk len", "5"), ("clba len", "10")):
        assert re.search(rf"^\s*{field}\s+: {value}$", out, re.M), field
    assert "Total chunks in namespace: 192" in out
    assert re.search(r"^pci 0x1d1d:0x1f1f 0x010802$", out, re.M)
    assert re.search(r"pblk disk: luns:8, lines:24, secs:\d+", out)
    assert md5s(out) == {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}
    guest_states = state_counts(out.split("Total chunks in namespace: 192")[-1])
    assert guest_states.get("OPEN", 0) + guest_states.get("CLOSED", 0) >= 8
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0, info.stdout
    assert (f"chunks     : FREE {guest_states.get('FREE', 0)}, OPEN {guest_states.get('OPEN', 0)},"
            f" CLOSED {guest_states.get('CLOSED', 0)}, OFFLINE 0") in info.stdout

    second = guest_on_image(ocssd_vfu, image, """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
mount /dev/disk /mnt
""" + READ_BACK.format(files="pattern dir/numbers") + "umount /mnt\nnvme lnvm remove -n disk\n")
    assert md5s(second.stdout) == {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}


def test_fio_verify_on_pblk_over_a_pu_range(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    """pblk on group 0 only (-b 0 -e 3 of 8 PUs); fio's crc32c verify; group 1 untouched."""
    image = _create(ocssd_vfu, tmp_path / "range.img", "--num-grp", "2", "--num-pu", "4",
                    "--num-chk", "24", "--num-sec", "1024")
    done = guest_on_image(ocssd_vfu, image, """\
nvme lnvm create -d nvme0n1 -n half -t pblk -b 0 -e 3
dmesg | grep 'pblk half:'
fio --name=verify --filename=/dev/half --direct=1 --ioengine=libaio --iodepth=32 --bs=4k \
    --rw=randwrite --size=48M --verify=crc32c --do_verify=1 --output-format=terse
nvme lnvm remove -n half
""")
    assert re.search(r"pblk half: luns:4, lines:24, secs:\d+", done.stdout)
    assert fio_terse_fields(done.stdout)[4] == "0"
    chunks = ocssd_vfu("image", "chunks", str(image), "--grp", "1")
    assert chunks.status == 0
    assert state_counts(chunks.stdout) == {"FREE": 96}
    used = state_counts(ocssd_vfu("image", "chunks", str(image), "--grp", "0").stdout)
    assert used.get("OPEN", 0) + used.get("CLOSED", 0) >= 4


def test_injected_write_failure_is_seen_and_data_stays_correct(ocssd_vfu: RunCli,
                                                               tmp_path: Path) -> None:
    image = _create(ocssd_vfu, tmp_path / "fail.img", "--num-grp", "1", "--num-pu", "4",
                    "--num-chk", "24", "--num-sec", "1024")
    fail = tmp_path / "writefail"
    # Line 0's chunk on PU 2: its 41st sector is a data sector (smeta takes the first ones).
    fail.write_text("grp=0 pu=2 chk=0 sec=40 writefail_prob=100\n")
    done = guest_on_image(ocssd_vfu, image, """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
mkfs.ext4 -q /dev/disk && mount /dev/disk /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
sync
echo 3 > /proc/sys/vm/drop_caches
""" + READ_BACK.format(files="pattern") + """\
cat /sys/block/disk/pblk/errors
umount /mnt
""", f"--serve-arg=--write-fail={fail}")
    assert md5s(done.stdout) == {"pattern": PATTERN_16M_MD5}
    errors = re.search(r"write_failed=(\d+)", done.stdout)
    assert errors and int(errors[1]) >= 1, done.stdout
    chunks = ocssd_vfu("image", "chunks", str(image), "--pu", "2")
    assert "State: CLOSED  " in chunks.stdout.splitlines()[0]
    assert "WP: 0x0000000000000028" in chunks.stdout.splitlines()[0]
