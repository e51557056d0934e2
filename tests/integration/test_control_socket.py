"""The control socket spoken to by qemu.qmp's own client (and raw bytes for the abuse),
with the fake device behind it."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ocssd_vfu.control.server import ControlServer
from ocssd_vfu.vfu.server import ServeError
from tests.fake_control_device import FakeDevice
from tests.integration.control_harness import RunningControl, running_control

pytestmark = pytest.mark.timeout(60)

GREETING = {"QMP": {"version": {"qemu": {"major": 0, "minor": 1, "micro": 0},
                                "package": "ocssd-vfu 0.1.0"},
                    "capabilities": []}}


@pytest.fixture
def control() -> Iterator[RunningControl]:
    with running_control() as running:
        yield running


@pytest.fixture
def qmp(control: RunningControl) -> Iterator[QEMUMonitorProtocol]:
    client = QEMUMonitorProtocol(str(control.path))
    client.connect()
    client.settimeout(10)
    try:
        yield client
    finally:
        client.close()


def execute_error(client: QEMUMonitorProtocol, name: str, **arguments: Any) -> tuple[str, str]:
    with pytest.raises(ExecuteError) as caught:
        client.cmd(name, **arguments)
    return caught.value.error_class, str(caught.value)


class RawClient:
    """Bytes in, lines out: for what a polite client would never send."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buffer = b""

    def line(self) -> dict[str, Any]:
        """The next message that is not an event."""
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                assert data, "the server hung up"
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            message: dict[str, Any] = json.loads(line)
            if "event" not in message:
                return message

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def negotiate(self) -> None:
        assert self.line() == GREETING
        self.send(b'{"execute":"qmp_capabilities"}')
        assert self.line() == {"return": {}}

    def until_hung_up(self) -> None:
        while self.sock.recv(65536):
            pass

    def close(self) -> None:
        self.sock.close()


def test_greeting_negotiation_and_version(control: RunningControl) -> None:
    client = QEMUMonitorProtocol(str(control.path))
    try:
        assert client.connect() == GREETING
        assert client.cmd("query-version") == {"qemu": {"major": 0, "minor": 1, "micro": 0},
                                               "package": "ocssd-vfu 0.1.0"}
        assert execute_error(client, "qmp_capabilities") == (
            "CommandNotFound", "Capabilities negotiation is already complete, command ignored")
    finally:
        client.close()


def test_commands_before_negotiation_are_refused(control: RunningControl) -> None:
    raw = RawClient(control.path)
    try:
        assert raw.line() == GREETING
        raw.send(b'{"execute":"query-device","id":"a"}')
        assert raw.line() == {"error": {"class": "CommandNotFound", "desc": "Expecting "
                                        "capabilities negotiation with 'qmp_capabilities'"},
                              "id": "a"}
        raw.send(b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}')
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "Capability oob not available"}}
        raw.send(b'{"execute":"qmp_capabilities","id":{"any":[1]}}')
        assert raw.line() == {"return": {}, "id": {"any": [1]}}
    finally:
        raw.close()


def test_query_commands_lists_every_command(qmp: QEMUMonitorProtocol) -> None:
    names = [command["name"] for command in qmp.cmd("query-commands")]
    assert names == ["qmp_capabilities", "query-version", "query-commands", "query-device",
                     "query-stats", "query-chunks", "set-chunk-state", "inject-fault",
                     "query-faults", "clear-faults", "trace-start", "trace-stop", "sync",
                     "quit"]


