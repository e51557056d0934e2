"""`make latency`: where a 4K command's time goes at queue depth 1, seen from the guest
(issue 18, item 1; the host-side half is `python -m ocssd_vfu.hostbench --breakdown`).

One guest boot, fio 4K randread and randwrite at QD1 (completion latency p50 and p99) on:
- null_blk: the guest kernel's own floor (no device emulation at all);
- QEMU's built-in `-device nvme`: MMIO exits, TCG and interrupts, no socket;
- ocssd_vfu plain (the C fast path), through the vfio-user socket;
- ocssd_vfu plain with `--trace-format json`: every command's arrival_ns (fetched) and
  completed_ns (CQE posted) on the server's clock, so the server's share per command.
  Tracing takes the Python path: its clat is beside the untraced one's.
Then, on the untraced ocssd_vfu device, the same jobs once more while `perf trace -s`
(or `strace -c -w` without perf) watches QEMU's system calls: the vfio-user messages
(sendmsg/recvmsg) and the eventfd writes, their count and time per I/O. The guest marks
the start and end of that phase in the image (blocks 0 and 1), where the host sees it.

The table: guest clat; of which the server (trace); of which QEMU, the socket and the
guest's own path (the difference); QEMU nvme's clat beside it. Never asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.bench import Job, ResultError, read_figures
from ocssd_vfu.guest.runner import GuestRun, run_guest

JOBS = (Job("4k-randread-qd1", "randread", "4k", 1, "latency"),
        Job("4k-randwrite-qd1", "randwrite", "4k", 1, "latency"))
DEVICES = ("null_blk", "qemu-nvme", "ocssd_vfu", "ocssd_vfu-traced")
SERVERS = {"lat-plain": (), "lat-traced": ("--trace-format", "json")}
SIZE = "128M"                     # the range each job covers, from 1 MiB on (markers below)
IMAGE_BYTES = 256 << 20
START, DONE = b"latencybench: syscalls start", b"latencybench: syscalls done"
SYSCALLS = ("sendmsg", "recvmsg", "write", "read", "ppoll", "ioctl")
TRACED_OPCODES = {"READ": "4k-randread-qd1", "WRITE": "4k-randwrite-qd1"}

GUEST_SCRIPT = """\
set -e
bad=0
find_serial() {{
    for c in /sys/class/nvme/nvme*; do
        if [ "$(tr -d ' ' < "$c/serial" 2>/dev/null)" = "$1" ]; then
            echo "$(basename "$c")n1"; return 0
        fi
    done
    return 1
}}
find_model() {{
    for c in /sys/class/nvme/nvme*; do
        if grep -q "$1" "$c/model" 2>/dev/null; then echo "$(basename "$c")n1"; return 0; fi
    done
    return 1
}}
# run DEVICE-NAME PATH: both jobs, results in /results/NAME-JOB.json
run() {{
    for job in {jobs}; do
        set -- "$1" "$2" $(echo "$job" | tr : ' ')
        echo "== $1 $3"
        fio --name="$3" --filename="$2" --rw="$4" --bs=4k --iodepth=1 --ioengine=libaio \\
            --direct=1 --offset=1M --size={size} --runtime={runtime} --time_based \\
            --eta=never --output-format=json --output="/results/$1-$3.json" \\
            || {{ echo "latencybench: fio $1 $3 failed" >&2; bad=1; }}
    done
}}
i=0
until plain=$(find_serial lat-plain) && traced=$(find_serial lat-traced) \\
        && qnvme=$(find_model "QEMU NVMe") && [ -b /dev/nullb0 ]; do
    i=$((i + 1)); [ $i -lt 60 ] || {{ echo "latencybench: devices missing" >&2; exit 1; }}
    sleep 1
