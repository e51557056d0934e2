"""The NVM command set and its admin commands end to end: nvme-cli in a Linux guest on a
plain namespace with metadata, then a new server on the formatted file.

Expected numbers come from the workload (the spec's rounding: data units are thousands
of 512-byte units, rounded up), never from the server's code.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.guest_runs import guest_on_image

pytestmark = pytest.mark.e2e

SIZE = 64 << 20
LINE = b"ocssd-vfu test pattern 0123456789abcdef\n"
PATTERN = 'yes "ocssd-vfu test pattern 0123456789abcdef" | head -c {n}'
SMART = ("echo {tag}; nvme smart-log /dev/nvme0 | grep -E "
         "'^(data_units_read|data_units_written|host_read_commands|host_write_commands)'\n")
STATUS = r"NVMe status: \w+:.*\(0x{code:x}\)"

FIRST_BOOT = f"""\
nvme id-ns /dev/nvme0n1 | grep -E '^(nlbaf|flbas|mc|dlfeat|lbaf )'
nvme id-ctrl /dev/nvme0 | grep -E '^(oacs|oncs|lpa) '
nvme effects-log /dev/nvme0
{PATTERN.format(n=8 << 20)} > /tmp/p
{SMART.format(tag="SMART-0")}
dd if=/tmp/p of=/dev/nvme0n1 bs=1M oflag=direct
{SMART.format(tag="SMART-1")}
dd if=/dev/nvme0n1 of=/dev/null bs=4096000 count=2 iflag=direct
{SMART.format(tag="SMART-2")}
head -c 8192 /tmp/p > /tmp/c; head -c 32 /dev/urandom > /tmp/m; head -c 32 /dev/zero > /tmp/m0
nvme write /dev/nvme0n1 -s 64 -c 1 -z 8192 -y 32 -d /tmp/c -M /tmp/m
nvme compare /dev/nvme0n1 -s 64 -c 1 -z 8192 -y 32 -d /tmp/c -M /tmp/m; echo "compare-same $?"
nvme compare /dev/nvme0n1 -s 64 -c 1 -z 8192 -y 32 -d /tmp/c -M /tmp/m0; echo "compare-md $?"
{SMART.format(tag="SMART-3")}
nvme read /dev/nvme0n1 -s 64 -c 1 -z 8192 -y 32 -d /tmp/rd -M /tmp/rm
cmp /tmp/rd /tmp/c && cmp /tmp/rm /tmp/m && echo "metadata read back"
nvme write-zeroes /dev/nvme0n1 -s 16 -c 15
nvme dsm /dev/nvme0n1 -d -s 32 -b 16
nvme set-feature /dev/nvme0 -f 5 -v 0x10000
nvme read /dev/nvme0n1 -s 40 -c 0 -z 4096 -y 16 -d /tmp/rd -M /tmp/rm; echo "dulbe-dsm $?"
nvme read /dev/nvme0n1 -s 20 -c 0 -z 4096 -y 16 -d /tmp/rd -M /tmp/rm; echo "dulbe-zeroes $?"
nvme set-feature /dev/nvme0 -f 5 -v 0
nvme write-uncor /dev/nvme0n1 -s 80 -c 0
dd if=/dev/nvme0n1 of=/dev/null bs=4096 skip=80 count=1 iflag=direct; echo "dd-uncor $?"
nvme read /dev/nvme0n1 -s 80 -c 0 -z 4096 -y 16 -d /tmp/rd -M /tmp/rm
dd if=/tmp/p of=/dev/nvme0n1 bs=4096 skip=80 seek=80 count=1 oflag=direct conv=notrunc
dd if=/dev/nvme0n1 bs=1M count=8 iflag=direct 2>/dev/null | md5sum | sed 's/-/before-format/'
nvme set-feature /dev/nvme0 -f 4 -v 300
nvme smart-log /dev/nvme0 | grep '^critical_warning' | sed 's/^/too-hot /'
nvme get-feature /dev/nvme0 -f 4 -s 1
nvme set-feature /dev/nvme0 -f 4 -v 343
nvme smart-log /dev/nvme0 | grep '^critical_warning' | sed 's/^/normal /'
nvme format /dev/nvme0n1 -l 1 -s 1 --force
nvme id-ns /dev/nvme0n1 | grep -E '^(nsze|flbas) '
echo "sector $(blockdev --getss /dev/nvme0n1)"
dd if=/dev/nvme0n1 bs=1M count=8 iflag=direct 2>/dev/null | md5sum | sed 's/-/erased/'
dd if=/tmp/p of=/dev/nvme0n1 bs=1M count=2 oflag=direct
cat /tmp/m /tmp/m > /tmp/m8
nvme write /dev/nvme0n1 -s 8192 -c 7 -z 4096 -y 64 -d /tmp/c -M /tmp/m8
"""

SECOND_BOOT = """\
nvme id-ns /dev/nvme0n1 | grep -E '^(nsze|flbas) '
dd if=/dev/nvme0n1 bs=1M count=2 iflag=direct 2>/dev/null | md5sum | sed 's/-/after-restart/'
nvme read /dev/nvme0n1 -s 8192 -c 7 -z 4096 -y 64 -d /tmp/rd -M /tmp/rm
md5sum /tmp/rm | sed 's|/tmp/rm|metadata-after-restart|'
nvme set-feature /dev/nvme0 -f 5 -v 0x10000
nvme read /dev/nvme0n1 -s 0 -c 7 -z 4096 -y 64 -d /tmp/rd -M /tmp/rm; echo "dulbe-written $?"
nvme read /dev/nvme0n1 -s 20000 -c 7 -z 4096 -y 64 -d /tmp/rd -M /tmp/rm; echo "dulbe-erased $?"
"""

# The same blocks with the metadata inside the data buffer: 8 x (512 + 8) bytes.
EXTENDED_BOOT = """\
nvme id-ns /dev/nvme0n1 | grep -E '^flbas '
nvme read /dev/nvme0n1 -s 8192 -c 7 -z 4160 -d /tmp/rd
md5sum /tmp/rd | sed 's|/tmp/rd|extended-read|'
{ head -c 512 /dev/zero | tr '\\0' x; head -c 8 /dev/zero | tr '\\0' y; } > /tmp/w
nvme write /dev/nvme0n1 -s 9000 -c 0 -z 520 -d /tmp/w
"""


def pattern(size: int) -> bytes:
    return (LINE * (size // len(LINE) + 1))[:size]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def smart(stdout: str, tag: str) -> dict[str, int]:
    block = stdout.split(tag + "\n", 1)[1].split("SMART-", 1)[0]
    return {m[1]: int(m[2].replace(",", "")) for m in re.finditer(
        r"^(data_units_read|data_units_written|host_read_commands|host_write_commands)"
        r"\s+: ([\d,]+)", block, re.M)}


def units(byte_count: int) -> int:
    """Thousands of 512-byte units, rounded up (NVMe 1.4, SMART / Health log)."""
    return math.ceil(byte_count / 512 / 1000)


def test_nvm_commands_format_and_logs_across_a_restart(ocssd_vfu: RunCli,
                                                       tmp_path: Path) -> None:
    raw = tmp_path / "plain.raw"
    with raw.open("wb") as f:
        f.truncate(SIZE)
    first = guest_on_image(ocssd_vfu, raw, FIRST_BOOT, "--serve-arg=--md-size=16",
                           timeout="300").stdout

    # Identify: eight formats, 4096 + 16 with separate metadata in use.
    assert re.search(r"^nlbaf\s+: 7$", first, re.M)
    assert re.search(r"^flbas\s+: 0x6$", first, re.M)
    assert re.search(r"^lbaf  1 : ms:8\s+lbads:9 ", first, re.M)
    assert re.search(r"^lbaf  6 : ms:16\s+lbads:12 .*\(in use\)", first, re.M)
    assert re.search(r"^oncs\s+: 0x1f$", first, re.M)
    assert re.search(r"^oacs\s+: 0x102$", first, re.M)  # Format, Doorbell Buffer Config
    assert re.search(r"^lpa\s+: 0x6$", first, re.M)
    for line in (r"ACS128\s+\[Format NVM\s+\] 00020007", r"IOCS1\s+\[Write\s+\] 00000003",
                 r"IOCS5\s+\[Compare\s+\] 00000001", r"IOCS8\s+\[Write Zeroes\s+\] 00000003",
                 r"IOCS9\s+\[Dataset Management\s+\] 00000003",
                 r"IOCS4\s+\[Write Uncorrectable\s+\] 00000003"):
        assert re.search(line, first), line

    # SMART: nothing written before; 8 MiB written; 2 x 4,096,000 bytes read (16,000
    # units: exactly 16 more data units whatever was read before).
    before, written, read = (smart(first, f"SMART-{i}") for i in range(3))
    assert before["data_units_written"] == 0 and before["host_write_commands"] == 0
    assert written["data_units_written"] == units(8 << 20) == 17
    assert read["data_units_read"] - written["data_units_read"] == 16
    assert read["data_units_written"] == written["data_units_written"]
    # One nvme write, one matching compare (a read), one failed compare (not counted).
    after = smart(first, "SMART-3")
    assert after["host_write_commands"] == read["host_write_commands"] + 1
    assert after["host_read_commands"] == read["host_read_commands"] + 1
    assert after["data_units_written"] == units((8 << 20) + 8192)

    assert "compare-same 0" in first
    assert re.search(STATUS.format(code=0x4285), first)        # Compare Failure, DNR
    assert "compare-md 5" in first
    assert "metadata read back" in first
    assert "dulbe-dsm 5" in first and "dulbe-zeroes 0" in first
    assert re.search(STATUS.format(code=0x4287), first)        # Deallocated or Unwritten
    assert "dd-uncor 1" in first
    assert re.search(STATUS.format(code=0x4281), first)        # Unrecovered Read Error

    expected = bytearray(pattern(8 << 20))
    expected[16 * 4096:48 * 4096] = bytes(32 * 4096)           # write-zeroes 16-31, dsm 32-47
    expected[64 * 4096:66 * 4096] = pattern(8192)
    assert f"{md5(bytes(expected))}  before-format" in first

    # An over-temperature threshold below the composite temperature (313 K) warns.
    assert re.search(r"^too-hot critical_warning\s+: (0x)?2$", first, re.M)
    assert re.search(r"^normal critical_warning\s+: (0x)?0$", first, re.M)
    assert "(Temperature Threshold), Default value:0x000157" in first

    # Format NVM to 512 + 8, user data erased.
    nlbas = SIZE // (512 + 8)
    assert re.search(rf"^nsze\s+: {nlbas:#x}$", first, re.M)
    assert re.search(r"^flbas\s+: 0x1$", first, re.M)
    assert "sector 512" in first
    assert f"{md5(bytes(8 << 20))}  erased" in first

    second = guest_on_image(ocssd_vfu, raw, SECOND_BOOT, "--serve-arg=--sec-size=512",
                            "--serve-arg=--md-size=8", timeout="300").stdout
    assert re.search(r"^flbas\s+: 0x1$", second, re.M)
    assert f"{md5(pattern(2 << 20))}  after-restart" in second
    assert "dulbe-written 0" in second and "dulbe-erased 5" in second

    # The file: data from offset 0, metadata after all the data (QEMU's layout).
    image = raw.read_bytes()
    assert image[:2 << 20] == pattern(2 << 20)
    assert image[8192 * 512:8200 * 512] == pattern(4096)
    metadata = image[nlbas * 512 + 8192 * 8:nlbas * 512 + 8200 * 8]
    assert f"{md5(metadata)}  metadata-after-restart" in second
    assert metadata[:32] == metadata[32:] and any(metadata)

    # The same file as an extended-LBA format: each block's metadata follows its data.
    third = guest_on_image(ocssd_vfu, raw, EXTENDED_BOOT, "--serve-arg=--sec-size=512",
                           "--serve-arg=--md-size=8", "--serve-arg=--extended-lba",
                           timeout="300").stdout
    assert re.search(r"^flbas\s+: 0x11$", third, re.M)
    blocks = pattern(4096)
    interleaved = b"".join(blocks[i * 512:(i + 1) * 512] + metadata[i * 8:(i + 1) * 8]
                           for i in range(8))
    assert f"{md5(interleaved)}  extended-read" in third
    image = raw.read_bytes()
    assert image[9000 * 512:9001 * 512] == b"x" * 512
    assert image[nlbas * 512 + 9000 * 8:nlbas * 512 + 9001 * 8] == b"y" * 8
