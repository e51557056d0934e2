"""The NVMe controller core end to end: a Linux guest drives ocssd_vfu in plain mode."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli, fio_terse_fields
from tests.e2e.guest_runs import guest_on_image
from tests.e2e.test_guest_runner import PATTERN_64M_MD5, WRITE_PATTERN

pytestmark = pytest.mark.e2e


def _raw(tmp_path: Path, size: int = 256 << 20) -> Path:
    raw = tmp_path / "plain.raw"
    with raw.open("wb") as f:
        f.truncate(size)
    return raw


def test_linux_sees_the_controller(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    script = ("nvme list\nnvme id-ctrl /dev/nvme0 | grep -E '^(vid|mdts|sqes|cqes|nn|subnqn) '\n"
              "nvme id-ns /dev/nvme0n1 | grep -E '^(nsze|ncap|lbaf  4) '\n"
              "nvme smart-log /dev/nvme0 | grep -E '^(available_spare|temperature)\\s'\n")
    done = guest_on_image(ocssd_vfu, _raw(tmp_path), script, timeout="120")
    assert re.search(r"/dev/nvme0n1\s+ocssd-vfu-[0-9a-f]{8}\s+ocssd_vfu NVMe Ctrl\s+1\s+"
                     r"268\.44\s+MB", done.stdout)
    assert re.search(r"^vid\s+: 0x1b36$", done.stdout, re.M)
    assert re.search(r"^mdts\s+: 7$", done.stdout, re.M)
    assert re.search(r"^nsze\s+: 0x10000$", done.stdout, re.M)
    assert re.search(r"^lbaf  4 : ms:0\s+lbads:12 .*in use", done.stdout, re.M)
    assert re.search(r"^available_spare\s+: 100%", done.stdout, re.M)
    assert re.search(r"^temperature\s+: 40 C", done.stdout, re.M)


def test_data_written_direct_reads_back_and_survives_a_new_server(ocssd_vfu: RunCli,
                                                                   tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    write = (f"{WRITE_PATTERN} > /tmp/p\ndd if=/tmp/p of=/dev/nvme0n1 bs=1M oflag=direct\n"
             "dd if=/dev/nvme0n1 bs=1M count=64 iflag=direct | md5sum\n")
    first = guest_on_image(ocssd_vfu, raw, write, timeout="180")
    assert PATTERN_64M_MD5 in first.stdout
    second = guest_on_image(ocssd_vfu, raw, "dd if=/dev/nvme0n1 bs=1M count=64 iflag=direct "
                            "| md5sum\n", timeout="180")
    assert PATTERN_64M_MD5 in second.stdout


def test_fio_randwrite_verify(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    script = ("fio --name=v --filename=/dev/nvme0n1 --rw=randwrite --bs=4k --iodepth=32 "
              "--ioengine=libaio --direct=1 --size=32M --verify=crc32c --output-format=terse "
              "| cut -d';' -f1-8\n")
    done = guest_on_image(ocssd_vfu, _raw(tmp_path), script, timeout="240")
    assert fio_terse_fields(done.stdout)[4] == "0"


def test_reboots_reset_the_device_and_keep_data(ocssd_vfu: RunCli, tmp_path: Path) -> None:
    # Each boot reads the block the previous boot wrote, then writes its own.
    script = ('dd if=/dev/nvme0n1 bs=4k count=1 skip=$BOOT iflag=direct 2>/dev/null '
              '| head -c 11 | tr "\\000" "."; echo " <- read in boot $BOOT"\n'
              'printf "boot-%06d" $BOOT | dd of=/dev/nvme0n1 bs=4k seek=$((BOOT+1)) conv=sync '
              'oflag=direct 2>/dev/null\n')
    done = guest_on_image(ocssd_vfu, _raw(tmp_path, 64 << 20), script, "--boots", "3",
                          timeout="180")
    assert "........... <- read in boot 1" in done.stdout
    assert "boot-000001 <- read in boot 2" in done.stdout
    assert "boot-000002 <- read in boot 3" in done.stdout
