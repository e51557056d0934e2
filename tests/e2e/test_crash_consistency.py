"""Crash consistency: the OCSSD server SIGKILLed at random moments while pblk writes,
round after round on the same image (2 rounds here, 12 with OCSSD_VFU_SOAK=1, as `make
soak` sets it), then a last run that only reads.

Each round starts a server, and a guest that brings pblk up (from round 2 on through its
recovery of the lines the last kill left open), reads back every file an earlier round
fsync'd, writes and fsyncs its own file, then keeps fsync'd and O_DIRECT writers busy
until the server is SIGKILLed after a random delay. After each kill the image must
validate (`image info`) and every OPEN or CLOSED chunk must hold data up to its write
pointer: no sector below a WP is a hole of the (sparse) image file, i.e. no WP ran ahead
of the data the server had stored. The last run recovers pblk once more and reads every
file back with O_DIRECT; e2fsck finds the file system clean.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.e2e.guest_runs import READ_BACK, chunk_table, guest_on_image, md5s
from tests.e2e.owned_processes import Console, Owned, guest_argv

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("OCSSD_VFU_SOAK") == "1"
ROUNDS = 12 if SOAK else 2
GEOMETRY = ("--num-grp", "2", "--num-pu", "2", "--num-chk", "24", "--num-sec", "1024")
SECTOR, NUM_SEC = 4096, 1024
# Where chunk 0's data starts in the file: header sector, Geometry page, the chunk log
# (96 chunks x 32 bytes, rounded up to a sector), the predefined-data sector.
DATA_OFFSET = 4096 + 4096 + 4096 + 4096
FILE_SIZE = 2 << 20

ROUND = """\
set -e
nvme lnvm create -d nvme0n1 -n disk -t pblk
{mkfs}
mount /dev/disk /mnt
{read_back}
yes "crash round {round}" | head -c {size} > /mnt/f{round}
dd if=/dev/null of=/mnt/f{round} conv=notrunc,fsync 2>/dev/null
sync
m="synced round {round}"
echo "crash: $m"
set +e
yes "crash busy {round}" | head -c 4194304 > /tmp/busy
( while true; do dd if=/tmp/busy of=/mnt/direct bs=1M oflag=direct 2>/dev/null; done ) &
i=0
while true; do
    i=$((i + 1))
    dd if=/tmp/busy of=/mnt/busy$((i % 3)) bs=1M conv=fsync 2>/dev/null
done
"""

FINAL = """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
mount /dev/disk /mnt
{read_back}
umount /mnt
e2fsck -fn /dev/disk >/dev/null 2>&1
echo "crash: e2fsck status $?"
nvme lnvm remove -n disk
dmesg | grep -E "pblk|EXT4" | sed 's/^/dmesg: /'
"""


def file_md5(round_: int) -> str:
    line = f"crash round {round_}\n".encode()
    return hashlib.md5((line * (FILE_SIZE // len(line) + 1))[:FILE_SIZE]).hexdigest()


def read_back(rounds: range) -> str:
    files = " ".join(f"f{r}" for r in rounds)
    return READ_BACK.format(files=files) if files else ""


def chunks_ahead_of_data(image: Path, table: dict[int, tuple[str, int]]) -> list[str]:
    """Chunks whose data area has a hole below the write pointer."""
    bad = []
    with image.open("rb") as f:
        fd = f.fileno()
        for index, (state, wp) in table.items():
            if state not in ("OPEN", "CLOSED") or wp == 0:
                continue
            start = DATA_OFFSET + index * NUM_SEC * SECTOR
            hole = os.lseek(fd, start, os.SEEK_HOLE)
            if hole < start + wp * SECTOR:
                bad.append(f"chunk {index} {state} wp {wp}: hole at sector "
                           f"{(hole - start) // SECTOR}")
    return bad


@pytest.mark.timeout(300 + 150 * ROUNDS)
def test_sigkills_at_random_moments_lose_no_synced_file(workdir: Path, owned: Owned,
                                                         ocssd_vfu: RunCli) -> None:
    image = workdir / "ocssd.img"
    assert ocssd_vfu("image", "create", str(image), *GEOMETRY).status == 0
    rng = random.Random(int(os.environ.get("OCSSD_VFU_CRASH_SEED", "7")))
    for round_ in range(1, ROUNDS + 1):
        sock, log = workdir / f"s{round_}.sock", workdir / f"serve{round_}.log"
        script = workdir / f"round{round_}.sh"
        script.write_text(ROUND.format(
            round=round_, size=FILE_SIZE, mkfs="mkfs.ext4 -q /dev/disk" if round_ == 1 else "",
            read_back=read_back(range(1, round_))))
        server = owned.start_server(sock, image, log)
        err = workdir / f"runner{round_}.err"
        with err.open("wb") as stderr:
            runner = owned.start(guest_argv(script, 300, "--socket", str(sock)),
                                 stdout=subprocess.PIPE, stderr=stderr)
        assert runner.stdout is not None
        console = Console(runner.stdout, f"crash: synced round {round_}")
        deadline = time.monotonic() + 240
        while not console.marker_seen.wait(0.5):
            assert runner.poll() is None and time.monotonic() < deadline, (
                f"round {round_}: no marker\n{console.text}\n{err.read_text()}\n{log.read_text()}")
        delay = rng.uniform(0.2, 3.0)
        time.sleep(delay)
        assert server.poll() is None, log.read_text()
        server.kill()
        assert server.wait(timeout=10) == -signal.SIGKILL
        owned.stop(runner)
        console.thread.join(timeout=10)
        found = md5s(console.text)
        print(f"round {round_}: SIGKILL {delay:.2f} s after the sync; read back {found}")
        assert found == {f"f{r}": file_md5(r) for r in range(1, round_)}, console.text

        info = ocssd_vfu("image", "info", str(image))
        assert info.status == 0 and "check      : OK" in info.stdout, info.stdout
        table = chunk_table(ocssd_vfu("image", "chunks", str(image)).stdout)
        assert len(table) == 96
        print(f"round {round_}: chunks " + ", ".join(
            f"{state} {sum(1 for s, _ in table.values() if s == state)}"
            for state in ("FREE", "OPEN", "CLOSED", "OFFLINE")))
        assert not chunks_ahead_of_data(image, table)

    final = guest_on_image(ocssd_vfu, image, FINAL.format(
        read_back=read_back(range(1, ROUNDS + 1))))
    recovered = final.stdout.replace("\r", "")
    print(recovered)
    assert md5s(recovered) == {f"f{r}": file_md5(r) for r in range(1, ROUNDS + 1)}
    assert "crash: e2fsck status 0" in recovered
    for bad in ("failed to recover", "could not recover", "corrupted", "EXT4-fs error"):
        assert bad not in recovered, bad
    print(f"kills survived: {ROUNDS}")
    assert re.search(r"check      : OK", ocssd_vfu("image", "info", str(image)).stdout)
