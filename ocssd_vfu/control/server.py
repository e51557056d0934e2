"""The control socket: QMP sessions on a unix socket, in the device's trio loop.

Each client has a reader task (bytes -> QmpSession -> commands, one at a time, as QMP
runs in-band commands) and a writer task draining a bounded outbox of whole messages,
so an event never lands inside a reply. A client that does not read is dropped when its
outbox is full or one write stalls for WRITE_TIMEOUT; a client that sends garbage gets
errors; one that breaks a size bound gets an error and is hung up on. None of this
blocks the other clients or the device: nothing here waits on a client except that
client's own tasks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ocssd_vfu import __version__
from ocssd_vfu.control.commands import Registry, build_registry, version
from ocssd_vfu.control.device import ControlledDevice
from ocssd_vfu.control.qmp import QmpSession, Reply, encode, event_message, greeting
from ocssd_vfu.vfu.server import claim_socket_path

log = logging.getLogger("ocssd_vfu.control")

READ_CHUNK = 4096
OUTBOX_MESSAGES = 256      # queued replies and events per client before it counts as stuck
WRITE_TIMEOUT = 5.0        # seconds one message may take to leave
AFTER_REPLY_TIMEOUT = 1.0  # quit waits this long for its reply to leave
LINGER_TIMEOUT = 1.0       # seconds a hung-up client's remaining input is read and dropped
MAX_CLIENTS = 16
NEGOTIATION_TIMEOUT = 10.0 # seconds a new client has to send qmp_capabilities
RATE_LIMITS = {"GUEST_ERROR": 1.0}   # seconds between two events of that name (QEMU: 1 s)


def listen(path: Path) -> socket.socket:
    """Bind now (refusing to replace a non-socket: ServeError), so a caller can fail
    early, before it touches anything else."""
    claim_socket_path(path)
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listening.bind(str(path))
        os.chmod(path, 0o600)   # before listen(): nobody connects in between
        listening.listen(MAX_CLIENTS)
    except BaseException:
        listening.close()
        raise
    return listening


@dataclass
class _Outgoing:
    data: bytes
    sent: trio.Event | None = None


@dataclass
class _Client:
    number: int
    session: QmpSession = field(default_factory=QmpSession)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    outbox: tuple[trio.MemorySendChannel[_Outgoing], trio.MemoryReceiveChannel[_Outgoing]] = \
        field(default_factory=lambda: trio.open_memory_channel[_Outgoing](OUTBOX_MESSAGES))

    def post(self, message: dict[str, Any], sent: trio.Event | None = None) -> None:
        try:
            self.outbox[0].send_nowait(_Outgoing(encode(message), sent))
        except trio.WouldBlock:
            log.warning("control client %d reads too slowly: dropped", self.number)
            self.scope.cancel()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass   # on its way out


@dataclass
class _Held:
    data: dict[str, Any] | None
    coalesced: int


class ControlServer:
    """Serves `device` on `path`; `emit` sends an event to every negotiated client."""

    def __init__(self, path: Path, device: ControlledDevice,
                 registry: Registry | None = None,
                 negotiation_timeout: float = NEGOTIATION_TIMEOUT) -> None:
        self.path = path
        self.device = device
        self.negotiation_timeout = negotiation_timeout
        self.registry = registry if registry is not None else build_registry(device)
        self._clients: dict[int, _Client] = {}
        self._next_number = 1
        self._nursery: trio.Nursery | None = None
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, _Held] = {}

    # -- listening --------------------------------------------------------------------------
    def open_listener(self) -> socket.socket:
        return listen(self.path)

    async def serve(self, listening: socket.socket | None = None,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(
            listening if listening is not None else self.open_listener()))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    stream = await listener.accept()
                    if len(self._clients) >= MAX_CLIENTS:
                        log.warning("control socket: %d clients already, refusing one",
                                    MAX_CLIENTS)
                        await trio.aclose_forcefully(stream)
                        continue
                    nursery.start_soon(self._serve_client, stream)
        finally:
            # Everything synchronous first: under cancellation the await below raises.
            self._nursery = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            await trio.aclose_forcefully(listener)

    # -- events -----------------------------------------------------------------------------
    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        if self._nursery is None:
            return   # not serving: nobody to tell
        period = RATE_LIMITS.get(name)
        if period is not None:
            now = trio.current_time()
            held = self._held.get(name)
            if held is not None:
                held.data, held.coalesced = data, held.coalesced + 1
                return
            if now - self._last_sent.get(name, -period) < period:
                self._held[name] = _Held(data, 1)
                self._nursery.start_soon(self._release_held, name,
                                         self._last_sent[name] + period - now)
                return
            self._last_sent[name] = now
        self._broadcast(name, data)

    async def _release_held(self, name: str, delay: float) -> None:
        await trio.sleep(delay)
        held = self._held.pop(name)
        self._last_sent[name] = trio.current_time()
        data = None if held.data is None else {**held.data, "coalesced": held.coalesced}
        self._broadcast(name, data)

    def _broadcast(self, name: str, data: dict[str, Any] | None) -> None:
        message = event_message(name, data)
        for client in list(self._clients.values()):
            if client.session.negotiated:
                client.post(message)

    # -- one client -------------------------------------------------------------------------
    async def _serve_client(self, stream: trio.SocketStream) -> None:
        client = _Client(self._next_number)
        self._next_number += 1
        self._clients[client.number] = client
        log.info("control client %d connected", client.number)
        try:
            with client.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, client, stream)
                    major, minor, micro = version()
                    client.post(greeting(major, minor, micro, f"ocssd-vfu {__version__}"))
                    await self._read_loop(client, stream)
                    client.outbox[0].close()   # the writer sends what is queued, then ends
                if client.session.closing:
                    await self._linger(stream)
        finally:
            del self._clients[client.number]
            log.info("control client %d gone", client.number)
            if client.session.negotiated:
                self.emit("CLIENT_DETACHED", {"client": client.number,
                                              "clients": len(self._clients)})
            await trio.aclose_forcefully(stream)   # raises Cancelled when shutting down

    async def _linger(self, stream: trio.SocketStream) -> None:
        """Hang up without a reset: closing with unread input would make the client's
        kernel drop the error reply we just sent."""
        with trio.move_on_after(LINGER_TIMEOUT):
            try:
                await stream.send_eof()
                while await stream.receive_some(READ_CHUNK):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _read_loop(self, client: _Client, stream: trio.SocketStream) -> None:
        session = client.session
        # A client that never negotiates would hold one of MAX_CLIENTS places for good.
        negotiation_deadline = trio.current_time() + self.negotiation_timeout
        while not session.closing:
            with trio.move_on_at(math.inf if session.negotiated else negotiation_deadline
                                 ) as waiting:
                try:
                    data = await stream.receive_some(READ_CHUNK)
                except trio.BrokenResourceError:
                    return
            if waiting.cancelled_caught:
                log.warning("control client %d did not negotiate within %g s: dropped",
                            client.number, self.negotiation_timeout)
                return
            if not data:
                return
            for action in session.receive(data):
                if isinstance(action, Reply):
                    client.post(action.message)
                    # The negotiation's reply is the only `return` a session answers itself.
                    if "return" in action.message:
                        self._attached(client)
                    continue
                reply, command = await self.registry.execute(action)
                if command is None or command.after_reply is None:
                    client.post(reply)
                    continue
                await self._reply_then(client, reply, command.after_reply)

    def _attached(self, client: _Client) -> None:
        self.emit("CLIENT_ATTACHED", {"client": client.number, "clients": len(self._clients)})

    async def _reply_then(self, client: _Client, reply: dict[str, Any],
                          action: Callable[[], None]) -> None:
        sent = trio.Event()
        client.post(reply, sent)
        with trio.move_on_after(AFTER_REPLY_TIMEOUT):
            await sent.wait()
        action()

    async def _write_loop(self, client: _Client, stream: trio.SocketStream) -> None:
        async for outgoing in client.outbox[1]:
            with trio.move_on_after(WRITE_TIMEOUT) as timeout:
                try:
                    await stream.send_all(outgoing.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    client.scope.cancel()
                    return
            if timeout.cancelled_caught:
                log.warning("control client %d stopped reading: dropped", client.number)
                client.scope.cancel()
                return
            if outgoing.sent is not None:
                outgoing.sent.set()
