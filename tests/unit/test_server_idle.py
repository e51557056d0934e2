"""The server's idle hook (vfu/server.py): a device's idle-time work (the FTL's
background GC) runs one step per quiet moment, stops when a step says nothing is left,
and is armed again by the next client message. The socket is a socketpair standing in
for the vfio-user connection; the controller is the real one."""

from __future__ import annotations

import socket

import trio

from ocssd_vfu.timing.scheduler import CompletionScheduler
from ocssd_vfu.vfu.server import IDLE_AFTER, Server
from tests.unit.fakehost import FakeHost


class Connection:
    """What the run loop's wait uses of a VfuDevice: the fd it polls."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def poll_fd(self) -> int:
        return self.fd


def test_idle_work_runs_while_left_and_again_after_a_message() -> None:
    ours, client = socket.socketpair()
    steps: list[float] = []

    def idle() -> bool:
        steps.append(trio.current_time())
        return len(steps) not in (3, 4)     # nothing left after the 3rd, and the 4th step

    host = FakeHost()
    server = Server(Connection(ours.fileno()), host.ctrl,  # type: ignore[arg-type]
                    sync=lambda: None, once=True, sync_interval=0.0,
                    scheduler=CompletionScheduler(queue=host.ctrl.held), idle=idle)

    async def wake_ups() -> list[bool]:
        woken = []
        with trio.fail_after(5):
            start = trio.current_time()
            for _ in range(3):
                woken.append(await server._wake_up())
            assert steps[0] - start >= IDLE_AFTER
            with trio.move_on_after(0.3):             # nothing left: only a message wakes it
                woken.append(await server._wake_up())
            client.send(b"x")
            woken.append(await server._wake_up())       # the message
            ours.recv(1)
            woken.append(await server._wake_up())       # a quiet moment: one more step
        return woken

    try:
        assert trio.run(wake_ups) == [False, False, False, True, False]
        assert len(steps) == 4
    finally:
        server.scheduler.close()
        ours.close()
        client.close()
