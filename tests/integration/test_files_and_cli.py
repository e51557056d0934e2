"""Bad files and paths given to the real `ocssd-vfu` command: each is one line on stderr
naming the problem, a non-zero exit, and no file modified (size, mtime and content
compared before and after)."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.integration.server_process import short_tmpdir

pytestmark = pytest.mark.timeout(120)

# 1 x 1 x 4 chunks x 16 sectors: a valid geometry (pblk would not run on it).
TINY = ["--num-grp", "1", "--num-pu", "1", "--num-chk", "4", "--num-sec", "16", "--ws-opt", "8",
        "--mw-cunits", "8"]
HEADER_SIZE = 40
GEOMETRY_AT = 4096          # namespace 1's Geometry page
CHUNK_LOG_AT = 8192         # its chunk log: 32-byte descriptors


def fingerprint(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "warning" not in line]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tmpdir() as path:
        yield path


@pytest.fixture
def tiny(workdir: Path, ocssd_vfu: RunCli) -> Path:
    image = workdir / "tiny.img"
    created = ocssd_vfu("image", "create", str(image), *TINY)
    assert created.status == 0, created.stderr
    old = time.time_ns() - 10**9 * 3600  # an hour ago: a rewrite would show in the mtime
    os.utime(image, ns=(old, old))
    return image


def patch(offset: int, data: bytes) -> Callable[[bytearray], None]:
    def damage(content: bytearray) -> None:
        content[offset:offset + len(data)] = data
    return damage


DAMAGED = [
    ("truncated to the header", lambda c: c.__delitem__(slice(30, None)),
     "truncated: 30 bytes, the header alone needs 40"),
    ("truncated in the data", lambda c: c.__delitem__(slice(len(c) - 100, None)),
     "truncated:"),
    ("wrong magic", patch(0, b"NOPE"), "magic b'NOPE': not an OCSSD image"),
    ("wrong version", patch(4, struct.pack("<I", 9)), "version 9: only version 1"),
    ("namespace count", patch(8, struct.pack("<I", 3)), "truncated:"),
    ("ns_size", patch(32, struct.pack("<Q", 4096)), "ns_size 4096: the geometry needs"),
    ("geometry version", patch(GEOMETRY_AT, b"\x07"), "namespace 1:"),
    ("geometry ws_opt", patch(GEOMETRY_AT + 132, struct.pack("<I", 5)), "ws_opt=5"),
]


@pytest.mark.parametrize(("damage", "message"), [(d, m) for _, d, m in DAMAGED],
                         ids=[name for name, _, _ in DAMAGED])
def test_damaged_images_are_refused_by_every_command_and_left_alone(
        tiny: Path, workdir: Path, ocssd_vfu: RunCli,
        damage: Callable[[bytearray], None], message: str) -> None:
    content = bytearray(tiny.read_bytes())
    damage(content)
    tiny.write_bytes(content)
    os.utime(tiny, ns=(1, 10**18))
    before = fingerprint(tiny)
    sock = workdir / "s.sock"
    for argv in (["image", "info", str(tiny)], ["image", "chunks", str(tiny)],
                 ["serve", "--socket", str(sock), "--image", str(tiny), "--mode", "ocssd"]):
        done = ocssd_vfu(*argv)
        assert done.status != 0, (argv, done.stdout, done.stderr)
        line = one_line_error(done.stderr)
        if argv[0] == "serve" and message in ("magic b'NOPE': not an OCSSD image",):
            message = "is not an OCSSD image (no LNVM header)"
        assert message in line, (argv, line)
        assert fingerprint(tiny) == before, argv
    assert not sock.exists()


def test_serve_refuses_an_image_whose_chunk_log_is_inconsistent(
        tiny: Path, workdir: Path, ocssd_vfu: RunCli) -> None:
    content = bytearray(tiny.read_bytes())
    # chunk 2: OPEN with WP 40, past its 16 sectors
    struct.pack_into("<BBB5xQQQ", content, CHUNK_LOG_AT + 2 * 32, 0x04, 0x01, 0, 0x20, 16, 40)
    tiny.write_bytes(content)
    before = fingerprint(tiny)
    info = ocssd_vfu("image", "info", str(tiny))
    assert info.status == 1 and "chunk 2" in info.stdout, info.stdout
    done = ocssd_vfu("serve", "--socket", str(workdir / "s.sock"), "--image", str(tiny))
    assert done.status == 1
    line = one_line_error(done.stderr)
    assert "chunk 2" in line and "WP" in line.upper(), line
    assert fingerprint(tiny) == before


FAULT_FILES = [
    ("--chunk-state", "grp=0 pu=0 chk=9 state=OPEN type=W_SEQ wp=8 wi=0\n",
     ":1: chk=9 out of range (0..3)"),
    ("--chunk-state", "grp=0 pu=0 chk=1 state=FULL type=W_SEQ wp=8 wi=0\n",
     ":1: state='FULL': expected one of FREE, OPEN, CLOSED, OFFLINE"),
    ("--chunk-state", "# comment\n\ngrp=0 pu=0 chk=1 state=OPEN wp=8 wi=0\n",
     ":3: missing type"),
    ("--write-fail", "grp=0 pu=0 chk=0 sec=16 writefail_prob=100\n",
     ":1: sec=16 out of range (0..15)"),
    ("--write-fail", "grp=0 pu=0 chk=0 sec=1 writefail_prob=abc\n",
     ":1: writefail_prob='abc' is not a number"),
    ("--reset-fail", "grp=0 pu=0 chk=0 resetfail_prob=101\n",
     ":1: resetfail_prob=101 out of range (0..100)"),
    ("--reset-fail", "grp=0 pu=0 chk=0 resetfail_prob=50 extra\n",
     ":1: 'extra' is not key=value"),
    ("--reset-fail", b"grp=0 pu=0 chk=0 resetfail_prob=\xff\n", ": cannot read"),
]


@pytest.mark.parametrize(("option", "text", "message"), FAULT_FILES,
                         ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(FAULT_FILES)])
def test_malformed_test_files_stop_serve_before_anything_changes(
        tiny: Path, workdir: Path, ocssd_vfu: RunCli, option: str, text: str | bytes,
        message: str) -> None:
    bad = workdir / "faults.txt"
    if isinstance(text, bytes):
        bad.write_bytes(text)
    else:
        bad.write_text(text)
    before = fingerprint(tiny)  # a qemu-img-sized file: serving would extend it
    sock = workdir / "s.sock"
    done = ocssd_vfu("serve", "--socket", str(sock), "--image", str(tiny), option, str(bad))
    assert done.status == 1
    assert message in one_line_error(done.stderr)
    assert str(bad) in done.stderr
    assert fingerprint(tiny) == before
    assert not sock.exists()


def test_unreadable_paths_are_named(tiny: Path, workdir: Path, ocssd_vfu: RunCli) -> None:
    sock = str(workdir / "s.sock")
    cases = [
        (["image", "info", str(workdir / "missing.img")], "No such file or directory"),
        (["image", "info", str(workdir)], "is a directory, not a regular file"),
        (["image", "info", str(tiny / "below-a-file")], "Not a directory"),
        (["serve", "--socket", sock, "--image", str(workdir / "missing.img")],
         "No such file or directory"),
        (["serve", "--socket", sock, "--image", str(workdir)], "is a directory"),
        (["serve", "--socket", sock, "--image", str(tiny), "--chunk-state", str(workdir)],
         "--chunk-state " + str(workdir) + " is a directory"),
        (["serve", "--socket", str(workdir / "no-such-dir" / "s.sock"), "--image", str(tiny)],
         "no-such-dir"),
        (["image", "create", str(workdir / "no-such-dir" / "x.img")], "cannot create"),
    ]
    before = fingerprint(tiny)
    for argv, message in cases:
        done = ocssd_vfu(*argv)
        assert done.status != 0, argv
        assert message in one_line_error(done.stderr), (argv, done.stderr)
    assert fingerprint(tiny) == before
    assert sorted(p.name for p in workdir.iterdir()) == ["tiny.img"]


def test_serve_refuses_to_replace_a_file_at_the_socket_path(tiny: Path, workdir: Path,
                                                            ocssd_vfu: RunCli) -> None:
    sock = workdir / "s.sock"
    sock.write_text("precious\n")
    done = ocssd_vfu("serve", "--socket", str(sock), "--image", str(tiny))
    assert done.status == 1
    assert f"{sock} exists and is not a socket" in one_line_error(done.stderr)
    assert sock.read_text() == "precious\n"


def test_the_socket_is_created_0600(tiny: Path, workdir: Path) -> None:
    sock = workdir / "s.sock"
    os.umask(old := os.umask(0))  # whatever the umask, the socket is the owner's only
    os.umask(0)
    try:
        server = subprocess.Popen([sys.executable, "-m", "ocssd_vfu", "serve", "--socket",
                                   str(sock), "--image", str(tiny)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.umask(old)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        mode = sock.lstat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert not sock.exists()