def test_query_device_and_chunks(qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("query-device") == {
        "kind": "ocssd", "spec": "2.0", "image": "/fake.img",
        "geometry": {"num_grp": 2, "num_pu": 2, "num_chk": 4, "clba": 16}}
    assert qmp.cmd("query-chunks", state="OFFLINE") == [
        {"grp": 1, "pu": 1, "chk": 1, "state": "OFFLINE", "type": "W_SEQ", "wp": 65535,
         "wli": 255, "cnlb": 16}]
    assert [(c["chk"], c["state"]) for c in qmp.cmd("query-chunks", grp=0, pu=0)] == [
        (0, "FREE"), (1, "OPEN"), (2, "CLOSED"), (3, "FREE")]
    assert execute_error(qmp, "query-chunks", grp=2) == (
        "GenericError", "Parameter 'grp' out of range: 2 is not in 0..1")
    assert execute_error(qmp, "query-chunks", state="BROKEN") == (
        "GenericError", "Parameter 'state' does not accept value 'BROKEN'")


def test_unknown_command(qmp: QEMUMonitorProtocol) -> None:
    assert execute_error(qmp, "query-blocks") == (
        "CommandNotFound", "The command query-blocks has not been found")


def test_inject_query_and_clear_faults(control: RunningControl, qmp: QEMUMonitorProtocol
                                       ) -> None:
    assert qmp.cmd("inject-fault", op="write", grp=1, pu=0, chk=3, sec=7, count=2) == {
        "op": "write", "grp": 1, "pu": 0, "chk": 3, "sec": 7, "probability": 100, "count": 2}
    assert qmp.cmd("inject-fault", op="reset", grp=0, pu=1, chk=0, probability=50) == {
        "op": "reset", "grp": 0, "pu": 1, "chk": 0, "probability": 50}
    assert qmp.cmd("query-faults") == [
        {"op": "write", "grp": 1, "pu": 0, "chk": 3, "sec": 7, "probability": 100, "count": 2},
        {"op": "reset", "grp": 0, "pu": 1, "chk": 0, "probability": 50}]
    # The device's book is the one kinds will ask.
    fault = control.device.faults.fires("write", (1, 0, 3), (7,))
    assert fault is not None and fault.count == 1
    assert qmp.cmd("clear-faults", op="reset") == {"cleared": 1}
    assert qmp.cmd("clear-faults") == {"cleared": 1}
    assert qmp.cmd("query-faults") == []


@pytest.mark.parametrize(("arguments", "desc"), [
    ({"op": "erase", "grp": 0, "pu": 0, "chk": 0},
     "Parameter 'op' does not accept value 'erase'"),
    ({"op": "write", "grp": 0, "pu": 0}, "Parameter 'chk' is missing"),
    ({"op": "write", "grp": "0", "pu": 0, "chk": 0},
     "Invalid parameter type for 'grp', expected: integer"),
    ({"op": "write", "grp": True, "pu": 0, "chk": 0},
     "Invalid parameter type for 'grp', expected: integer"),
    ({"op": "write", "grp": 0, "pu": 2, "chk": 0},
     "Parameter 'pu' out of range: 2 is not in 0..1"),
    ({"op": "write", "grp": 0, "pu": 0, "chk": 0, "sec": 16},
     "Parameter 'sec' out of range: 16 is not in 0..15"),
    ({"op": "reset", "grp": 0, "pu": 0, "chk": 0, "sec": 1},
     "Parameter 'sec' is unexpected for op 'reset'"),
    ({"op": "write", "grp": 0, "pu": 0, "chk": 0, "pg": 1}, "Parameter 'pg' is unexpected"),
    ({"op": "write", "grp": 0, "pu": 0, "chk": 0, "probability": 101},
     "Parameter 'probability' out of range: 101 is not in 0..100"),
    ({"op": "write", "grp": 0, "pu": 0, "chk": 0, "count": 0},
     "Parameter 'count' out of range: 0 is not in 1.."),
])
def test_inject_fault_refuses_bad_arguments(control: RunningControl, qmp: QEMUMonitorProtocol,
                                            arguments: dict[str, Any], desc: str) -> None:
    assert execute_error(qmp, "inject-fault", **arguments) == ("GenericError", desc)
    assert control.device.faults.faults() == []


def test_set_chunk_state(control: RunningControl, qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("set-chunk-state", grp=0, pu=1, chk=2, state="OFFLINE") == {}
    assert qmp.cmd("query-chunks", grp=0, pu=1, state="OFFLINE") == [
        {"grp": 0, "pu": 1, "chk": 2, "state": "OFFLINE", "type": "W_SEQ", "wp": 65535,
         "wli": 0, "cnlb": 16}]
    event = qmp.pull_event(wait=5.0)
    while event is not None and event["event"] != "CHUNK_OFFLINE":
        event = qmp.pull_event(wait=5.0)
    assert event is not None
    assert event["data"] == {"grp": 0, "pu": 1, "chk": 2, "reason": "set-chunk-state"}
    assert execute_error(qmp, "set-chunk-state", grp=0, pu=0, chk=0, state="FREE", wp=4) == (
        "GenericError", "Parameter 'wp': a FREE chunk has wp=0, not 4")
    assert execute_error(qmp, "set-chunk-state", grp=0, pu=0, chk=0, state="OPEN", wp=16) == (
        "GenericError", "Parameter 'wp': an OPEN chunk has wp < 16")
    assert execute_error(qmp, "set-chunk-state", grp=0, pu=0, chk=0, state="CLOSED", wp=17) \
        == ("GenericError", "Parameter 'wp': wp=17 exceeds the chunk's 16 sectors")
    assert execute_error(qmp, "set-chunk-state", grp=0, pu=0, chk=0, state="CLOSED",
                         type="W_RAN", wp=16) == (
        "GenericError", "Parameter 'type': a W_RAN chunk must be OPEN")
    assert control.device.chunks[0]["state"] == "FREE"


def test_trace_sync_and_stats(control: RunningControl, qmp: QEMUMonitorProtocol) -> None:
    assert execute_error(qmp, "trace-stop") == ("GenericError", "no trace is running")
    assert execute_error(qmp, "trace-start", file="/nonexistent/t") == (
        "GenericError", "cannot open /nonexistent/t: No such file or directory")
    assert qmp.cmd("trace-start", file="/tmp/t.json", format="json") == {}
    assert control.device.tracing == ("/tmp/t.json", "json")
    assert qmp.cmd("trace-stop") == {}
    assert qmp.cmd("sync") == {}
    assert control.device.syncs == 1
    assert qmp.cmd("query-stats")["commands"] == {"VECTOR_CHUNK_WRITE": 100,
                                                  "VECTOR_CHUNK_READ": 50}


def test_ids_are_echoed_verbatim(control: RunningControl) -> None:
    raw = RawClient(control.path)
    try:
        raw.negotiate()
        raw.send(b'{"execute":"sync","id":null}{"execute":"nope","id":[1,"x"]} \n'
                 b'{"execute":"sync","arguments":{"x":1},"id":3}')
        assert raw.line() == {"return": {}, "id": None}
        assert raw.line() == {"error": {"class": "CommandNotFound",
                                        "desc": "The command nope has not been found"},
                              "id": [1, "x"]}
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "Parameter 'x' is unexpected"}, "id": 3}
    finally:
        raw.close()