done
run null_blk /dev/nullb0
run qemu-nvme /dev/$qnvme
run ocssd_vfu /dev/$plain
run ocssd_vfu-traced /dev/$traced
# The system-call phase: the host starts watching QEMU once it sees block 0's marker.
printf '%-4096s' "{start}" | dd of=/dev/$plain bs=4096 count=1 oflag=direct 2>/dev/null
sleep {settle}
run syscalls /dev/$plain
printf '%-4096s' "{done}" | dd of=/dev/$plain bs=4096 seek=1 count=1 oflag=direct 2>/dev/null
sleep {settle}
exit $bad
"""


def guest_script(runtime: int, settle: int) -> str:
    return GUEST_SCRIPT.format(
        jobs=" ".join(f"{job.title}:{job.rw}" for job in JOBS), size=SIZE, runtime=runtime,
        start=START.decode(), done=DONE.decode(), settle=settle)


@dataclass(frozen=True)
class Latency:
    p50: float   # µs
    p99: float


def percentiles(values_ns: list[int]) -> Latency | None:
    """p50 and p99 (nearest rank) of durations in ns, in µs."""
    if not values_ns:
        return None
    ordered = sorted(values_ns)
    rank = max(0, -(-99 * len(ordered) // 100) - 1)
    return Latency(statistics.median(ordered) / 1000, ordered[rank] / 1000)


def server_shares(trace_lines: list[str]) -> dict[str, Latency | None]:
    """job title -> the server's time per command (completed_ns - arrival_ns) of the I/O
    commands (SQ 1 and up) of a `--trace-format json` trace."""
    spans: dict[str, list[int]] = {title: [] for title in TRACED_OPCODES.values()}
    for line in trace_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        title = TRACED_OPCODES.get(record.get("opcode", ""))
        if title is not None and record.get("sq", 0) > 0 and record.get("status") == "SUCCESS":
            spans[title].append(int(record["completed_ns"]) - int(record["arrival_ns"]))
    return {title: percentiles(values) for title, values in spans.items()}


def guest_latencies(results: Path, device: str) -> tuple[dict[str, Latency | None], list[str]]:
    """job title -> fio's clat p50/p99 for DEVICE; and what went wrong."""
    found: dict[str, Latency | None] = {}
    problems = []
    for job in JOBS:
        try:
            figures = read_figures(results / f"{device}-{job.title}.json", job)
            found[job.title] = Latency(figures["p50 us"], figures["p99 us"])
        except ResultError as exc:
            found[job.title] = None
            problems.append(f"{device} {job.title}: {exc}")
    return found, problems


def total_ios(results: Path, device: str) -> int:
    ios = 0
    for job in JOBS:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            entry = json.loads((results / f"{device}-{job.title}.json").read_text())["jobs"][0]
            ios += int(entry["read" if "read" in job.rw else "write"]["total_ios"])
    return ios


def _cell(value: Latency | None) -> str:
    return f"{'-':>13}" if value is None else f"{value.p50:>6.0f} /{value.p99:>5.0f}"


def format_table(guest: dict[str, dict[str, Latency | None]],
                 server: dict[str, Latency | None]) -> str:
    """One row per job: each device's clat p50 / p99; the server's share of the traced
    device's; the rest of it (QEMU, socket, guest); ocssd_vfu's p50 over QEMU nvme's."""
    heads = ("null_blk", "qemu-nvme", "ocssd_vfu", "traced", "of it server", "rest", "vs qemu")
    lines = [f"{'µs, p50 / p99':<18}" + "".join(f"{h:>14}" for h in heads)]
    for job in JOBS:
        cells = [guest.get(device, {}).get(job.title) for device in DEVICES]
        share = server.get(job.title)
        traced = cells[3]
        rest = None if traced is None or share is None else Latency(
            traced.p50 - share.p50, traced.p99 - share.p99)
        ours, qemu = cells[2], cells[1]
        versus = f"{ours.p50 / qemu.p50:>13.2f}x" if ours and qemu and qemu.p50 else \
            f"{'-':>14}"
        lines.append(f"{job.title:<18}" + "".join(f" {_cell(c)}" for c in (*cells, share, rest))
                     + versus)
    return "\n".join(lines)


def qemu_pids() -> list[int]:
    """This process's QEMU children (run_guest starts QEMU from the calling process)."""
    found = []
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    if b"qemu-system-" in Path(f"/proc/{child}/cmdline").read_bytes():
                        found.append(int(child))
    return found


def marked(image: Path, block: int, marker: bytes) -> bool:
    with contextlib.suppress(OSError), image.open("rb") as f:
        f.seek(block * 4096)
        return f.read(len(marker)) == marker
    return False


def watch_syscalls(image: Path, out: Path, stop: threading.Event) -> None:
    """Once the guest marked block 0 of IMAGE, perf trace -s (strace -c -w without perf) on
    QEMU until block 1 is marked; the summary goes to OUT."""
    while not marked(image, 0, START):
        if stop.wait(0.2):
            return
    pids = qemu_pids()
    tool = shutil.which("perf")
    if not pids or (tool is None and shutil.which("strace") is None):
        out.write_text("no QEMU process or neither perf nor strace\n")
        return
    pid = str(pids[0])
    argv = ([tool, "trace", "-s", "-p", pid, "-e", ",".join(SYSCALLS)] if tool else
            ["strace", "-f", "-c", "-w", "-p", pid, "-e", "trace=" + ",".join(SYSCALLS)])
    with out.open("wb") as summary:
        watcher = subprocess.Popen(argv, stdout=summary, stderr=subprocess.STDOUT)
        try:
            while not marked(image, 1, DONE) and not stop.wait(0.2):
                pass
        finally:
            watcher.send_signal(signal.SIGINT)
            try:
                watcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()


