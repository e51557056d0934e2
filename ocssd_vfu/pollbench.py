"""`make pollbench`: `serve --poll` against the default mode, in one guest boot.

Four plain ocssd_vfu servers, started here: two with --poll and two without, one of
each for the queue-depth-1 jobs and one for the depth-32 jobs, so that each server's
totals belong to one depth. In the guest, fio runs 4K random reads and writes on them,
the modes interleaved round by round. Per job and mode: IOPS and the p50/p99 completion
latency (median over the rounds); per server: doorbell MMIO writes (each one a
vfio-user message, the total it logs) and its CPU time (user + system, from wait4),
both per I/O, less those of a server of the same mode that served no job (start-up,
the guest's probing).

The machine's cores are shared by the guest's vCPUs (QEMU TCG) and the servers: a
polling server takes one of them while I/O comes. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocssd_vfu.guest.runner import GuestRun, run_guest

# serial -> (serve flags, the jobs run on it: title, fio rw, iodepth)
QD1_JOBS = (("4k-randread-qd1", "randread", 1), ("4k-randwrite-qd1", "randwrite", 1))
QD32_JOBS = (("4k-randread-qd32", "randread", 32), ("4k-randwrite-qd32", "randwrite", 32))
SERVERS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str, int], ...]]] = {
    "poll-qd1": (("--poll",), QD1_JOBS), "default-qd1": ((), QD1_JOBS),
    "poll-qd32": (("--poll",), QD32_JOBS), "default-qd32": ((), QD32_JOBS),
    "poll-idle": (("--poll",), ()), "default-idle": ((), ())}
# Served no job: their totals (start-up, the guest's probing) are taken off the others'.
BASELINE = {"poll-qd1": "poll-idle", "poll-qd32": "poll-idle",
            "default-qd1": "default-idle", "default-qd32": "default-idle"}
SIZE = "128M"
TOTAL = re.compile(r"doorbell writes so far: (\d+)")

GUEST_SCRIPT = """\
set -e
bad=0
find_serial() {{
    for c in /sys/class/nvme/nvme*; do
        if [ "$(tr -d ' ' < "$c/serial" 2>/dev/null)" = "$1" ] \\
            && [ "$(cat "$c/state")" = live ] && [ -b "/dev/$(basename "$c")n1" ]; then
            basename "$c"; return 0
        fi
    done
    return 1
}}
for serial in {serials}; do
    i=0
    until find_serial "$serial" > /dev/null; do
        i=$((i + 1)); [ $i -le 60 ] || {{ echo "pollbench: no controller $serial" >&2; exit 1; }}
        sleep 1
    done
done
round=1
while [ $round -le {rounds} ]; do
    for entry in {runs}; do
        set -- $(echo "$entry" | tr : ' ')
        ctrl=$(find_serial "$1")
        echo "== $1 $2 round $round (${{ctrl}}n1)"
        fio --name="$2" --filename="/dev/${{ctrl}}n1" --rw="$3" --bs=4k --iodepth="$4" \\
            --ioengine=libaio --direct=1 --size={size} --runtime={runtime} --time_based \\
            --eta=never --output-format=json --output="/results/$1-$2-r$round.json" \\
            || {{ echo "pollbench: fio $1 $2 failed" >&2; bad=1; }}
    done
    round=$((round + 1))
