"""A hostile guest's barrage through `nvme admin-passthru` / `io-passthru`, then a write
and read-back with O_DIRECT on the same device.

Every command of the barrage must fail with the NVMe status the spec names for it (as
nvme-cli prints it), the device must still serve I/O afterwards, and the server must not
have logged an exception. Left out, as the issue says: commands that would harm the guest
rather than the device (a transfer longer than the ioctl's buffer, Doorbell Buffer Config,
deleting the driver's queues, LBA lists, which are guest-physical addresses); fused and
SGL flags never reach the device (Linux refuses any flags in a passthrough ioctl).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.guest_runs import guest_on_image

pytestmark = pytest.mark.e2e

GEOMETRY = ("--num-grp", "2", "--num-pu", "2", "--num-chk", "24", "--num-sec", "1024")
# LBA = sec | chk << 10 | pu << 15 | grp << 16 for this geometry.
FREE_CHUNK_5 = 5 << 10
ADMIN, IO = "nvme admin-passthru /dev/nvme0", "nvme io-passthru /dev/nvme0n1 -n 1"
READ4K, WRITE4K = "-l 4096 -r", "-l 4096 -w -i /tmp/zero4k"

# (name, command, expected status: SCT << 8 | SC, as the spec numbers it)
BARRAGE = [
    ("admin opcode ffh", f"{ADMIN} -o 0xff", 0x001),                         # Invalid Opcode
    ("identify cns 55h", f"{ADMIN} -o 0x06 --cdw10=0x55 {READ4K}", 0x002),    # Invalid Field
    ("identify ns 77h", f"{ADMIN} -o 0x06 -n 0x77 {READ4K}", 0x00B),          # Invalid NS
    ("get log 7fh", f"{ADMIN} -o 0x02 --cdw10=0x007f007f -l 512 -r", 0x109),  # Invalid Log Page
    ("chunk log past end", f"{ADMIN} -o 0x02 -n 1 --cdw10=0x03ff00ca --cdw12=0x100000 "
     f"{READ4K}", 0x002),
    ("get log beyond mdts", f"{ADMIN} -o 0x02 --cdw10=0xffff0002 --cdw11=0xffff {READ4K}",
     0x002),
    ("create cq qid 0", f"{ADMIN} -o 0x05 --cdw10=0x000f0000 --cdw11=1 {READ4K}", 0x101),
    ("create cq qid 200", f"{ADMIN} -o 0x05 --cdw10=0x000f00c8 --cdw11=1 {READ4K}", 0x101),
    ("create cq size 1", f"{ADMIN} -o 0x05 --cdw10=0x0000003c --cdw11=1 {READ4K}", 0x102),
    ("create cq size 4096", f"{ADMIN} -o 0x05 --cdw10=0x0fff003c --cdw11=1 {READ4K}", 0x102),
    ("create cq not contiguous", f"{ADMIN} -o 0x05 --cdw10=0x000f003c --cdw11=0 {READ4K}",
     0x002),
    ("create cq vector 999", f"{ADMIN} -o 0x05 --cdw10=0x000f003c --cdw11=0x03e70003 "
     f"{READ4K}", 0x108),                                                    # Invalid Vector
    ("create sq on no cq", f"{ADMIN} -o 0x01 --cdw10=0x000f003c --cdw11=0x003d0001 {READ4K}",
     0x100),                                                                 # Invalid CQ
    ("delete sq 61", f"{ADMIN} -o 0x00 --cdw10=61", 0x101),
    ("delete cq 1 in use", f"{ADMIN} -o 0x04 --cdw10=1", 0x10C),             # Invalid Deletion
    ("set features saved", f"{ADMIN} -o 0x09 --cdw10=0x80000007 --cdw11=0", 0x10D),
    ("set features fid 77h", f"{ADMIN} -o 0x09 --cdw10=0x77 --cdw11=1", 0x002),
    ("number of queues after queues", f"{ADMIN} -o 0x09 --cdw10=0x07 --cdw11=0x00030003",
     0x00C),                                                                 # Sequence Error
    ("geometry ns 9", f"{ADMIN} -o 0xe2 -n 9 {READ4K}", 0x00B),
    ("identify reserved dwords", f"{ADMIN} -o 0x06 --cdw10=1 --cdw2=0xdeadbeef "
     f"--cdw3=0xfeedface --cdw14=7 --cdw15=9 {READ4K}", 0x000),              # ignored: success
    ("io opcode 7fh", f"{IO} -o 0x7f", 0x001),
    ("read ns 5", f"nvme io-passthru /dev/nvme0n1 -n 5 -o 0x02 {READ4K}", 0x00B),
    ("read lba out of range", f"{IO} -o 0x02 --cdw10=0xffffffff --cdw11=0xffffffff {READ4K}",
     0x080),                                                                 # LBA Out of Range
    ("read beyond mdts", f"{IO} -o 0x02 --cdw12=0xffff {READ4K}", 0x002),
    ("vector read nlb 65", f"{IO} -o 0x92 --cdw12=64 {READ4K}", 0x002),
    ("vector write nlb 100", f"{IO} -o 0x91 --cdw12=99 {WRITE4K}", 0x002),
    ("vector reset out of range", f"{IO} -o 0x90 --cdw10=0xffffffff --cdw11=0xffff", 0x080),
    ("vector reset free chunk", f"{IO} -o 0x90 --cdw10={FREE_CHUNK_5}", 0x2C1),  # Invalid Reset
    ("write out of order", f"{IO} -o 0x01 --cdw10={FREE_CHUNK_5 + 5} {WRITE4K}", 0x2F2),
    ("write fewer than ws_min", f"{IO} -o 0x91 --cdw10={FREE_CHUNK_5} {WRITE4K}", 0x002),
    ("deallocate part of a chunk", f"{IO} -o 0x09 --cdw10=0 --cdw11=4 -l 16 -w "
     "-i /tmp/range", 0x002),
    ("read reserved dwords", f"{IO} -o 0x02 --cdw2=1 --cdw3=2 --cdw13=3 --cdw14=4 --cdw15=5 "
     f"--cdw10={FREE_CHUNK_5} {READ4K}", 0x000),
]

SCRIPT = """\
head -c 4096 /dev/zero > /tmp/zero4k
# one DSM range: attributes 0, 8 LBAs (a chunk has 1024), SLBA 0
printf '\\000\\000\\000\\000\\010\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000' \\
    > /tmp/range