def test_garbage_gets_errors_and_the_session_goes_on(control: RunningControl,
                                                     qmp: QEMUMonitorProtocol) -> None:
    raw = RawClient(control.path)
    try:
        raw.negotiate()
        raw.send(b"hello world\n[1, 2]\n")
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "JSON parse error, expecting value"}}
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "QMP input must be a JSON object"}}
        raw.send(b'{"execute": 5}{"exec": "sync"}{"execute":"sync","arguments":[]}{"a":}')
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "QMP input member 'execute' must be a string"}}
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "QMP input member 'exec' is unexpected"}}
        assert raw.line() == {"error": {"class": "GenericError", "desc": "QMP input member "
                                        "'arguments' must be an object"}}
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "JSON parse error, invalid JSON object"}}
        # A control character resets a half-read message (the spec's parser recovery).
        raw.send(b'{"execute": "sy\x01{"execute":"sync","id":1}')
        assert raw.line() == {"error": {"class": "GenericError",
                                        "desc": "JSON parse error, input reset"}}
        assert raw.line() == {"return": {}, "id": 1}
        assert qmp.cmd("query-faults") == []   # the polite client never noticed
    finally:
        raw.close()


def test_huge_and_deep_messages_hang_up(control: RunningControl,
                                        qmp: QEMUMonitorProtocol) -> None:
    huge = RawClient(control.path)
    deep = RawClient(control.path)
    try:
        huge.negotiate()
        huge.send(b'{"execute":"' + b"a" * 70000)
        assert huge.line() == {"error": {"class": "GenericError", "desc": "JSON message "
                                         "larger than 65536 bytes: closing the connection"}}
        huge.until_hung_up()
        deep.negotiate()
        deep.send(b'{"a":' + b"[" * 40)
        assert deep.line() == {"error": {"class": "GenericError", "desc": "JSON message "
                                         "nested deeper than 32: closing the connection"}}
        deep.until_hung_up()
        assert qmp.cmd("sync") == {}
    finally:
        huge.close()
        deep.close()


