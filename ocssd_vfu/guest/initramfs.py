"""The per-run initramfs: the cached base archive with a small archive
appended that carries the run's script (the kernel unpacks concatenated
archives in order)."""

from __future__ import annotations

import gzip
import io
import shutil
import stat
from pathlib import Path

SCRIPT_PATH = "run/ocssd/script"


def _newc_entry(name: str, mode: int, data: bytes) -> bytes:
    """One `cpio -H newc` member (the format the kernel's initramfs unpacker reads)."""
    encoded = name.encode() + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    member = header + encoded
    member += b"\0" * (-len(member) % 4) + data
    return member + b"\0" * (-len(member) % 4)


def run_archive(script: bytes) -> bytes:
    entries = [("run", stat.S_IFDIR | 0o755, b""), ("run/ocssd", stat.S_IFDIR | 0o755, b""),
               (SCRIPT_PATH, stat.S_IFREG | 0o755, script), ("TRAILER!!!", 0, b"")]
    raw = b"".join(_newc_entry(name, mode, data) for name, mode, data in entries)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def write_run_initrd(dest: Path, base: Path, script: Path) -> None:
    with dest.open("wb") as out, base.open("rb") as src:
        shutil.copyfileobj(src, out)
        # The unpacker skips zero padding between archives; keep the next one aligned.
        out.write(b"\0" * (-out.tell() % 4))
        out.write(run_archive(script.read_bytes()))
