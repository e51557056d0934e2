"""A small blocking QMP client for the control socket (ctl, top, the Python API).

qemu.qmp's QMPClient works too (the tests use it); this one has no dependency and no
event loop, so it fits a shell command or a test's straight-line code.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

MAX_KEPT_EVENTS = 10_000


class ControlError(Exception):
    """The server answered with an error (or the connection failed)."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(f"{error_class}: {desc}")
        self.error_class = error_class
        self.desc = desc


class ControlClient:
    """Connects, negotiates, runs commands; events that arrive meanwhile are kept."""

    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_EVENTS)
        self._buffer = b""
        self._next_id = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
            self.greeting = self._message()
            if "QMP" not in self.greeting:
                raise ControlError("ProtocolError", f"not a QMP greeting: {self.greeting}")
            self.execute("qmp_capabilities")
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def execute(self, name: str, **arguments: Any) -> Any:
        """The command's return value, or ControlError with the server's class and desc."""
        request_id = f"ocssd-vfu#{self._next_id}"
        self._next_id += 1
        request: dict[str, Any] = {"execute": name, "id": request_id}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode())
        while True:
            message = self._message()
            if "event" in message:
                self.events.append(message)
                continue
            if message.get("id") != request_id:
                continue   # an error about input we never sent cannot be ours
            if "error" in message:
                raise ControlError(message["error"]["class"], message["error"]["desc"])
            return message["return"]

    def wait_event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event called `name` (kept or arriving within `timeout` seconds)."""
        for event in list(self.events):
            if event["event"] == name:
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name} event within {timeout} s")
            self._sock.settimeout(remaining)
            try:
                message = self._message()
            finally:
                self._sock.settimeout(self.timeout)
            if message.get("event") == name:
                return message
            if "event" in message:
                self.events.append(message)

    def _message(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.path}: the server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message
