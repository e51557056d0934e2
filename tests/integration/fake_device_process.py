"""tests.fake_control_device served alone in a subprocess, as a real server would be."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 10.0


@contextlib.contextmanager
def fake_device_process() -> Iterator[Path]:
    """The control socket's path; the process is stopped and reaped at the end."""
    with tempfile.TemporaryDirectory(prefix="ocssd-fake-") as workdir:
        path = Path(workdir) / "control.sock"
        proc = subprocess.Popen([sys.executable, "-m", "tests.fake_control_device",
                                 "--control", str(path)], stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not path.is_socket():
                assert proc.poll() is None, f"fake device exited with {proc.returncode}"
                assert time.monotonic() < deadline, "fake device did not start"
                time.sleep(0.02)
            yield path
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
