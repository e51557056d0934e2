"""`ocssd-vfu top` in a real terminal (tmux), against the fake device."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.fake_device_process import fake_device_process

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("tmux") is None,
                                 reason="tmux is not installed (make setup installs it)")]

Pane = Callable[..., str]


class Tmux:
    """A private tmux server (own socket), killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "tmux.sock"

    def __call__(self, *words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *words],
                              capture_output=True, text=True, timeout=20, check=False)

    def start(self, width: int, height: int, command: str) -> None:
        done = self("new-session", "-d", "-x", str(width), "-y", str(height), command)
        assert done.returncode == 0, done.stderr

    def capture(self) -> str:
        return self("capture-pane", "-p").stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, (
                f"no {text!r} on the screen:\n{screen}\n{self('capture-pane', '-p').stderr}")
            time.sleep(0.2)

    def wait_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self("has-session").returncode == 0:
            assert time.monotonic() < deadline, f"top did not exit:\n{self.capture()}"
            time.sleep(0.1)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        server("kill-server")


@pytest.fixture
def control_path() -> Iterator[Path]:
    with fake_device_process() as path:
        yield path


def top_command(control: Path) -> str:
    # The exit status stays readable in a file; the pane closes when top ends.
    return f"{sys.executable} -m ocssd_vfu top --control {control}; echo $? > {control}.status"


def test_top_at_80x24_shows_both_maps_and_quits_on_q(tmux: Tmux, control_path: Path) -> None:
    tmux.start(80, 24, top_command(control_path))
    screen = tmux.wait_for("IOPS")
    lines = screen.splitlines()
    assert lines[0].startswith("ocssd-vfu top  ocssd 2.0  ")
    assert "guest errors 2  WAF 1.25" in lines[1]
    assert lines[2:6] == ["grp0  0  ·o█·   grp0  0  ·░█·",
                          "grp0  1  ····   grp0  1  ····",
                          "grp1  0  ····   grp1  0  ····",
                          "grp1  1  ·X··   grp1  1  ·█··"]
    tmux("send-keys", "q")
    tmux.wait_gone()
    assert Path(f"{control_path}.status").read_text() == "0\n"


def test_a_narrow_terminal_shows_one_map_and_w_switches(tmux: Tmux, control_path: Path
                                                         ) -> None:
    tmux.start(24, 12, top_command(control_path))
    tmux.wait_for("grp1  1  ·X··")
    tmux("send-keys", "w")
    screen = tmux.wait_for("grp1  1  ·█··")
    assert "grp0  0  ·░█·" in screen
    tmux("send-keys", "C-c")
    tmux.wait_gone()
    assert Path(f"{control_path}.status").read_text() == "0\n"
