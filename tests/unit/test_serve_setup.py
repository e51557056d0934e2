"""Server start-up rules: the socket path and the image lock."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.media.raw import ImageError, RawImage
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.vfu.server import ServeError, claim_socket_path


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # sun_path is 107 bytes
        yield Path(tmp)


def test_missing_path_is_free(short_dir: Path) -> None:
    claim_socket_path(short_dir / "new.sock")


def test_non_socket_path_is_refused(short_dir: Path) -> None:
    path = short_dir / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(ServeError, match="is not a socket"):
        claim_socket_path(path)
    assert path.read_text() == "keep me"


def test_stale_socket_is_replaced(short_dir: Path) -> None:
    path = short_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # bound but nobody listens: a dead server's leftover
    claim_socket_path(path)
    assert not path.exists()


def test_live_socket_is_refused(short_dir: Path) -> None:
    path = short_dir / "live.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(1)
        with pytest.raises(ServeError, match="already listening"):
            claim_socket_path(path)
        assert path.exists()


def test_image_is_locked_against_a_second_server(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(8192))
    first = RawImage(path, 4096)
    try:
        with pytest.raises(ImageError, match="in use by another server"):
            RawImage(path, 4096)
    finally:
        first.close()
    RawImage(path, 4096).close()


def test_size_is_floored_to_whole_blocks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "odd.raw"
    path.write_bytes(bytes(3 * 4096 + 100))
    image = RawImage(path, 4096)
    try:
        assert PlainNamespace(1, image.view, 4096).nlbas == 3
        assert "not a multiple of 4096" in caplog.text
    finally:
        image.close()
    assert path.stat().st_size == 3 * 4096 + 100  # the file itself is untouched


def test_bad_images_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot open image"):
        RawImage(tmp_path / "missing.raw", 4096)
    tiny = tmp_path / "tiny.raw"
    tiny.write_bytes(b"x" * 100)
    with pytest.raises(ImageError, match="smaller than one 4096-byte block"):
        RawImage(tiny, 4096)
    with pytest.raises(ImageError, match="512 or 4096"):
        RawImage(tiny, 1000)


def test_each_image_gets_its_own_serial(tmp_path: Path) -> None:
    from ocssd_vfu.app import default_serial

    first, second = default_serial(tmp_path / "a.img"), default_serial(tmp_path / "b.img")
    assert first != second and len(first) == 18 and first.startswith("ocssd-vfu-")
    assert default_serial(tmp_path / "x" / ".." / "a.img") == first
