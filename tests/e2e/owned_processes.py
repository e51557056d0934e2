"""The processes an e2e test starts (servers, guest runners and their QEMUs), and the guest
console of a runner. Fixtures over these live in tests/e2e/conftest.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.integration.server_process import listening

STOP_TIMEOUT = 30.0  # seconds a process has to end after SIGTERM before SIGKILL


def guest_argv(script: Path, timeout: int, *attach: str) -> list[str]:
    """`ocssd-vfu guest` running SCRIPT, attached as ATTACH says (--socket S or --image I)."""
    return [sys.executable, "-m", "ocssd_vfu", "guest", *attach, "--script", str(script),
            "--timeout", str(timeout)]


class Owned:
    """The processes a test starts; whatever is still running at the end is stopped
    (SIGTERM, then SIGKILL) in reverse order, runners (which stop their QEMU) before the
    server, and a QEMU a runner left behind is killed by PID (checked against its start
    time)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.qemus: list[tuple[int, bytes]] = []

    def start(self, argv: list[str], stdout: IO[bytes] | int | None,
              stderr: IO[bytes] | int | None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        self.procs.append(proc)
        return proc

    def start_server(self, sock: Path, image: Path, log_path: Path, *serve_args: str
                     ) -> subprocess.Popen[bytes]:
        """`ocssd-vfu serve` on SOCK (no --once) with SERVE_ARGS, logging to LOG_PATH; returns
        once it listens."""
        with log_path.open("wb") as log:
            server = self.start([sys.executable, "-m", "ocssd_vfu", "serve", "--socket",
                                 str(sock), "--image", str(image), *serve_args], stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not listening(sock):
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not listen within 30 s"
            time.sleep(0.05)
        return server

    def note_qemus(self, runner: subprocess.Popen[bytes]) -> list[tuple[int, bytes]]:
        """The runner's QEMU children, (PID, start time), remembered for stop_all."""
        found = qemu_children(runner.pid)
        self.qemus += found
        return found

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM (runner and server clean up on it), SIGKILL if that does not work; the
        exit status."""
        if proc.poll() is None:
            self.note_qemus(proc)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def leftover_qemus(self) -> list[int]:
        """The noted QEMUs still running: same PID and same start time."""
        return [pid for pid, started in self.qemus if start_time(pid) == started]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        for pid in self.leftover_qemus():
            os.kill(pid, signal.SIGKILL)


def start_time(pid: int) -> bytes | None:
    """Field 22 of /proc/PID/stat: tells a process from a later one that reuses its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat.rpartition(b")")[2].split()[19]


def qemu_children(pid: int) -> list[tuple[int, bytes]]:
    """(PID, start time) of the QEMUs among PID's direct children (the provisioned wrapper
    execs QEMU through its loader, so QEMU is the runner's direct child)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            started = start_time(child)
            if b"qemu-system-" in cmdline and started is not None:
                found.append((child, started))
    return found


class Console:
    """A runner's stdout (the guest console), collected in a thread; `marker_seen` is set
    once a line holds `marker`."""

    def __init__(self, stream: IO[bytes], marker: str) -> None:
        self.marker = marker
        self.lines: list[str] = []
        self.marker_seen = threading.Event()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").replace("\r", "")  # serial console: CRLF
            self.lines.append(line)
            if self.marker in line:
                self.marker_seen.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)