abuse() {{
    name=$1; shift
    out=$("$@" --timeout=10000 2>&1 | grep -E "NVMe status|command result|rror" | head -n 1)
    echo "abuse: $name: $out"
}}
{commands}
echo "abuse: barrage done"
yes "ocssd-vfu abuse survivor" | head -c 1048576 > /tmp/p
dd if=/tmp/p of=/dev/nvme0n1 bs=64k count=16 oflag=direct 2>/dev/null
nvme flush /dev/nvme0n1 -n 1
dd if=/dev/nvme0n1 bs=64k count=16 iflag=direct 2>/dev/null | md5sum | sed 's/-/read-back/'
md5sum /tmp/p | sed 's|/tmp/p|written|'
nvme id-ctrl /dev/nvme0 | grep -E "^(sn|mn) "
dmesg | grep -iE "nvme|timeout|reset" | sed 's/^/dmesg: /'
"""


def status_of(output: str) -> int | None:
    """The status nvme-cli printed: 'NVMe status: NAME: text(0x4001)', or 0 on success."""
    if "command result" in output:
        return 0
    found = re.search(r"\((0x[0-9a-f]+)\)\s*$", output)
    return int(found[1], 16) & 0x7FF if found else None  # without DNR and More


@pytest.mark.timeout(300)
def test_a_passthru_barrage_gets_spec_statuses_and_the_device_still_serves(
        ocssd_vfu: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "ocssd.img"
    assert ocssd_vfu("image", "create", str(image), *GEOMETRY).status == 0
    commands = "\n".join(f'abuse "{name}" {command}' for name, command, _ in BARRAGE)
    done = guest_on_image(ocssd_vfu, image, SCRIPT.format(commands=commands),
                          "--serve-arg=--verbose")
    console = done.stdout.replace("\r", "")
    print(console)
    results = dict(re.findall(r"^abuse: ([^:]+): (.*)$", console, re.M))
    assert "abuse: barrage done" in console
    wrong = {name: results.get(name) for name, _, expected in BARRAGE
             if status_of(results.get(name, "")) != expected}
    assert not wrong, wrong
    sums = dict((name, md5) for md5, name in re.findall(r"^([0-9a-f]{32})  (\S+)$", console,
                                                        re.M))
    assert sums["read-back"] == sums["written"], console
    dmesg = [line for line in console.splitlines() if line.startswith("dmesg: ")]
    assert not [line for line in dmesg if re.search(r"timeout|resetting|failed", line, re.I)], \
        "\n".join(dmesg)
    assert "Traceback" not in done.stderr and "exception" not in done.stderr, done.stderr
    info = ocssd_vfu("image", "info", str(image))
    assert info.status == 0 and "check      : OK" in info.stdout, info.stdout
