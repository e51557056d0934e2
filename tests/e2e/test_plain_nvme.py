"""The NVMe controller core end to end: a Linux guest drives ocssd_vfu in plain mode.
(Reboots in one QEMU, each reading what the previous one wrote: test_nvme_dataptr.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli, fio_terse_fields
from tests.e2e.guest_runs import PATTERN_16M_MD5, WRITE_PATTERN, guest_on_image

pytestmark = pytest.mark.e2e

IDENTITY = """\
nvme list
nvme id-ctrl /dev/nvme0 | grep -E '^(vid|mdts|sqes|cqes|nn|subnqn) '
nvme id-ns /dev/nvme0n1 | grep -E '^(nsze|ncap|lbaf  4) '
nvme smart-log /dev/nvme0 | grep -E '^(available_spare|temperature)\\s'
"""
# fio's verify beyond the pattern (which starts at 0), so that both are checked.
FIO_VERIFY = ("fio --name=v --filename=/dev/nvme0n1 --rw=randwrite --bs=4k --iodepth=32 "
              "--ioengine=libaio --direct=1 --offset=64M --size=32M --verify=crc32c "
              "--output-format=terse | cut -d';' -f1-8\n")
READ_PATTERN = "dd if=/dev/nvme0n1 bs=1M count=16 iflag=direct | md5sum\n"


def test_linux_sees_the_controller_and_data_survives_a_new_server(ocssd_vfu: RunCli,
                                                                 tmp_path: Path) -> None:
    raw = tmp_path / "plain.raw"
    with raw.open("wb") as f:
        f.truncate(256 << 20)
    write = (f"{WRITE_PATTERN} > /tmp/p\ndd if=/tmp/p of=/dev/nvme0n1 bs=1M oflag=direct\n"
             + READ_PATTERN)
    done = guest_on_image(ocssd_vfu, raw, IDENTITY + write + FIO_VERIFY, timeout="240")
    assert re.search(r"/dev/nvme0n1\s+ocssd-vfu-[0-9a-f]{8}\s+ocssd_vfu NVMe Ctrl\s+1\s+"
                     r"268\.44\s+MB", done.stdout)
    assert re.search(r"^vid\s+: 0x1b36$", done.stdout, re.M)
    assert re.search(r"^mdts\s+: 7$", done.stdout, re.M)
    assert re.search(r"^nsze\s+: 0x10000$", done.stdout, re.M)
    assert re.search(r"^lbaf  4 : ms:0\s+lbads:12 .*in use", done.stdout, re.M)
    assert re.search(r"^available_spare\s+: 100%", done.stdout, re.M)
    assert re.search(r"^temperature\s+: 40 C", done.stdout, re.M)
    assert PATTERN_16M_MD5 in done.stdout
    assert fio_terse_fields(done.stdout)[4] == "0"
    second = guest_on_image(ocssd_vfu, raw, READ_PATTERN, timeout="180")
    assert PATTERN_16M_MD5 in second.stdout
