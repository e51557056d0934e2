"""The Python API and the pytest plugin's fixtures, with the real `ocssd-vfu serve`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ocssd_vfu.api import ServedDevice, ServeFailed, serve_arguments, served_device

pytestmark = pytest.mark.timeout(120)


def test_keyword_options_become_serve_options() -> None:
    assert serve_arguments({"pe_cycles": 3, "volatile": True, "once": False,
                            "trace": None, "serve_arg": ["a", "b"]}) == [
        "--pe-cycles", "3", "--volatile", "--serve-arg", "a", "--serve-arg", "b"]


def test_a_served_device_is_stopped_and_cleaned_up(ocssd_image: Path) -> None:
    with served_device(ocssd_image, control=False, volatile=True) as device:
        assert device.socket.is_socket()
        assert device.process.poll() is None
        assert device.qemu_device_json() == (
            '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"'
            f'{device.socket}"}}}}')
        workdir = device.socket.parent
    assert device.process.returncode == 0    # SIGTERM: a clean stop
    assert not workdir.exists()


def test_a_failing_block_still_stops_the_server(ocssd_image: Path) -> None:
    with pytest.raises(KeyError), served_device(ocssd_image, control=False) as device:
        raise KeyError("the test failed")
    assert device.process.returncode in (0, -signal.SIGKILL)
    assert not device.socket.parent.exists()


def test_a_refused_start_raises_with_the_servers_words(tmp_path: Path) -> None:
    (tmp_path / "plain.raw").write_bytes(bytes(1 << 20))
    with pytest.raises(ServeFailed, match="exited with 1:\n.*--volatile is for OCSSD images"), \
            served_device(tmp_path / "plain.raw", control=False, volatile=True):
        pass


def test_the_fixture_serves_with_a_control_socket(ocssd_served: ServedDevice) -> None:
    assert ocssd_served.control is not None
    assert len(ocssd_served.control.execute("query-chunks", grp=0, pu=0, state="FREE")) == 16
    assert ocssd_served.control.execute("inject-fault", op="reset", grp=1, pu=3, chk=15) == {
        "op": "reset", "grp": 1, "pu": 3, "chk": 15, "probability": 100}
