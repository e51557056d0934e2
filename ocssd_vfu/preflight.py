"""Start-up checks that run before anything is opened, changed or waited for.

`serve` and the `image` commands look at every path they were given with stat()
first: a FIFO would block open() for ever, a character device (/dev/zero) would be
read without end, a directory or socket is no image; each gets one line and nothing
is touched. Test files (chunk states, fault lists) are bounded in size; the socket
path must fit sun_path; the trace file must be writable; the serial must fit the
Identify fields it fills (SN: 20 bytes of printable ASCII, and so SUBNQN's 256).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol

MAX_TEST_FILE = 1 << 20     # bytes: a chunk-state or fault file lists at most every chunk
MAX_SOCKET_PATH = 107       # sun_path holds 108 bytes, the last one NUL
SERIAL_BYTES = 20           # Identify Controller SN

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISSOCK, "a socket"))


class PreflightError(Exception):
    """A start-up argument that cannot work; the message says why, in one line."""


def regular_file(path: Path, what: str) -> os.stat_result:
    """The stat of `path`, which must exist and be a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PreflightError(f"{what} {path}: {exc.strerror}") from exc
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise PreflightError(f"{what} {path} is {kind}, not a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise PreflightError(f"{what} {path} is not a regular file")
    return st


def test_file(path: Path, what: str) -> None:
    st = regular_file(path, what)
    if st.st_size > MAX_TEST_FILE:
        raise PreflightError(f"{what} {path}: {st.st_size} bytes, more than a test file "
                             f"holds ({MAX_TEST_FILE})")


def serial(value: str) -> None:
    if not value or len(value) > SERIAL_BYTES or not all(" " <= c <= "~" for c in value):
        raise PreflightError(f"--serial {value!r}: must be 1 to {SERIAL_BYTES} printable ASCII "
                             "characters (the Identify SN field)")


def socket_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise PreflightError(f"socket path {path} is {size} bytes long; a vfio-user socket "
                             f"path holds at most {MAX_SOCKET_PATH}")


def trace_file(value: str | None) -> None:
    if value is None or value == "-":
        return
    path = Path(value)
    if path.exists():
        regular_file(path, "trace file")
        if not os.access(path, os.W_OK):
            raise PreflightError(f"trace file {path}: not writable")
        return
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PreflightError(f"trace file {path}: cannot be created in {parent}")


class ServeArguments(Protocol):
    socket: Path
    image: Path
    serial: str | None
    trace: str | None
    chunk_state: Path | None
    write_fail: Path | None
    reset_fail: Path | None
    read_fail: Path | None


def check_serve(options: ServeArguments) -> None:
    """Everything `serve` was given, before it opens, extends or listens on anything."""
    if options.serial is not None:
        serial(options.serial)
    socket_path(options.socket)
    regular_file(options.image, "image")
    for path, what in ((options.chunk_state, "--chunk-state"),
                       (options.write_fail, "--write-fail"),
                       (options.reset_fail, "--reset-fail"), (options.read_fail, "--read-fail")):
        if path is not None:
            test_file(path, what)
    trace_file(options.trace)