def test_a_client_that_never_reads_is_dropped(control: RunningControl) -> None:
    stuck = RawClient(control.path)
    try:
        stuck.negotiate()
        for n in range(5000):   # far more than its outbox and the socket buffers hold
            control.emit("CHUNK_NOTIFICATION", {"nc": n, "padding": "x" * 200})
        stuck.sock.settimeout(20)
        stuck.until_hung_up()
    finally:
        stuck.close()
    with QEMUMonitorProtocol(str(control.path)) as client:
        client.connect()
        assert client.cmd("sync") == {}


def test_a_client_gone_mid_message_disturbs_nobody(control: RunningControl,
                                                   qmp: QEMUMonitorProtocol) -> None:
    for _ in range(3):
        raw = RawClient(control.path)
        raw.send(b'{"execute":"qmp_capabilities"}{"execute":"query-dev')
        raw.close()
    assert qmp.cmd("sync") == {}


def test_a_client_that_never_negotiates_is_dropped() -> None:
    with running_control(negotiation_timeout=0.5) as control:
        silent, chatty = RawClient(control.path), RawClient(control.path)
        try:
            assert silent.line() == GREETING
            chatty.negotiate()
            time.sleep(1.0)
            silent.until_hung_up()
            chatty.send(b'{"execute":"sync","id":1}')
            assert chatty.line() == {"return": {}, "id": 1}
        finally:
            silent.close()
            chatty.close()


def test_two_clients_get_every_event(control: RunningControl) -> None:
    first, second = QEMUMonitorProtocol(str(control.path)), QEMUMonitorProtocol(str(control.path))
    try:
        first.connect()
        second.connect()
        control.emit("CHUNK_OFFLINE", {"grp": 1, "pu": 0, "chk": 2, "reason": "worn-out"})
        for client in (first, second):
            events = []
            while not events or events[-1]["event"] != "CHUNK_OFFLINE":
                event = client.pull_event(wait=5.0)
                assert event is not None
                events.append(event)
            offline = events[-1]
            assert offline["data"] == {"grp": 1, "pu": 0, "chk": 2, "reason": "worn-out"}
            assert set(offline["timestamp"]) == {"seconds", "microseconds"}
            assert abs(offline["timestamp"]["seconds"] - time.time()) < 60
        # The first client saw both attach: itself, then the second.
        assert [e["data"]["client"] for e in events if e["event"] == "CLIENT_ATTACHED"] == [2]
        assert first.cmd("sync") == {} and second.cmd("sync") == {}
        second.close()
        event = first.pull_event(wait=5.0)
        while event is not None and event["event"] != "CLIENT_DETACHED":
            event = first.pull_event(wait=5.0)
        assert event is not None and event["data"] == {"client": 2, "clients": 1}
    finally:
        first.close()


def test_guest_errors_are_rate_limited(control: RunningControl,
                                       qmp: QEMUMonitorProtocol) -> None:
    for n in range(5):
        control.emit("GUEST_ERROR", {"name": "invalid_doorbell", "detail": f"write {n}"})
    received = []
    while len(received) < 2:
        event = qmp.pull_event(wait=5.0)
        assert event is not None
        if event["event"] == "GUEST_ERROR":
            received.append(event["data"])
    assert received == [{"name": "invalid_doorbell", "detail": "write 0"},
                        {"name": "invalid_doorbell", "detail": "write 4", "coalesced": 4}]


def test_quit_replies_then_asks_the_device_to_stop(control: RunningControl,
                                                   qmp: QEMUMonitorProtocol) -> None:
    assert qmp.cmd("quit") == {}
    # The stop request follows the reply (it may be on the wire before the server's task
    # gets to it): wait for it, a few seconds at most.
    deadline = time.monotonic() + 5
    while not control.in_loop(control.device.quit_requested.is_set):
        assert time.monotonic() < deadline, "quit never asked the device to stop"
        time.sleep(0.01)


def test_socket_is_private_and_never_replaces_a_file(tmp_path: Path) -> None:
    with running_control() as control:
        assert stat.S_IMODE(control.path.stat().st_mode) == 0o600
    assert not control.path.exists()   # removed at the end
    regular = tmp_path / "control.sock"
    regular.write_text("precious")
    with pytest.raises(ServeError, match="exists and is not a socket"):
        ControlServer(regular, FakeDevice()).open_listener()
    assert regular.read_text() == "precious"
