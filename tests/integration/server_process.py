"""The real `ocssd-vfu serve` as a subprocess, on a socket in a short /tmp dir."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.vfio_user_client import VfioUserClient

IMAGE_SIZE = 64 << 20
START_TIMEOUT = 30.0  # a loaded 2-core machine starts Python slowly
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1
SO_ACCEPTCON = 0x10000  # /proc/net/unix Flags: listen() was called on the socket


def listening(path: Path) -> bool:
    """A socket is bound at PATH and listens. The file appears at bind(), a moment before
    listen(): a client connecting in between gets ECONNREFUSED (seen under load). Read from
    /proc/net/unix, without connecting (a probe would take the server's one client slot)."""
    wanted = str(path)
    with open("/proc/net/unix") as table:
        for line in table:
            fields = line.split()
            if len(fields) == 8 and fields[7] == wanted and int(fields[3], 16) & SO_ACCEPTCON:
                return True
    return False


def _die_with_parent() -> None:
    # If pytest itself is killed, the server must not outlive it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """One `ocssd-vfu serve` process; `stop()` is idempotent and always reaps it."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.socket = workdir / "vfu.sock"
        self.image = workdir / "disk.raw"
        self.log_path = workdir / "serve.log"
        with self.image.open("wb") as f:
            f.truncate(IMAGE_SIZE)  # sparse
        argv = [sys.executable, "-m", "ocssd_vfu", "serve", "--socket", str(self.socket),
                "--image", str(self.image), "--mode", "nvme", "--serial", "ocssd-vfu-0",
                "--verbose", *extra]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            self._wait_for_socket()
        except BaseException:
            self.stop()
            raise

    def _wait_for_socket(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(self.socket):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode} before "
                                     f"listening:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no socket after {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self, start: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[start:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"server died (status {self.proc.returncode}):\n{self.log()}"

    def connect(self, negotiate: bool = True) -> VfioUserClient:
        client = VfioUserClient.connect(self.socket)
        if negotiate:
            try:
                client.negotiate()
            except BaseException:
                client.close()
                raise
        return client

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM (the clean way out), SIGKILL if that does not work; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A private directory directly under /tmp: sun_path holds only 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ovfu-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_server(*extra: str) -> Iterator[ServerProcess]:
    with short_tmpdir() as workdir:
        server = ServerProcess(workdir, *extra)
        try:
            yield server
        finally:
            server.stop()
