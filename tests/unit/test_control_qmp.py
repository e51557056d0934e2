"""QMP framing, sans I/O: a byte stream cut into objects, whatever the chunking."""

from __future__ import annotations

from ocssd_vfu.control.qmp import JsonStreamSplitter, QmpSession, Reply, Request, event_message


def test_objects_are_cut_by_depth_not_by_lines_or_reads() -> None:
    stream = b'{"execute":"a","arguments":{"s":"}{\\"]"}}  {"execute":"b"}\n{"x":[1,{"y":2}]}'
    whole = JsonStreamSplitter().feed(stream)
    splitter = JsonStreamSplitter()
    bytewise = [item for i in range(len(stream)) for item in splitter.feed(stream[i:i + 1])]
    assert whole == bytewise == [b'{"execute":"a","arguments":{"s":"}{\\"]"}}',
                                 b'{"execute":"b"}', b'{"x":[1,{"y":2}]}']


def test_a_session_negotiates_once_then_passes_commands() -> None:
    session = QmpSession()
    assert session.receive(b'{"execute":"query-device"}{"execute":"qmp_capabilities"}'
                           b'{"execute":"query-device","arguments":{"a":1},"id":"x"}') == [
        Reply({"error": {"class": "CommandNotFound",
                         "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}),
        Reply({"return": {}}),
        Request("query-device", {"a": 1}, "x", True)]
    assert session.negotiated and not session.closing


def test_events_carry_seconds_and_microseconds() -> None:
    assert event_message("CHUNK_OFFLINE", {"grp": 1}, now=1700000000.25) == {
        "event": "CHUNK_OFFLINE", "data": {"grp": 1},
        "timestamp": {"seconds": 1700000000, "microseconds": 250000}}
    assert event_message("CLIENT_DETACHED", None, now=3.0) == {
        "event": "CLIENT_DETACHED", "timestamp": {"seconds": 3, "microseconds": 0}}