def syscall_summary(text: str, ios: int) -> list[str]:
    """Per system call of SYSCALLS over all of QEMU's threads: calls per I/O and mean time
    per call, from `perf trace -s` (msec columns) or `strace -c -w` (seconds, usecs/call)."""
    calls: dict[str, int] = {}
    total_us: dict[str, float] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in SYSCALLS and len(words) >= 5:        # perf: name calls errors total ...
            with contextlib.suppress(ValueError):
                calls[words[0]] = calls.get(words[0], 0) + int(words[1])
                total_us[words[0]] = total_us.get(words[0], 0.0) + float(words[3]) * 1000
        elif words[-1] in SYSCALLS and len(words) >= 5:     # strace: % seconds usecs calls ...
            with contextlib.suppress(ValueError):
                calls[words[-1]] = calls.get(words[-1], 0) + int(words[3])
                total_us[words[-1]] = total_us.get(words[-1], 0.0) + float(words[1]) * 1e6
    return [f"  {name:<8} {calls[name] / ios if ios else 0:>6.2f} per I/O, "
            f"{total_us[name] / calls[name]:>7.1f} µs per call ({calls[name]} calls)"
            for name in SYSCALLS if calls.get(name)]


@contextlib.contextmanager
def servers(work: Path) -> Iterator[dict[str, Path]]:
    """The two plain servers (serve --once), by serial -> image; each stopped at the end."""
    procs = []
    images = {}
    try:
        for serial, flags in SERVERS.items():
            image = work / f"{serial}.raw"
            with image.open("wb") as f:
                f.truncate(IMAGE_BYTES)
            trace = ("--trace", str(work / f"{serial}.trace")) if flags else ()
            with (work / f"{serial}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "ocssd_vfu", "serve", "--once", "--socket",
                     str(work / f"{serial}.sock"), "--image", str(image), "--serial", serial,
                     *trace, *flags], stdout=log, stderr=subprocess.STDOUT))
            images[serial] = image
        deadline = time.monotonic() + 30
        while not all((work / f"{serial}.sock").exists() for serial in SERVERS):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise ResultError("a server did not start: " + " ".join(
                    (work / f"{s}.log").read_text(errors="replace") for s in SERVERS))
            time.sleep(0.1)
        yield images
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.latencybench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", type=int, default=8, help="seconds per fio job")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latency"),
                        help="where the fio JSON, the trace's shares and summary.json go")
    args = parser.parse_args(argv)
    if args.runtime < 1:
        parser.error("--runtime must be at least 1 second")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = args.out / "fio"
    if results.exists():
        for old in results.glob("*"):
            old.unlink()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-latency-", dir="/tmp") as tmp:
        work = Path(tmp)
        qemu_raw = work / "qemu-nvme.raw"
        with qemu_raw.open("wb") as f:
            f.truncate(IMAGE_BYTES)
        script = work / "latency.sh"
        script.write_text(guest_script(args.runtime, settle=2))
        stop = threading.Event()
        syscalls_out = work / "syscalls.txt"
        with servers(work) as images:
            watcher = threading.Thread(target=watch_syscalls, args=(
                images["lat-plain"], syscalls_out, stop), daemon=True)
            watcher.start()
            try:
                status = run_guest(GuestRun(
                    script=script, sockets=[work / f"{s}.sock" for s in SERVERS],
                    qemu_nvme=[qemu_raw], results=results,
                    timeout=300 + 2 * args.runtime * len(JOBS) * (len(DEVICES) + 1)))
            finally:
                stop.set()
                watcher.join(timeout=60)
        trace = (work / "lat-traced.trace").read_text(errors="replace").splitlines() \
            if (work / "lat-traced.trace").exists() else []
        syscalls = syscalls_out.read_text(errors="replace") if syscalls_out.exists() else ""
    problems = []
    guest = {}
    for device in (*DEVICES, "syscalls"):
        guest[device], found = guest_latencies(results, device)
        problems += found
    server = server_shares(trace)
    print(f"\nQD1 4K completion latency in the guest (fio clat, {args.runtime} s per job, "
          f"µs p50 / p99); 'of it server': the traced server's arrival -> CQE posted per "
          f"command; 'rest': QEMU, the vfio-user socket, the interrupt and the guest")
    print(format_table(guest, server))
    ios = total_ios(results, "syscalls")
    print(f"\nQEMU's system calls while the untraced ocssd_vfu device ran both jobs again "
          f"({ios} I/Os; clat then: " + ", ".join(
              f"{title} {_cell(lat).strip()}" for title, lat in guest["syscalls"].items())
          + ")")
    print("\n".join(syscall_summary(syscalls, ios)) or "  (no summary: " +
          syscalls.strip()[:200] + ")")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"runtime_s": args.runtime,
               "guest": {d: {t: lat and vars(lat) for t, lat in jobs.items()}
                         for d, jobs in guest.items()},
               "server": {t: lat and vars(lat) for t, lat in server.items()},
               "syscalls": syscalls, "problems": problems, "guest_status": status}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for problem in problems:
        print(f"latencybench: {problem}", file=sys.stderr)
    if status != 0 or problems:
        print(f"latencybench: the guest run failed (status {status}) or a result is missing",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
