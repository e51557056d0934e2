"""One long-running server through a guest's life: reboots, a second QEMU, SIGTERM.

Run 1 boots the guest BOOTS times in one QEMU (3 here, 20 with OCSSD_VFU_SOAK=1, as
`make soak` sets it); every boot writes its own 1 MiB with O_DIRECT and reads back what
every earlier boot wrote. The server's open fds are counted at the end of each boot (never
more than after boot 1: libvfio-user 0b28d205 kept an fd per repeated DMA map) and once
QEMU has gone (as many as before it came). During boot 2 a second QEMU tries the same
socket: it fails on its own and run 1 goes on undisturbed.

Run 2 keeps O_DIRECT writes going while the server gets SIGTERM: it exits 0, removes its
socket, and every write the guest saw complete is in the image file.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.owned_processes import Console, Owned, guest_argv

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("OCSSD_VFU_SOAK") == "1"
BOOTS = 20 if SOAK else 3
MIB = 1 << 20

REBOOTING = """\
set -e
yes "lifecycle boot $BOOT" | head -c 1048576 > /tmp/p
dd if=/tmp/p of=/dev/nvme0n1 bs=1M seek=$BOOT oflag=direct 2>/dev/null
i=1
while [ $i -le $BOOT ]; do
    dd if=/dev/nvme0n1 bs=1M skip=$i count=1 iflag=direct 2>/dev/null | md5sum \\
        | sed "s/-/boot$i-in-$BOOT/"
    i=$((i + 1))
done
m="boot done"
echo "lifecycle: $m $BOOT"
sleep 2  # the host counts the server's fds now, before the reboot unmaps guest RAM
"""

WRITING_UNTIL_STOPPED = """\
yes "lifecycle sigterm" | head -c 1048576 > /tmp/p
m="writing"
echo "lifecycle: $m"
i=0
while dd if=/tmp/p of=/dev/nvme0n1 bs=1M seek=$((64 + i % 32)) oflag=direct 2>/dev/null; do
    i=$((i + 1))
    echo "lifecycle: wrote $i"
done
echo "lifecycle: write failed after $i"
sleep 600
"""


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def boot_md5(boot: int) -> str:
    line = f"lifecycle boot {boot}\n".encode()
    return hashlib.md5((line * (MIB // len(line) + 1))[:MIB]).hexdigest()


def wait_for(condition, what: str, timeout: float, context) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s:\n{context()}"
        time.sleep(0.2)


@pytest.mark.timeout(900 if SOAK else 400)
def test_reboots_a_second_qemu_and_sigterm(workdir: Path, owned: Owned) -> None:
    sock, image, server_log = workdir / "s.sock", workdir / "disk.raw", workdir / "serve.log"
    with image.open("wb") as f:
        f.truncate(256 * MIB)
    rebooting, writing = workdir / "reboot.sh", workdir / "write.sh"
    rebooting.write_text(REBOOTING)
    writing.write_text(WRITING_UNTIL_STOPPED)
    (workdir / "hello.sh").write_text("echo hello\n")
    server = owned.start_server(sock, image, server_log)
    idle_fds = fds(server.pid)

    # Run 1: BOOTS boots in one QEMU, I/O on each; fds counted at the end of each boot.
    err1 = workdir / "runner1.err"
    with err1.open("wb") as err:
        runner1 = owned.start(guest_argv(rebooting, 120 + 60 * BOOTS, "--socket", str(sock),
                                         "--boots", str(BOOTS)),
                              stdout=subprocess.PIPE, stderr=err)
    assert runner1.stdout is not None
    console = Console(runner1.stdout, "lifecycle: boot done 1")
    per_boot: list[int] = []
    for boot in range(1, BOOTS + 1):
        wait_for(lambda b=boot: f"lifecycle: boot done {b}" in console.text
                 or runner1.poll() is not None, f"boot {boot}", 240,
                 lambda: console.text + err1.read_text())
        assert runner1.poll() is None or boot == BOOTS, console.text + err1.read_text()
        per_boot.append(fds(server.pid))
        if boot == 2:  # a second QEMU on the socket in use fails, alone
            second = subprocess.run(guest_argv(workdir / "hello.sh", 120, "--socket",
                                               str(sock)), capture_output=True, text=True,
                                    timeout=180, check=False)
            print(f"second QEMU: status {second.returncode}\n{second.stderr}")
            assert second.returncode == 125, second.stderr
            assert "timed out waiting for reply" in second.stderr
            assert server.poll() is None
    status1 = runner1.wait(timeout=120)
    console.thread.join(timeout=10)
    print(f"run 1 console:\n{console.text}\nrun 1 runner:\n{err1.read_text()}")
    print(f"server fds: idle {idle_fds}, at the end of boots 1..{BOOTS}: {per_boot}")
    assert status1 == 0, err1.read_text()
    for boot in range(1, BOOTS + 1):
        found = re.findall(rf"^([0-9a-f]{{32}})  boot{boot}-in-\d+$", console.text, re.M)
        assert found == [boot_md5(boot)] * (BOOTS - boot + 1), (boot, found)
    assert max(per_boot) == per_boot[0], per_boot  # no boot adds fds (a sample taken
    # while a reboot had already begun may show fewer)
    wait_for(lambda: server_log.read_text().count("client gone") >= 1, "client gone", 30,
             server_log.read_text)
    assert fds(server.pid) == idle_fds
    assert server.poll() is None

    # Run 2: SIGTERM while O_DIRECT writes are in flight.
    err2 = workdir / "runner2.err"
    with err2.open("wb") as err:
        runner2 = owned.start(guest_argv(writing, 300, "--socket", str(sock)),
                              stdout=subprocess.PIPE, stderr=err)
    assert runner2.stdout is not None
    console2 = Console(runner2.stdout, "lifecycle: wrote 3")
    assert console2.marker_seen.wait(240), console2.text + err2.read_text()
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, server_log.read_text()
    assert not sock.exists()
    time.sleep(2)
    owned.stop(runner2)
    console2.thread.join(timeout=10)
    log = server_log.read_text()
    print(f"run 2 console:\n{console2.text}\nserver log:\n{log}")
    assert "SIGTERM: shutting down" in log and "Traceback" not in log
    wrote = int(re.findall(r"^lifecycle: wrote (\d+)", console2.text, re.M)[-1])
    line = b"lifecycle sigterm\n"
    pattern = (line * (MIB // len(line) + 1))[:MIB]
    with image.open("rb") as f:
        for i in range(min(wrote, 32)):  # each slot once written completely
            f.seek((64 + i) * MIB)
            assert f.read(MIB) == pattern, f"write {i + 1} is not in the image"
        for boot in range(1, BOOTS + 1):
            f.seek(boot * MIB)
            assert hashlib.md5(f.read(MIB)).hexdigest() == boot_md5(boot)