done
exit $bad
"""


def guest_script(runtime: int, rounds: int) -> str:
    # Poll and default servers of one depth take turns, job by job.
    runs = [f"{serial}:{title}:{rw}:{depth}"
            for jobs in (QD1_JOBS, QD32_JOBS) for title, rw, depth in jobs
            for serial, (_, served) in SERVERS.items() if served is jobs]
    return GUEST_SCRIPT.format(serials=" ".join(SERVERS), rounds=rounds, runs=" ".join(runs),
                               size=SIZE, runtime=runtime)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    socket: Path
    log: Path
    cpu_s: float = 0.0


def fio_figures(path: Path) -> dict[str, float]:
    """IOPS, p50/p99 completion latency (µs) and I/Os of one fio JSON result."""
    entry = json.loads(path.read_text())["jobs"][0]
    side = entry["read"] if entry["read"]["total_ios"] else entry["write"]
    if int(entry["error"]):
        raise ValueError(f"{path.name}: fio error {entry['error']}")
    percentiles = side["clat_ns"]["percentile"]
    return {"iops": float(side["iops"]), "p50": percentiles["50.000000"] / 1000,
            "p99": percentiles["99.000000"] / 1000, "ios": float(side["total_ios"])}


def summarize(results: Path, servers: dict[str, Served], rounds: int) -> dict[str, Any]:
    """serial -> job title -> median figures, and serial -> per-I/O totals."""
    jobs: dict[str, dict[str, dict[str, float]]] = {}
    totals: dict[str, dict[str, float]] = {}
    def used(serial: str) -> tuple[float, float]:
        found = TOTAL.findall(servers[serial].log.read_text(errors="replace"))
        return (int(found[-1]) if found else math.nan), servers[serial].cpu_s

    for serial, baseline in BASELINE.items():
        ios = 0.0
        for title, _, _ in SERVERS[serial][1]:
            runs = [fio_figures(results / f"{serial}-{title}-r{r}.json")
                    for r in range(1, rounds + 1)]
            ios += sum(run["ios"] for run in runs)
            jobs.setdefault(serial, {})[title] = {
                key: statistics.median(run[key] for run in runs) for key in ("iops", "p50", "p99")}
        (writes, cpu_s), (idle_writes, idle_cpu_s) = used(serial), used(baseline)
        totals[serial] = {"ios": ios, "doorbells_per_io": (writes - idle_writes) / ios,
                          "cpu_us_per_io": (cpu_s - idle_cpu_s) * 1e6 / ios,
                          "baseline_cpu_s": idle_cpu_s}
    return {"jobs": jobs, "totals": totals}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'job':<20}{'mode':<9}{'IOPS':>9}{'p50 us':>9}{'p99 us':>9}"
             f"{'doorbells/IO':>14}{'server CPU us/IO':>18}"]
    for jobs in (QD1_JOBS, QD32_JOBS):
        for title, _, _ in jobs:
            for serial in BASELINE:
                flags, served = SERVERS[serial]
                if served is not jobs:
                    continue
                figures = summary["jobs"][serial][title]
                totals = summary["totals"][serial]
                lines.append(f"{title:<20}{'poll' if flags else 'default':<9}"
                             f"{figures['iops']:>9,.0f}{figures['p50']:>9,.0f}"
                             f"{figures['p99']:>9,.0f}{totals['doorbells_per_io']:>14.3f}"
                             f"{totals['cpu_us_per_io']:>18.1f}")
    return "\n".join(lines)


def start_servers(work: Path) -> dict[str, Served]:
    servers: dict[str, Served] = {}
    for serial, (flags, _) in SERVERS.items():
        image, sock, log = (work / f"{serial}{suffix}" for suffix in (".raw", ".sock", ".log"))
        with image.open("wb") as f:
            f.truncate(1 << 30)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ocssd_vfu", "serve", "--once", "--socket", str(sock),
                 "--image", str(image), "--mode", "nvme", "--serial", serial, *flags],
                stdout=out, stderr=subprocess.STDOUT)
        servers[serial] = Served(process, sock, log)
    deadline = time.monotonic() + 30
    while not all(server.socket.exists() for server in servers.values()):
        if time.monotonic() > deadline or any(s.process.poll() is not None
                                              for s in servers.values()):
            stop_servers(servers)
            raise RuntimeError("a server did not start: see " + str(work))
        time.sleep(0.1)
    return servers


def stop_servers(servers: dict[str, Served]) -> None:
    """Reap each server (`--once`: it exits when QEMU goes; one that does not within
    30 s is stopped), its CPU time from the kernel's accounting of the child."""
    for server in servers.values():
        deadline = time.monotonic() + 30
        while True:
            pid, _, usage = os.wait4(server.process.pid, os.WNOHANG)
            if pid:
                server.process.returncode = 0  # reaped here: Popen must not wait for it
                server.cpu_s = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                server.process.terminate()
                deadline = time.monotonic() + 30
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.pollbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", type=int, default=5, help="seconds per fio job")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every job (median)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/poll"),
                        help="where the fio JSON and summary.json go")
    args = parser.parse_args(argv)
    results = args.out / "fio"
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-pollbench-") as tmp:
        work = Path(tmp)
        script = work / "pollbench.sh"
        script.write_text(guest_script(args.runtime, args.rounds))
        servers = start_servers(work)
        load_before = os.getloadavg()
        try:
            status = run_guest(GuestRun(
                script=script, sockets=[server.socket for server in servers.values()],
                results=results, timeout=300 + 3 * args.runtime * args.rounds * 8))
        finally:
            stop_servers(servers)
        if status != 0:
            print(f"pollbench: the guest run failed (status {status})", file=sys.stderr)
            return 1
        try:
            summary = summarize(results, servers, args.rounds)
        except (OSError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
            print(f"pollbench: a result is missing or unreadable: {exc}", file=sys.stderr)
            return 1
    summary.update(runtime_s=args.runtime, rounds=args.rounds, load_before=load_before,
                   load_after=os.getloadavg())
    print(f"\n4K random I/O on plain namespaces, {SIZE} range, {args.runtime} s per job, "
          f"median of {args.rounds} rounds; per-I/O totals over each server's jobs; host "
          f"load average {load_before[0]:.1f} before, {summary['load_after'][0]:.1f} after")
    print(format_summary(summary))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"pollbench: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
