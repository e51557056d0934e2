"""Start-up refuses what cannot work before it opens, extends or waits for anything:
one line on stderr, exit 1, the image's bytes and mtime as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.integration.server_process import running_server
from tests.integration.test_files_and_cli import fingerprint, one_line_error, tiny, workdir

__all__ = ["tiny", "workdir"]  # fixtures


@pytest.fixture
def fifo(workdir: Path) -> Path:
    path = workdir / "fifo"
    os.mkfifo(path)
    return path


def cases(workdir: Path, image: Path, fifo: Path) -> list[tuple[list[str], str]]:
    sock = str(workdir / "s.sock")
    serve = ["serve", "--socket", sock, "--image", str(image)]
    big = workdir / "big.txt"
    with big.open("wb") as f:
        f.truncate(2 << 20)
    return [
        (["serve", "--socket", sock, "--image", str(fifo)], "is a FIFO, not a regular file"),
        ([*serve, "--chunk-state", str(fifo)], "--chunk-state " + str(fifo) + " is a FIFO"),
        ([*serve, "--chunk-state", "/dev/zero"], "is a character device"),
        ([*serve, "--write-fail", str(big)], "more than a test file holds"),
        (["image", "info", str(fifo)], "is a FIFO, not a regular file"),
        (["image", "chunks", str(fifo)], "is a FIFO, not a regular file"),
        (["serve", "--socket", str(workdir / ("s" * 120)), "--image", str(image)],
         "a vfio-user socket path holds at most 107"),
        ([*serve, "--trace", str(workdir / "no-such-dir" / "trace")], "cannot be created"),
        ([*serve, "--serial", "x" * 300], "--serial"),
        ([*serve, "--serial", "s\u00e9rie"], "printable ASCII"),
        ([*serve, "--serial", "a" * 21], "1 to 20 printable ASCII"),
    ]


def test_bad_arguments_get_one_line_and_change_nothing(tiny: Path, workdir: Path, fifo: Path,
                                                       ocssd_vfu: RunCli) -> None:
    # tiny is a qemu-img-sized image: serving would extend it first.
    before = fingerprint(tiny)
    for argv, message in cases(workdir, tiny, fifo):
        done = ocssd_vfu(*argv, timeout=10)
        assert done.status == 1, (argv, done.stderr)
        assert message in one_line_error(done.stderr), (argv, done.stderr)
        assert fingerprint(tiny) == before, argv
    assert sorted(p.name for p in workdir.iterdir()) == ["big.txt", "fifo", "tiny.img"]


def test_serve_with_a_fifo_image_stops_on_sigterm_within_two_seconds(fifo: Path,
                                                                      workdir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ocssd_vfu", "serve", "--socket",
                             str(workdir / "s.sock"), "--image", str(fifo)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)  # past its imports: where it opened the FIFO (and hung) before
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=5)
        assert time.monotonic() - started < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_image_create_force_refuses_an_image_a_server_holds(ocssd_vfu: RunCli) -> None:
    with running_server() as server:
        before = fingerprint(server.image)
        done = ocssd_vfu("image", "create", "--force", str(server.image), timeout=30)
        assert done.status == 1
        assert "in use by another server" in one_line_error(done.stderr)
        assert fingerprint(server.image) == before
        server.assert_alive()
