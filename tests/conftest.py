"""Shared fixtures: running the real `ocssd-vfu` command."""

from __future__ import annotations

import contextlib
import faulthandler
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Before anything imports ocssd_vfu (nothing above does): the SIGBUS/SIGSEGV guard
# (native/guard.h) must sit on top of faulthandler and chain to it, so that a stray access
# still dies with a traceback while a fault in guest memory or the image fails a command.
# pytest's faulthandler plugin, enabled later, would sit on top and re-raise what the
# guard handles: it is off (pyproject.toml).
faulthandler.enable()


@dataclass
class Completed:
    status: int
    stdout: str
    stderr: str


RunCli = Callable[..., Completed]

# Guest kernel lines that only a device posting completions the host never submitted
# causes (nvme_handle_cqe): whatever a test does, they mean a device bug.
PHANTOM_COMPLETION = re.compile(r"^.*nvme nvme\d+: (invalid id \d+ completed|"
                                r"request 0x[0-9a-f]+ genctr mismatch).*$", re.M)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's words: "6m") mounted at `where`/fs for the block, then
    unmounted; the test is skipped where mounting is not allowed."""
    mount = where / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fio_terse_fields(stdout: str) -> list[str]:
    """The fields of the first `fio --output-format=terse` line (field 4 is the error)."""
    line = next(line for line in stdout.splitlines() if line.startswith("3;fio-"))
    return line.split(";")


@pytest.fixture
def ocssd_vfu(tmp_path: Path) -> RunCli:
    """Run `ocssd-vfu ARGS...` as a user would; `script=` writes a guest script."""

    def run(*args: str, script: str | None = None, timeout: float = 600) -> Completed:
        argv = [sys.executable, "-m", "ocssd_vfu", *args]
        if script is not None:
            path = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.sh"
            path.write_text(script)
            argv += ["--script", str(path)]
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)
        phantoms = [m.group(0) for m in PHANTOM_COMPLETION.finditer(proc.stdout)]
        assert not phantoms, f"the guest saw completions it never submitted: {phantoms}"
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    return run
