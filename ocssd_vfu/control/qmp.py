"""QMP's wire protocol, sans I/O (qemu docs/interop/qmp-spec.rst; research-features §4).

A `QmpSession` takes the bytes one client sent and returns what to do: commands to run
and replies to send. The client side (qemu.qmp) writes its JSON objects back to back with
no terminator, so input is a byte stream split by brace depth (as QEMU's json-streamer
does), never by lines; everything the server writes is one compact object + CRLF.

Bounds, so that a hostile client costs little: one message may hold at most
MAX_MESSAGE_BYTES and nest MAX_DEPTH deep, otherwise the session answers an error and
asks to be closed; garbage outside an object is skipped as it arrives (one error per run
of it), never buffered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024
MAX_DEPTH = 32
WHITESPACE = b" \t\r\n"

# QapiErrorClass names (qapi/error.json).
GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"


def encode(message: dict[str, Any]) -> bytes:
    """One message on the wire: compact ASCII JSON and CRLF, as QEMU sends it."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode() + b"\r\n"


def error_reply(error_class: str, desc: str, request_id: Any = None,
                has_id: bool = False) -> dict[str, Any]:
    reply: dict[str, Any] = {"error": {"class": error_class, "desc": desc}}
    if has_id:
        reply["id"] = request_id
    return reply


def event_message(name: str, data: dict[str, Any] | None, now: float | None = None
                  ) -> dict[str, Any]:
    seconds = time.time() if now is None else now
    whole = int(seconds)
    message: dict[str, Any] = {"event": name}
    if data is not None:
        message["data"] = data
    message["timestamp"] = {"seconds": whole,
                            "microseconds": int(round((seconds - whole) * 1_000_000)) % 1_000_000}
    return message


@dataclass(frozen=True)
class Request:
    """A well-formed `{"execute": ...}`; `has_id` tells an absent id from `"id": null`."""

    name: str
    arguments: dict[str, Any]
    request_id: Any = None
    has_id: bool = False

    def reply(self, value: Any) -> dict[str, Any]:
        reply: dict[str, Any] = {"return": value}
        if self.has_id:
            reply["id"] = self.request_id
        return reply

    def error(self, error_class: str, desc: str) -> dict[str, Any]:
        return error_reply(error_class, desc, self.request_id, self.has_id)


@dataclass(frozen=True)
class Reply:
    """A message to send as it is (an error found while reading the input)."""

    message: dict[str, Any]


@dataclass
class JsonStreamSplitter:
    """Cuts a byte stream into top-level JSON objects (bytes), tracking strings and depth."""

    _pending: bytearray = field(default_factory=bytearray)
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False
    _in_garbage: bool = False

    def feed(self, data: bytes) -> list[bytes | str]:
        """Complete objects as bytes, and problems as one-line texts, in input order."""
        out: list[bytes | str] = []
        for byte in data:
            problem = self._step(byte)
            if problem is not None:
                out.append(problem)
            elif self._depth == 0 and self._pending and not self._in_string:
                out.append(bytes(self._pending))
                self._pending.clear()
        return out

    @property
    def too_large(self) -> bool:
        return len(self._pending) > MAX_MESSAGE_BYTES

    @property
    def too_deep(self) -> bool:
        return self._depth > MAX_DEPTH

    def _step(self, byte: int) -> str | None:
        if byte < 0x20 and byte not in WHITESPACE or byte == 0xFF:
            # The spec's parser reset: drop whatever was half-read.
            had_partial = bool(self._pending)
            self._reset()
            return "JSON parse error, input reset" if had_partial else None
        if self._depth == 0:
            return self._between_messages(byte)
        self._pending.append(byte)
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif byte == 0x5C:      # backslash
                self._escaped = True
            elif byte == 0x22:      # quote
                self._in_string = False
        elif byte == 0x22:
            self._in_string = True
        elif byte in b"{[":
            self._depth += 1
        elif byte in b"}]":
            self._depth -= 1
        return None

    def _between_messages(self, byte: int) -> str | None:
        if byte == 0x7B:            # "{" starts a message
            self._in_garbage = False
            self._pending.append(byte)
            self._depth = 1
            return None
        if byte in WHITESPACE:
            if byte == 0x0A:
                self._in_garbage = False
            return None
        if self._in_garbage:        # the rest of a run already answered
            return None
        self._in_garbage = True
        if byte == 0x5B:            # "[": QEMU parses it, then refuses it
            return "QMP input must be a JSON object"
        return "JSON parse error, expecting value"

    def _reset(self) -> None:
        self._pending.clear()
        self._depth = 0
        self._in_string = self._escaped = self._in_garbage = False


