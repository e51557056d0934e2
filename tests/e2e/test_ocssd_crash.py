"""The OCSSD server SIGKILLed while pblk writes: the image stays valid and pblk recovers.

Run 1 (a long-running server, no --once, and a guest attached to its socket) creates pblk,
puts ext4 on it, writes two files with known content and syncs them, prints a marker, then
keeps pblk busy: an fsync'd dd loop plus a background O_DIRECT writer. Shortly after the
marker the SERVER (not QEMU) is SIGKILLed, so lines are OPEN and writes in flight. The guest
run is then ended (its QEMU is left with a dead device).

The image must then validate (`image info`) with OPEN chunks in it, and run 2 (a fresh server
on the image) must bring pblk up without -f, i.e. through its scan recovery of open lines
(ocssd-spec §8.3), and read the synced files back with O_DIRECT. Only data that was synced
before the kill is expected (pblk ignores FUA, §8.4): the files the writers were rewriting
when the server died are not checked.
"""

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
    chunk_table,
    md5s,
)
from tests.e2e.owned_processes import Console, Owned, guest_argv

pytestmark = pytest.mark.e2e

AFTER_1M_MD5 = "4541f09677d426ce90ee6b5a4c09b6b0"      # yes "ocssd-vfu after recovery" 1 MiB
SYNCED = {"pattern": PATTERN_16M_MD5, "dir/numbers": NUMBERS_2M_MD5}

GEOMETRY = ("--num-grp", "2", "--num-pu", "2", "--num-chk", "24", "--num-sec", "1024")
MARKER = "crash: files synced, writers started"
KILL_DELAY = 1.5  # seconds between the marker and the server's SIGKILL

# The marker is printed through a variable so that the literal never reaches the console
# any other way (the shell does not echo the script).
WRITE_THEN_KEEP_WRITING = """\
set -e
nvme lnvm create -d nvme0n1 -n disk -t pblk
mkfs.ext4 -q /dev/disk
mount /dev/disk /mnt
yes "ocssd-vfu test pattern 0123456789" | head -c 16777216 > /mnt/pattern
mkdir /mnt/dir
seq 1 400000 | head -c 2097152 > /mnt/dir/numbers
dd if=/dev/null of=/mnt/pattern conv=notrunc,fsync 2>/dev/null
dd if=/dev/null of=/mnt/dir/numbers conv=notrunc,fsync 2>/dev/null
sync
""" + READ_BACK.format(files="pattern dir/numbers") + """\
yes "ocssd-vfu busy writer" | head -c 4194304 > /tmp/busy
set +e
(
    while true; do
        dd if=/tmp/busy of=/mnt/direct bs=1M oflag=direct 2>/dev/null
    done
) &
m="files synced, writers started"
echo "crash: $m"
i=0
while true; do
    i=$((i + 1))
    dd if=/tmp/busy of=/mnt/busy$((i % 4)) bs=1M conv=fsync 2>/dev/null
    echo "crash: write loop $i"
done
"""

RECOVER_AND_READ = """\
nvme lnvm create -d nvme0n1 -n disk -t pblk
mount /dev/disk /mnt
""" + READ_BACK.format(files="pattern dir/numbers") + """\
yes "ocssd-vfu after recovery" | head -c 1048576 > /mnt/after
sync
echo 3 > /proc/sys/vm/drop_caches
""" + READ_BACK.format(files="after") + """\
cat /sys/block/disk/pblk/errors
umount /mnt
e2fsck -fn /dev/disk >/dev/null 2>&1
echo "crash: e2fsck status $?"
nvme lnvm remove -n disk
dmesg | sed 's/^/dmesg: /'
"""


def chunk_counts(info: str) -> dict[str, int]:
    found = re.search(r"^chunks\s*: FREE (\d+), OPEN (\d+), CLOSED (\d+), OFFLINE (\d+)$",
                      info, re.M)
    assert found, info
    return dict(zip(("FREE", "OPEN", "CLOSED", "OFFLINE"), map(int, found.groups()),
                    strict=True))


