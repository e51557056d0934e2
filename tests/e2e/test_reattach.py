"""A long-running server outlives its QEMU: SIGKILL mid-I/O, a new QEMU attaches and reads back.

The server runs without --once. Guest run 1 writes the 16 MiB pattern, syncs, then keeps
direct writes in flight (fio at queue depth 16 plus a dd loop, both beyond the pattern) until
its QEMU is SIGKILLed. Guest run 2 attaches a new QEMU to the same socket and reads the pattern
back with O_DIRECT.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.guest_runs import PATTERN_16M_MD5, WRITE_PATTERN
from tests.e2e.owned_processes import Console, Owned, guest_argv, start_time

pytestmark = pytest.mark.e2e

MARKER = "reattach: pattern written and synced"
# The script prints the marker through a variable so that the literal never reaches the
# console any other way.
WRITE_THEN_KEEP_WRITING = f"""\
{WRITE_PATTERN} > /tmp/p
dd if=/tmp/p of=/dev/nvme0n1 bs=1M oflag=direct
sync
m="pattern written and synced"
echo "reattach: $m"
fio --name=busy --filename=/dev/nvme0n1 --offset=128M --size=64M --rw=randwrite --bs=4k \\
    --iodepth=16 --ioengine=libaio --direct=1 --time_based --runtime=600 \\
    --output=/dev/null &
i=0
while true; do
    i=$((i + 1))
    dd if=/tmp/p of=/dev/nvme0n1 bs=1M count=16 seek=$((64 + i % 4 * 16)) oflag=direct \\
        2>/dev/null
    echo "reattach: write loop $i"
done
"""
READ_BACK = """\
nvme list
dd if=/dev/nvme0n1 bs=1M count=16 iflag=direct | md5sum
"""


@pytest.mark.timeout(300)
def test_qemu_killed_mid_io_then_new_qemu_reads_back(workdir: Path, owned: Owned) -> None:
    sock, image, server_log = workdir / "s.sock", workdir / "disk.raw", workdir / "serve.log"
    with image.open("wb") as f:
        f.truncate(256 << 20)
    write_script, read_script = workdir / "write.sh", workdir / "read.sh"
    write_script.write_text(WRITE_THEN_KEEP_WRITING)
    read_script.write_text(READ_BACK)

    server = owned.start_server(sock, image, server_log)

    # Run 1: write the pattern, then keep direct writes in flight until QEMU is killed.
    runner1_err = workdir / "runner1.err"
    with runner1_err.open("wb") as err:
        runner1 = owned.start(guest_argv(write_script, 120, "--socket", str(sock), "--verbose"),
                              stdout=subprocess.PIPE, stderr=err)
    assert runner1.stdout is not None
    console1 = Console(runner1.stdout, MARKER)
    assert console1.marker_seen.wait(90), (
        f"no marker; console:\n{console1.text}\nrunner:\n{runner1_err.read_text()}")
    time.sleep(1.0)
    qemus = owned.note_qemus(runner1)
    assert len(qemus) == 1, f"runner {runner1.pid} has QEMU children {qemus}"
    qemu, started = qemus[0]
    if start_time(qemu) == started:  # that QEMU still, not a later process with its PID
        os.kill(qemu, signal.SIGKILL)
    status1 = runner1.wait(timeout=30)
    console1.thread.join(timeout=5)
    stderr1 = runner1_err.read_text()
    print(f"run 1 console:\n{console1.text}\nrun 1 runner:\n{stderr1}")
    assert status1 == 125, stderr1
    assert "QEMU exited (status -9) without the script finishing" in stderr1
    assert start_time(qemu) is None  # reaped by the runner

    # The server lives on and takes the next QEMU on the same socket.
    assert server.poll() is None, server_log.read_text()
    assert sock.exists()
    runner2 = owned.start(guest_argv(read_script, 90, "--socket", str(sock),
                                     "--verbose"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out2, err2 = (b.decode(errors="replace") for b in runner2.communicate(timeout=120))
    print(f"run 2 console:\n{out2}\nrun 2 runner:\n{err2}")
    assert runner2.returncode == 0, err2
    assert re.search(r"^/dev/nvme0n1\s+ocssd-vfu-[0-9a-f]{8}\s+ocssd_vfu NVMe Ctrl", out2,
                     re.M), out2
    assert PATTERN_16M_MD5 in out2, out2

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, server_log.read_text()
    assert not sock.exists()
    log_text = server_log.read_text()
    print(f"server log:\n{log_text}")
    assert "Traceback" not in log_text
    assert "vfu_run_ctx failed" not in log_text
    # The dead QEMU's DMA regions were all unregistered: the new QEMU maps the same guest
    # addresses again without an overlap.
    assert "overlaps an existing one" not in log_text
    assert log_text.count("client attached") == 2
    assert log_text.count("client gone") == 2
