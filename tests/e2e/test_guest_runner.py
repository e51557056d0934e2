"""The guest harness itself (issue: foundation): these prove the runner, not the device."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import RunCli, fio_terse_fields
from tests.e2e.guest_runs import PATTERN_16M_MD5, WRITE_PATTERN

pytestmark = pytest.mark.e2e


def test_guest_boots_with_lightnvm_pblk_and_fio_and_exits_with_the_script_status(
        ocssd_vfu: RunCli) -> None:
    script = ("uname -r\nnvme lnvm info\n"
              "fio --name=nb --filename=/dev/nullb0 --rw=randrw --bs=4k --iodepth=32 "
              "--ioengine=libaio --direct=1 --runtime=2 --time_based --output-format=terse "
              "| cut -d';' -f1-8\n"
              "echo about to fail\nexit 3\n")
    done = ocssd_vfu("guest", "--timeout", "120", script=script)
    assert "5.10." in done.stdout
    assert "LightNVM (1,0,0). 1 target type(s) registered." in done.stdout
    assert re.search(r"^pblk\t\(1,0,0\)", done.stdout, re.M)
    fields = fio_terse_fields(done.stdout)
    assert fields[4] == "0", f"fio reported error {fields[4]}"
    assert int(fields[6]) > 0  # read KiB/s
    assert done.status == 3, done.stderr
    assert "about to fail" in done.stdout
    assert "script exited with status 3" in done.stderr


def test_qemu_nvme_data_survives_a_second_qemu(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(128 << 20)
    write = (f"nvme list\n{WRITE_PATTERN} > /tmp/p\n"
             "dd if=/tmp/p of=/dev/nvme0n1 bs=1M oflag=direct\n"
             "dd if=/dev/nvme0n1 bs=1M count=16 iflag=direct | md5sum\n")
    first = ocssd_vfu("guest", "--qemu-nvme", str(raw), "--timeout", "180", script=write)
    assert first.status == 0, first.stderr
    assert "QEMU NVMe Ctrl" in first.stdout
    assert "/dev/nvme0n1" in first.stdout
    assert PATTERN_16M_MD5 in first.stdout
    second = ocssd_vfu("guest", "--qemu-nvme", str(raw), "--timeout", "180",
                       script="dd if=/dev/nvme0n1 bs=1M count=16 iflag=direct | md5sum\n")
    assert second.status == 0, second.stderr
    assert PATTERN_16M_MD5 in second.stdout


def test_boots_run_the_script_on_every_boot_and_results_arrive_on_the_host(
        ocssd_vfu: RunCli, tmp_path: Path) -> None:
    results = tmp_path / "results"
    script = ('echo "boot $BOOT of $BOOTS" > /results/boot-$BOOT\necho "this is boot $BOOT"\n'
              '[ "$BOOT" = 1 ] && mkdir -p /results/sub && '
              "printf 'line one\\nline two\\n' > /results/sub/a.txt && "
              "head -c 300000 /dev/zero > /results/zeros.bin\n"
              "true\n")
    done = ocssd_vfu("guest", "--boots", "3", "--results", str(results), "--timeout", "180",
                     script=script)
    assert done.status == 0, done.stderr
    assert sorted(p.name for p in results.iterdir()) == ["boot-1", "boot-2", "boot-3", "sub",
                                                          "zeros.bin"]
    assert (results / "boot-2").read_text() == "boot 2 of 3\n"
    assert [m for m in re.findall(r"this is boot (\d)", done.stdout)] == ["1", "2", "3"]
    assert (results / "sub" / "a.txt").read_text() == "line one\nline two\n"
    assert (results / "zeros.bin").read_bytes() == bytes(300000)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_hanging_script_is_killed_at_timeout(ocssd_vfu: RunCli) -> None:
    done = ocssd_vfu("guest", "--timeout", "15", "--verbose", script="echo hanging\nsleep 1000\n")
    assert done.status == 124
    assert "timed out after 15 s" in done.stderr
    workdir = re.search(r"-initrd (/tmp/ocssd-vfu-[^/]+)/initrd", done.stderr)
    assert workdir, done.stderr
    assert not os.path.exists(workdir.group(1))
    assert _processes_mentioning(workdir.group(1)) == []


def test_kernel_panic_is_told_apart(ocssd_vfu: RunCli) -> None:
    done = ocssd_vfu("guest", "--timeout", "120", script="echo c > /proc/sysrq-trigger\nsleep 60\n")
    assert done.status == 126
    assert "guest kernel panicked" in done.stderr


def test_qemu_failure_is_told_apart(ocssd_vfu: RunCli) -> None:
    done = ocssd_vfu("guest", "--timeout", "60", "--qemu-arg=-no-such-option", script="true\n")
    assert done.status == 125
    assert "QEMU exited with status 1 before the guest booted" in done.stderr
    assert "no-such-option" in done.stderr
