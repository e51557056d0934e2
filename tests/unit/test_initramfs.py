"""The per-run archive must be one the real cpio tool (and so the kernel) reads."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from ocssd_vfu.guest.initramfs import SCRIPT_PATH, run_archive, write_run_initrd


def test_run_archive_lists_with_cpio() -> None:
    raw = gzip.decompress(run_archive(b"echo hi\n"))
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == ["run", "run/ocssd", "run/ocssd/script"]


def test_run_archive_extracts_the_script_executable(tmp_path: Path) -> None:
    raw = gzip.decompress(run_archive(b"#!/bin/sh\nexit 7\n"))
    subprocess.run(["cpio", "-id", "--quiet"], input=raw, cwd=tmp_path, check=True)
    script = tmp_path / SCRIPT_PATH
    assert script.read_bytes() == b"#!/bin/sh\nexit 7\n"
    assert script.stat().st_mode & 0o777 == 0o755


def test_run_initrd_appends_aligned(tmp_path: Path) -> None:
    base = tmp_path / "base.cpio.gz"
    base.write_bytes(b"x" * 5)
    script = tmp_path / "s.sh"
    script.write_text("true\n")
    dest = tmp_path / "initrd"
    write_run_initrd(dest, base, script)
    data = dest.read_bytes()
    assert data[:8] == b"xxxxx\0\0\0"
    assert data[8:10] == b"\x1f\x8b"  # the gzip member starts on a 4-byte boundary
