"""`ocssd-vfu ctl` and the blocking client, against the fake device in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.control.client import ControlClient, ControlError
from tests.integration.fake_device_process import fake_device_process

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def control_path() -> Iterator[Path]:
    with fake_device_process() as path:
        yield path


def ctl(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocssd_vfu", "ctl", *words],
                          capture_output=True, text=True, timeout=30, check=False)


def test_ctl_runs_one_command_and_prints_json(control_path: Path) -> None:
    done = ctl(str(control_path), "inject-fault", "op=write", "grp=1", "pu=0", "chk=3",
               "sec=2", "count=1")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, '{"op": "write", "grp": 1, "pu": 0, "chk": 3, "sec": 2, "probability": 100, '
           '"count": 1}\n', "")
    done = ctl(str(control_path), "query-chunks", "state=OFFLINE", "--pretty")
    assert done.stdout == """[
  {
    "grp": 1,
    "pu": 1,
    "chk": 1,
    "state": "OFFLINE",
    "type": "W_SEQ",
    "wp": 65535,
    "wli": 255,
    "cnlb": 16
  }
]
"""
    assert ctl(str(control_path), "clear-faults").stdout == '{"cleared": 1}\n'


def test_ctl_errors_go_to_stderr(control_path: Path, tmp_path: Path) -> None:
    done = ctl(str(control_path), "inject-fault", "op=write", 'grp="1"', "pu=0", "chk=3")
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "ocssd-vfu ctl: GenericError: Invalid parameter type for 'grp', "
               "expected: integer\n")
    done = ctl(str(control_path), "query-device", "nonsense")
    assert (done.returncode, done.stderr) == (1, "ocssd-vfu ctl: 'nonsense' is not KEY=VALUE\n")
    done = ctl(str(tmp_path / "none.sock"), "query-device")
    assert done.returncode == 1
    assert done.stderr.startswith(f"ocssd-vfu ctl: {tmp_path / 'none.sock'}: ")


def test_client_keeps_events_and_waits_for_them(control_path: Path) -> None:
    with ControlClient(control_path) as watcher, ControlClient(control_path) as actor:
        assert actor.execute("set-chunk-state", grp=0, pu=1, chk=0, state="OFFLINE") == {}
        event = watcher.wait_event("CHUNK_OFFLINE", timeout=10)
        assert event["data"] == {"grp": 0, "pu": 1, "chk": 0, "reason": "set-chunk-state"}
        with pytest.raises(ControlError) as caught:
            actor.execute("set-chunk-state", grp=9, pu=1, chk=0, state="FREE")
        assert (caught.value.error_class, caught.value.desc) == (
            "GenericError", "Parameter 'grp' out of range: 9 is not in 0..1")
        with pytest.raises(TimeoutError):
            watcher.wait_event("CHUNK_NOTIFICATION", timeout=0.2)