@pytest.mark.timeout(420)
def test_server_sigkilled_while_pblk_writes_then_pblk_recovers_synced_files(
        workdir: Path, owned: Owned, ocssd_vfu: RunCli) -> None:
    image, sock, server_log = workdir / "ocssd.img", workdir / "s.sock", workdir / "serve.log"
    write_script, read_script = workdir / "write.sh", workdir / "read.sh"
    write_script.write_text(WRITE_THEN_KEEP_WRITING)
    read_script.write_text(RECOVER_AND_READ)
    created = ocssd_vfu("image", "create", str(image), *GEOMETRY)
    assert created.status == 0, created.stderr

    server = owned.start_server(sock, image, server_log)

    # Run 1: files written and synced, then writers kept going until the server dies.
    runner1_err = workdir / "runner1.err"
    with runner1_err.open("wb") as err:
        runner1 = owned.start(guest_argv(write_script, 300, "--socket", str(sock)),
                              stdout=subprocess.PIPE, stderr=err)
    assert runner1.stdout is not None
    console1 = Console(runner1.stdout, MARKER)
    deadline = time.monotonic() + 240
    while not console1.marker_seen.wait(0.5):
        assert runner1.poll() is None and time.monotonic() < deadline, (
            f"no marker; console:\n{console1.text}\nrunner:\n{runner1_err.read_text()}")
    time.sleep(KILL_DELAY)
    assert owned.note_qemus(runner1), "runner 1 has no QEMU child"
    assert server.poll() is None, server_log.read_text()
    server.kill()  # SIGKILL, mid-write
    assert server.wait(timeout=10) == -signal.SIGKILL
    time.sleep(1.0)
    status1 = owned.stop(runner1)  # SIGTERM: the runner stops its QEMU
    console1.thread.join(timeout=10)
    stderr1 = runner1_err.read_text()
    loops = len(re.findall(r"^crash: write loop \d+", console1.text, re.M))
    print(f"run 1 console:\n{console1.text}\nrun 1 runner (status {status1}):\n{stderr1}\n"
          f"server log:\n{server_log.read_text()}")
    # The runner saw QEMU fail on its dead device (125), or was stopped by SIGTERM (130).
    assert status1 in (125, 130), stderr1
    assert md5s(console1.text) == SYNCED  # as written, before the kill
    print(f"fsync'd write loops completed before the kill: {loops}")
    assert not owned.leftover_qemus(), "runner 1 left its QEMU running"

    # The image as the SIGKILLed server left it: consistent, with lines open.
    info = ocssd_vfu("image", "info", str(image))
    open_chunks = ocssd_vfu("image", "chunks", str(image), "--state", "OPEN")
    print(f"image info after the kill:\n{info.stdout}{info.stderr}\n"
          f"OPEN chunks:\n{open_chunks.stdout}")
    assert info.status == 0, info.stdout
    assert "check      : OK" in info.stdout
    counts = chunk_counts(info.stdout)
    assert counts["OPEN"] >= 1, info.stdout
    assert counts["OFFLINE"] == 0, info.stdout
    was_open = chunk_table(open_chunks.stdout)
    assert len(was_open) == counts["OPEN"], open_chunks.stdout

    # Run 2: a fresh server; pblk without -f recovers its lines; the synced files read back.
    # Output to files, not pipes: a runner stopped after a failure never blocks on them.
    out2_path, err2_path = workdir / "runner2.out", workdir / "runner2.err"
    with out2_path.open("wb") as out, err2_path.open("wb") as err:
        runner2 = owned.start(guest_argv(read_script, 300, "--image", str(image)),
                              stdout=out, stderr=err)
    runner2.wait(timeout=330)
    out2, err2 = (path.read_bytes().decode(errors="replace").replace("\r", "")
                  for path in (out2_path, err2_path))
    print(f"run 2 console:\n{out2}\nrun 2 runner:\n{err2}")
    assert runner2.returncode == 0, err2
    assert md5s(out2) == {**SYNCED, "after": AFTER_1M_MD5}
    dmesg = [line[len("dmesg: "):] for line in out2.splitlines() if line.startswith("dmesg: ")]
    assert dmesg, out2
    pblk_lines = [line for line in dmesg if "pblk" in line]
    print("run 2 dmesg (pblk):\n" + "\n".join(pblk_lines))
    assert any(re.search(r"pblk disk: luns:4, lines:24, secs:\d+", line) for line in pblk_lines)
    for bad in ("corrupted read LBA", "failed to recover", "could not recover",
                "WARNING:", "cut here", "BUG:", "I/O error", "EXT4-fs error"):
        assert not [line for line in dmesg if bad in line], f"{bad!r} in dmesg:\n" + \
            "\n".join(dmesg)
    # ext4 was mounted when the server died: its journal is replayed.
    assert any("EXT4-fs (disk): recovery complete" in line for line in dmesg), "\n".join(dmesg)
    assert "crash: e2fsck status 0" in out2, out2
    errors = re.search(r"read_failed=(\d+)", out2)
    assert errors is None or errors[1] == "0", out2

    after = ocssd_vfu("image", "info", str(image))
    assert after.status == 0, after.stdout
    assert "check      : OK" in after.stdout
