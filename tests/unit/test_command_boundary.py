"""One boundary per command: a handler that raises fails its command with Internal
Error (counted, logged once with its traceback) and the controller goes on; and the
causes seen in the field: holes that cannot be punched, a trace that cannot be written."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.media.raw import RawImage
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.plain.namespace import PlainNamespace
from tests.unit.fakehost import DATA, FakeHost

INTERNAL_ERROR = 0x06
DSM, READ, WRITE = 0x09, 0x02, 0x01


class BrokenNamespace(PlainNamespace):
    """A namespace with a bug in Deallocate."""

    def deallocate(self, slba: int, nlb: int) -> None:
        raise RuntimeError("a bug")


def dsm_deallocate(host: FakeHost, slba: int, nlb: int) -> int:
    host.ram_write(DATA, (0).to_bytes(4, "little") + nlb.to_bytes(4, "little")
                   + slba.to_bytes(8, "little"))
    return host.command(1, DSM, nsid=1, prp1=DATA, cdw10=0, cdw11=1 << 2)[5]


def test_a_raising_handler_fails_its_command_and_the_controller_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost(namespace=BrokenNamespace(1, memoryview(bytearray(64 * 4096)), 4096))
    host.enable()
    host.create_io_queues()
    assert dsm_deallocate(host, 0, 8) == INTERNAL_ERROR
    assert dsm_deallocate(host, 0, 8) == INTERNAL_ERROR
    assert host.command(1, READ, nsid=1, prp1=DATA)[5] == 0
    assert host.ctrl.internal_errors == 2
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 2 and logged[0].exc_info is not None


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_deallocate_where_holes_cannot_be_punched_writes_zeroes(ramfs: Path) -> None:
    path = ramfs / "disk.raw"
    path.write_bytes(b"\x77" * (64 * 4096))
    image = RawImage(path, 4096)
    try:
        host = FakeHost(namespace=PlainNamespace(1, image.view, 4096, allocation=image))
        host.enable()
        host.create_io_queues()
        assert dsm_deallocate(host, 2, 4) == 0
        assert dsm_deallocate(host, 8, 1) == 0
        assert host.command(1, READ, nsid=1, prp1=DATA, cdw10=3)[5] == 0
        assert host.ram_read(DATA, 4096) == bytes(4096)
        assert bytes(image.view[6 * 4096:6 * 4096 + 4]) == b"\x77" * 4
        assert host.ctrl.internal_errors == 0
    finally:
        host.ctrl.release_native()  # C lets go of the image before it closes
        image.close()


def test_a_trace_that_cannot_be_written_turns_itself_off(
        caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost()
    host.enable()
    host.create_io_queues()
    full = open("/dev/full", "w")  # noqa: SIM115 - every write fails with ENOSPC
    host.ctrl.tracer = make_tracer(host.ctrl, full, "text")
    caplog.set_level(logging.WARNING)
    assert host.command(1, WRITE, nsid=1, prp1=DATA)[5] == 0
    assert host.command(1, WRITE, nsid=1, prp1=DATA)[5] == 0
    with contextlib.suppress(OSError):  # the line still buffered
        full.close()
    assert host.ctrl.tracer is None
    assert [r.getMessage() for r in caplog.records if "trace" in r.getMessage()] == [
        "trace: cannot write ([Errno 28] No space left on device): tracing off"]
