"""Starting a device from Python, for test authors.

    from ocssd_vfu.api import served_device

    with served_device("ocssd.img", pe_cycles=3) as device:
        qemu_args = ["-device", device.qemu_device_json()]   # or device.socket
        ...                                                   # boot QEMU, run the guest
        device.control.execute("inject-fault", op="write", grp=0, pu=0, chk=1)
        device.control.wait_event("CHUNK_OFFLINE")

`served_device` runs `ocssd-vfu serve` as a subprocess with its vfio-user socket and
its control socket in a private temporary directory, waits until both answer, and on
exit (also when the block raises) stops the server with SIGTERM (the image is synced),
reaps it and removes the directory. Keyword options become serve's options:
`pe_cycles=3` is `--pe-cycles 3`, `volatile=True` is `--volatile`, a list repeats the
option, False and None leave it out.

The pytest plugin (ocssd_vfu.pytest_plugin) wraps this in fixtures.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocssd_vfu.control.client import ControlClient

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class ServeFailed(RuntimeError):
    """The server did not come up; the message carries its log."""


@dataclass
class ServedDevice:
    socket: Path                      # the vfio-user socket: give it to QEMU
    control_socket: Path | None
    control: ControlClient | None     # None when started with control=False
    process: subprocess.Popen[bytes]
    log_path: Path

    def qemu_device_json(self) -> str:
        """The `-device` argument that attaches this server to QEMU."""
        return json.dumps({"driver": "vfio-user-pci",
                           "socket": {"type": "unix", "path": str(self.socket)}},
                          separators=(",", ":"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def serve_arguments(options: dict[str, Any]) -> list[str]:
    """Keyword options as `ocssd-vfu serve` options."""
    words: list[str] = []
    for name, value in options.items():
        option = "--" + name.replace("_", "-")
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None or item is False:
                continue
            words += [option] if item is True else [option, str(item)]
    return words


@contextlib.contextmanager
def served_device(image: Path | str, *, control: bool = True,
                  start_timeout: float = START_TIMEOUT, **options: Any
                  ) -> Iterator[ServedDevice]:
    workdir = Path(tempfile.mkdtemp(prefix="ocssd-vfu-"))  # short: socket paths <= 107
    socket_path = workdir / "vfu.sock"
    control_path = workdir / "control.sock" if control else None
    log_path = workdir / "serve.log"
    argv = [sys.executable, "-m", "ocssd_vfu", "serve", "--socket", str(socket_path),
            "--image", str(image)]
    if control_path is not None:
        argv += ["--control", str(control_path)]
    argv += serve_arguments(options)
    process: subprocess.Popen[bytes] | None = None
    client: ControlClient | None = None
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
        _wait_for_sockets(process, [socket_path] + ([control_path] if control_path else []),
                          log_path, start_timeout)
        if control_path is not None:
            client = ControlClient(control_path)
        yield ServedDevice(socket_path, control_path, client, process, log_path)
    finally:
        if client is not None:
            client.close()
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_sockets(process: subprocess.Popen[bytes], sockets: list[Path], log_path: Path,
                      timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.is_socket() for path in sockets):
        if process.poll() is not None:
            raise ServeFailed(f"ocssd-vfu serve exited with {process.returncode}:\n"
                              + log_path.read_text(errors="replace"))
        if time.monotonic() > deadline:
            raise ServeFailed(f"ocssd-vfu serve did not listen within {timeout} s:\n"
                              + log_path.read_text(errors="replace"))
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
