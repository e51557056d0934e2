"""A ControlServer with the fake device, in its own trio loop on a thread."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ocssd_vfu.control.device import DeviceEvents
from ocssd_vfu.control.server import ControlServer
from tests.fake_control_device import FakeDevice


@dataclass
class RunningControl:
    path: Path
    device: FakeDevice
    server: ControlServer
    token: trio.lowlevel.TrioToken

    def in_loop(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function` on the server's trio thread (as the device loop would)."""
        return trio.from_thread.run_sync(function, *args, trio_token=self.token)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        self.in_loop(self.server.emit, name, data)


@contextlib.contextmanager
def running_control(device: FakeDevice | None = None, negotiation_timeout: float = 10.0
                    ) -> Iterator[RunningControl]:
    device = device if device is not None else FakeDevice()
    with tempfile.TemporaryDirectory(prefix="ocssd-ctl-") as workdir:
        path = Path(workdir) / "control.sock"
        server = ControlServer(path, device, negotiation_timeout=negotiation_timeout)
        device.events = DeviceEvents(server)
        ready = threading.Event()
        state: dict[str, Any] = {}

        async def main() -> None:
            state["token"] = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                state["scope"] = nursery.cancel_scope
                await nursery.start(server.serve)
                ready.set()

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # shown by the test that waits for `ready`
                state["error"] = exc
                ready.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10), "control server did not start"
        if "error" in state:
            raise state["error"]
        try:
            yield RunningControl(path, device, server, state["token"])
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
            thread.join(10)
            assert not thread.is_alive(), "control server did not stop"
