"""latencybench's arguments, its reading of a JSON trace and of system-call summaries, and
its table (no guest: `make latency` runs it; its figures are never asserted)."""

from __future__ import annotations

import json

import pytest

from ocssd_vfu.latencybench import (
    Latency,
    format_table,
    parse_args,
    percentiles,
    server_shares,
    syscall_summary,
)


def test_arguments() -> None:
    args = parse_args(["--runtime", "3", "--out", "/tmp/x"])
    assert (args.runtime, str(args.out)) == (3, "/tmp/x")
    assert parse_args([]).runtime == 8
    with pytest.raises(SystemExit):
        parse_args(["--runtime", "0"])


def test_percentiles_are_nearest_rank_in_microseconds() -> None:
    assert percentiles(list(range(1000, 101000, 1000))) == Latency(50.5, 99.0)
    assert percentiles([]) is None


def record(opcode: str, sq: int, arrival: int, completed: int, status: str = "SUCCESS") -> str:
    return json.dumps({"sq": sq, "opcode": opcode, "status": status, "arrival_ns": arrival,
                       "completed_ns": completed})


def test_server_shares_take_the_successful_io_commands_only() -> None:
    lines = [record("IDENTIFY", 0, 0, 90_000), record("READ", 1, 100, 4_100),
             record("READ", 1, 200, 6_200), record("WRITE", 1, 0, 9_000),
             record("WRITE", 2, 0, 70_000, "LBA_OUT_OF_RANGE"), "not json"]
    assert server_shares(lines) == {"4k-randread-qd1": Latency(5.0, 6.0),
                                    "4k-randwrite-qd1": Latency(9.0, 9.0)}


def test_table_gives_the_rest_and_the_ratio_to_qemu_nvme() -> None:
    guest = {"null_blk": {"4k-randread-qd1": Latency(20, 30)},
             "qemu-nvme": {"4k-randread-qd1": Latency(100, 300)},
             "ocssd_vfu": {"4k-randread-qd1": Latency(150, 700)},
             "ocssd_vfu-traced": {"4k-randread-qd1": Latency(180, 800)}}
    table = format_table(guest, {"4k-randread-qd1": Latency(40, 90)}).splitlines()
    assert table[1].split() == ["4k-randread-qd1", "20", "/", "30", "100", "/", "300",
                                "150", "/", "700", "180", "/", "800", "40", "/", "90",
                                "140", "/", "710", "1.50x"]
    assert table[2].split() == ["4k-randwrite-qd1"] + ["-"] * 7


def test_syscall_summary_reads_perf_and_strace() -> None:
    perf = """
 qemu-system-x86 (1234), 300 events, 50.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   sendmsg              100      0     2.000     0.010     0.020     0.050      3.00%
   recvmsg              100      0     5.000     0.010     0.050     0.090      3.00%
 qemu-system-x86 (1235), 10 events
   sendmsg              100      0     2.000     0.010     0.020     0.050      3.00%
"""
    assert syscall_summary(perf, 100) == [
        "  sendmsg    2.00 per I/O,    20.0 µs per call (200 calls)",
        "  recvmsg    1.00 per I/O,    50.0 µs per call (100 calls)"]
    strace = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.003000          30       100           sendmsg
 40.00    0.002000          20       100           write
"""
    assert syscall_summary(strace, 50) == [
        "  sendmsg    2.00 per I/O,    30.0 µs per call (100 calls)",
        "  write      2.00 per I/O,    20.0 µs per call (100 calls)"]