_REQUEST_KEYS = ("execute", "arguments", "id")


def parse_request(text: bytes) -> Request | Reply:
    """A request, or the error QEMU's dispatcher answers for that input."""
    try:
        message = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Reply(error_reply(GENERIC_ERROR, "JSON parse error, invalid JSON object"))
    if not isinstance(message, dict):
        return Reply(error_reply(GENERIC_ERROR, "QMP input must be a JSON object"))
    has_id = "id" in message
    request_id = message.get("id")

    def refuse(desc: str) -> Reply:
        return Reply(error_reply(GENERIC_ERROR, desc, request_id, has_id))

    if "exec-oob" in message:
        return refuse("QMP input member 'exec-oob' is unexpected: out-of-band execution "
                      "is not offered")
    for key in message:
        if key not in _REQUEST_KEYS:
            return refuse(f"QMP input member '{key}' is unexpected")
    if "execute" not in message:
        return refuse("QMP input lacks member 'execute'")
    if not isinstance(message["execute"], str):
        return refuse("QMP input member 'execute' must be a string")
    arguments = message.get("arguments", {})
    if not isinstance(arguments, dict):
        return refuse("QMP input member 'arguments' must be an object")
    return Request(message["execute"], arguments, request_id, has_id)


@dataclass
class QmpSession:
    """One client's protocol state: negotiation, then commands; events only after it."""

    splitter: JsonStreamSplitter = field(default_factory=JsonStreamSplitter)
    negotiated: bool = False
    closing: bool = False   # the input broke a bound: send what is queued, then hang up

    def receive(self, data: bytes) -> list[Request | Reply]:
        actions: list[Request | Reply] = []
        for item in self.splitter.feed(data):
            if isinstance(item, str):
                actions.append(Reply(error_reply(GENERIC_ERROR, item)))
                continue
            actions.append(self._negotiation_gate(parse_request(item)))
        if self.splitter.too_large or self.splitter.too_deep:
            limit = (f"larger than {MAX_MESSAGE_BYTES} bytes" if self.splitter.too_large
                     else f"nested deeper than {MAX_DEPTH}")
            actions.append(Reply(error_reply(GENERIC_ERROR,
                                             f"JSON message {limit}: closing the connection")))
            self.closing = True
        return actions

    def _negotiation_gate(self, action: Request | Reply) -> Request | Reply:
        if not isinstance(action, Request):
            return action
        if action.name == "qmp_capabilities":
            if self.negotiated:
                return Reply(action.error(COMMAND_NOT_FOUND, "Capabilities negotiation is "
                                          "already complete, command ignored"))
            problem = _capabilities_problem(action.arguments)
            if problem:
                return Reply(action.error(GENERIC_ERROR, problem))
            self.negotiated = True
            return Reply(action.reply({}))
        if not self.negotiated:
            return Reply(action.error(COMMAND_NOT_FOUND, "Expecting capabilities negotiation "
                                      "with 'qmp_capabilities'"))
        return action


def _capabilities_problem(arguments: dict[str, Any]) -> str | None:
    for key in arguments:
        if key != "enable":
            return f"Parameter '{key}' is unexpected"
    enable = arguments.get("enable", [])
    if not isinstance(enable, list) or not all(isinstance(c, str) for c in enable):
        return "Invalid parameter type for 'enable', expected: array of strings"
    for capability in enable:
        if capability == "oob":
            return "Capability oob not available"
        return f"Parameter 'enable' does not accept value '{capability}'"
    return None


def greeting(major: int, minor: int, micro: int, package: str) -> dict[str, Any]:
    """qmp-shell reads version.qemu.{major,minor,micro}; no capabilities are offered."""
    return {"QMP": {"version": {"qemu": {"major": major, "minor": minor, "micro": micro},
                                "package": package},
                    "capabilities": []}}
