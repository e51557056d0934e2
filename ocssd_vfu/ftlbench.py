"""`make bench`'s FTL section: the device-side FTL (`serve --mode ftl`) against a plain
ocssd_vfu namespace of the same size, in one guest boot; figures only, never asserts.

1. Both ranges are written once (128K sequential), so reads reach the media and the FTL
   starts with no GC pending; then 4K random read and write at QD32, `--rounds` times,
   the devices interleaved (median, min-max, and the FTL's ratio to plain).
2. A sustained 4K random write at QD32 over 3x the logical capacity of a second, fresh
   FTL device, its throughput logged every second (fio write_bw_log):
   bench/results/ftl-throughput.png plots it against the data written so far, with the
   point where GC must start marked (every data chunk but the 2 kept free written:
   123 x 512 sectors, 246 MiB). After the guest, the servers are stopped (the shutdown
   checkpoint holds the counters) and the WAF, GC runs and chunks erased of that
   device are read as `image info` reports them.

Without --timing the FTL costs only server CPU time, so a GC run shows as the host
time it takes, not as flash time.

--timing (`make ftlbench`) runs instead, without a guest, the sustained run in the flash
timing model's time (the charging `serve --mode ftl --timing` does, ftlns/timed.py): 4K
random writes at QD32 over 3x the logical capacity of a fresh FTL on a smaller geometry
(TIMED_GEOMETRY, the image's default times), each resubmitted the instant the model
completes the previous one (a perfect host); throughput per 50 ms of model time goes to
bench/results/ftl-timing-throughput.png with the first foreground GC marked, and the
WAF is printed. No idle time ever comes, so all GC is foreground GC, as under a
saturating host.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.bench import Job, ResultError, collect, format_table
from ocssd_vfu.ftl.core import Ftl, FtlOptions
from ocssd_vfu.ftl.media import Ocssd20Flash
from ocssd_vfu.ftl.stats import write_amplification
from ocssd_vfu.ftlns import image as ftl_image
from ocssd_vfu.ftlns.namespace import FtlNamespace
from ocssd_vfu.ftlns.timed import FtlTiming
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.guest.runner import GuestRun, run_guest
from ocssd_vfu.media.ocssd_image import create_image, fresh_chunk_log
from ocssd_vfu.timing.geometries import model_20

# 2 x 2 x 32 chunks of 512 sectors (256 MiB): (128 - 3) x 512 x 90 % = 57600 blocks.
GEOMETRY = OcssdGeometry(num_grp=2, num_pu=2, num_chk=32, num_sec=512)
GEOMETRY_TEXT = "2 groups x 2 PUs x 32 chunks x 512 sectors"
OP_PERCENT = 10
BLOCKS = 57600
JOBS = (Job("4k-randread-qd32", "randread", "4k", 32, "IOPS"),
        Job("4k-randwrite-qd32", "randwrite", "4k", 32, "IOPS"))
DEVICES = ("ftl", "plain")
SERIALS = {"ftl": "ftlbench-ftl", "plain": "ftlbench-plain", "gc": "ftlbench-gc"}
GC_FROM_MIB = 123 * 512 * 4096 / (1 << 20)   # data chunks less the 2 GC keeps free

# --timing: 2 x 2 x 24 chunks of 512 sectors (192 MiB), ws_opt 8, tRD 70 µs, tPROG 1.9 ms,
# tBERS 3 ms (the image defaults); the write buffer is MW_CUNITS 24 + 8 sectors per PU.
TIMED_GEOMETRY = OcssdGeometry(num_grp=2, num_pu=2, num_chk=24, num_sec=512)
TIMED_GEOMETRY_TEXT = "2 groups x 2 PUs x 24 chunks x 512 sectors"
TIMED_OP_PERCENT = 15
TIMED_WINDOW_NS = 50_000_000
SMOOTH_WINDOWS = 10        # a GC run stalls writes for a few windows: the plot's mean line
QUEUE_DEPTH = 32
MIB = 1 << 20

SCRIPT = """\
bad=0
find_serial() {{
    for c in /sys/class/nvme/nvme*; do
        if [ "$(tr -d ' ' < "$c/serial" 2>/dev/null)" = "$1" ] \\
            && [ -b "/dev/$(basename "$c")n1" ]; then basename "$c"; return 0; fi
    done
    return 1
}}
i=0
until ftl=$(find_serial {ftl_serial}) && plain=$(find_serial {plain_serial}) \
        && gc=$(find_serial {gc_serial}); do
    i=$((i + 1)); [ $i -lt 60 ] || {{ echo "ftlbench: no devices" >&2; exit 1; }}; sleep 1
done
run() {{  # DEVICE-NAME PATH RESULT FIO-ARGS...
    name=$1 path=$2 result=$3; shift 3
    echo "== $name $result"
    fio --name="$result" --filename="$path" --ioengine=libaio --direct=1 --eta=never \\
        --output-format=json --output="/results/$result.json" "$@" \\
        || {{ echo "ftlbench: fio $result failed" >&2; bad=1; }}
}}
for dev in ftl:/dev/${{ftl}}n1 plain:/dev/${{plain}}n1; do
    run "${{dev%%:*}}" "${{dev#*:}}" "${{dev%%:*}}-fill" --rw=write --bs=128k --iodepth=8
done
round=1
while [ $round -le {rounds} ]; do
    for dev in ftl:/dev/${{ftl}}n1 plain:/dev/${{plain}}n1; do
        for job in {jobs}; do
            set -- $(echo "$job" | tr : ' ')
            run "${{dev%%:*}}" "${{dev#*:}}" "${{dev%%:*}}-$1-r$round" --rw=$2 --bs=$3 \\
                --iodepth=$4 --runtime={runtime} --time_based
        done
    done
    round=$((round + 1))
done
run gc /dev/${{gc}}n1 ftl-sustained --rw=randwrite --bs=4k --iodepth=32 --norandommap \\
    --randrepeat=0 --io_size={sustained} --write_bw_log=/results/ftl-sustained \\
    --log_avg_msec=1000
exit $bad
"""


def start_server(work: Path, device: str, image: Path, *flags: str) -> subprocess.Popen[bytes]:
    sock = work / f"{device}.sock"
    with (work / f"{device}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ocssd_vfu", "serve", "--socket", str(sock), "--image",
             str(image), "--serial", SERIALS[device], *flags],
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise ResultError((work / f"{device}.log").read_text(errors="replace"))
        time.sleep(0.1)
    return process


def throughput(results: Path) -> list[tuple[float, float]]:
    """(MiB written so far, MiB/s) from fio's write bandwidth log of the sustained run
    (one entry per second, bandwidth in KiB/s)."""
    points = []
    written, last_ms = 0.0, 0
    for log in sorted(results.glob("ftl-sustained_bw*.log")):
        for line in log.read_text().splitlines():
            fields = [f.strip() for f in line.split(",")]
            if len(fields) >= 2 and fields[0].isdigit():
                ms, mib_s = int(fields[0]), int(fields[1]) / 1024
                written += mib_s * (ms - last_ms) / 1000
                last_ms = ms
                points.append((written, mib_s))
    return points


def plot(points: list[tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(8, 4))
    axis.plot([w for w, _ in points], [bw for _, bw in points], linewidth=1)
    axis.axvline(GC_FROM_MIB, color="red", linestyle="--", label="free chunks used up: GC "
                 "from here")
    axis.legend(fontsize=8)
    axis.set_xlabel("MiB written")
    axis.set_ylabel("MiB/s (4K random write, QD32)")
    axis.set_title(f"--mode ftl, {GEOMETRY_TEXT}, op {OP_PERCENT} %: 3x the capacity",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


@dataclass
class TimedRun:
    points: list[tuple[float, float]]   # (model seconds, MiB/s) per TIMED_WINDOW_NS
    gc_start_s: float                    # the first foreground GC's command's arrival
    gc_start_mib: float                  # MiB the host had written by then
    logical_mib: float
    seconds: float
    waf: float
    gc_runs: int

    def mean(self, gc: bool) -> float:
        values = [bw for t, bw in self.points if (t >= self.gc_start_s) == gc]
        return sum(values) / len(values) if values else 0.0


def sustained_timed(seed: int = 1) -> TimedRun:
    """The sustained random-write run in model time (module docstring, --timing)."""
    g = TIMED_GEOMETRY
    flash = Ocssd20Flash(g, memoryview(bytearray(fresh_chunk_log(g))),
                         memoryview(bytearray(g.sectors * g.sec_size)),
                         memoryview(bytearray(g.sectors * g.md_size)))
    ftl = Ftl.format(flash, FtlOptions(op_percent=TIMED_OP_PERCENT))
    clock = [0]
    ns = FtlNamespace(1, ftl, FtlTiming(model_20(g), ftl.layout, lambda: clock[0]))
    timing = ns.timing
    assert timing is not None
    rng, block = random.Random(seed), bytes(g.sec_size)
    total, issued = 3 * ftl.logical_blocks, 0
    gc_start: tuple[int, int] | None = None
    due: list[int] = []

    def issue(now: int) -> None:
        nonlocal issued, gc_start
        ns.start_command()
        ftl.write(rng.randrange(ftl.logical_blocks), block)
        heapq.heappush(due, timing.charge(ns.media_ops, now))
        issued += 1
        if gc_start is None and ftl.counters["gc_runs"]:
            gc_start = (now, issued)

    for _ in range(QUEUE_DEPTH):
        issue(0)
    windows: dict[int, int] = {}
    now = 0
    while due:
        now = clock[0] = heapq.heappop(due)
        windows[now // TIMED_WINDOW_NS] = windows.get(now // TIMED_WINDOW_NS, 0) + 1
        if issued < total:
            issue(now)
    per_mib = g.sec_size / MIB * 1e9 / TIMED_WINDOW_NS
    points = [((index + 0.5) * TIMED_WINDOW_NS / 1e9, windows.get(index, 0) * per_mib)
              for index in range(now // TIMED_WINDOW_NS)]   # whole windows only
    start_ns, start_count = gc_start or (now, issued)
    c = ftl.counters
    return TimedRun(points, start_ns / 1e9, start_count * g.sec_size / MIB,
                    ftl.logical_blocks * g.sec_size / MIB, now / 1e9,
                    write_amplification(c["host_sectors"], c["media_sectors"]), c["gc_runs"])


def plot_timed(run: TimedRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(8, 4))
    times, rates = [t for t, _ in run.points], [bw for _, bw in run.points]
    axis.plot(times, rates, linewidth=0.6, color="lightsteelblue",
              label=f"per {TIMED_WINDOW_NS // 1_000_000} ms")
    span = SMOOTH_WINDOWS
    smooth = [sum(rates[max(0, i - span + 1):i + 1]) / len(rates[max(0, i - span + 1):i + 1])
              for i in range(len(rates))]
    axis.plot(times, smooth, linewidth=1.5, color="navy",
              label=f"mean of the last {span * TIMED_WINDOW_NS // 1_000_000} ms")
    axis.axvline(run.gc_start_s, color="red", linestyle="--",
                 label=f"GC starts ({run.gc_start_mib:.0f} MiB written)")
    axis.legend(fontsize=8)
    axis.set_xlabel("model time (s)")
    axis.set_ylabel("MiB/s (4K random write, QD32)")
    axis.set_ylim(bottom=0)
    axis.set_title(f"--mode ftl --timing, {TIMED_GEOMETRY_TEXT}, op {TIMED_OP_PERCENT} %: "
                   f"3x the capacity ({run.logical_mib:.0f} MiB), WAF {run.waf:.2f}",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main_timed(out: Path) -> int:
    started = time.monotonic()
    run = sustained_timed()
    out.mkdir(parents=True, exist_ok=True)
    plot_timed(run, out / "ftl-timing-throughput.png")
    print(f"FTL --timing ({TIMED_GEOMETRY_TEXT}, op {TIMED_OP_PERCENT} %, "
          f"{run.logical_mib:.1f} MiB logical): 4K random write, QD32, 3x the capacity in "
          f"{run.seconds:.2f} s of model time ({time.monotonic() - started:.0f} s to run)")
    print(f"  before GC: {run.mean(False):.1f} MiB/s; from the first GC "
          f"({run.gc_start_s:.2f} s, {run.gc_start_mib:.0f} MiB written): "
          f"{run.mean(True):.1f} MiB/s")
    print(f"  WAF {run.waf:.2f}, {run.gc_runs} GC runs")
    print(f"ftlbench: {out / 'ftl-timing-throughput.png'}")
    summary = {"geometry": TIMED_GEOMETRY_TEXT, "op_percent": TIMED_OP_PERCENT,
               "before_gc_mib_s": run.mean(False), "with_gc_mib_s": run.mean(True),
               "gc_start_s": run.gc_start_s, "gc_start_mib": run.gc_start_mib,
               "waf": run.waf, "gc_runs": run.gc_runs, "model_seconds": run.seconds,
               "throughput_mib_s": run.points}
    (out / "ftl-timing.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.ftlbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", type=int, default=8, help="seconds per fio job")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every job")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--timing", action="store_true",
                        help="only the sustained run, in the timing model's time (no guest)")
    args = parser.parse_args(argv)
    if args.timing:
        return main_timed(args.out)
    results = args.out / "ftl"
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-ftlbench-") as tmp:
        work = Path(tmp)
        image, fresh, raw = work / "ftl.img", work / "gc.img", work / "plain.raw"
        create_image(image, GEOMETRY)
        create_image(fresh, GEOMETRY)
        with raw.open("wb") as f:
            f.truncate(BLOCKS * 4096)
        servers = [start_server(work, "ftl", image, "--mode", "ftl", "--op-percent",
                                str(OP_PERCENT)),
                   start_server(work, "plain", raw),
                   start_server(work, "gc", fresh, "--mode", "ftl", "--op-percent",
                                str(OP_PERCENT))]
        script = work / "ftlbench.sh"
        script.write_text(SCRIPT.format(
            ftl_serial=SERIALS["ftl"], plain_serial=SERIALS["plain"],
            gc_serial=SERIALS["gc"], rounds=args.rounds,
            runtime=args.runtime, sustained=3 * BLOCKS * 4096,
            jobs=" ".join(f"{j.title}:{j.rw}:{j.bs}:{j.iodepth}" for j in JOBS)))
        try:
            status = run_guest(GuestRun(script=script, results=results, timeout=3600,
                                        sockets=[work / f"{device}.sock"
                                                 for device in SERIALS]))
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=120)
        lines, problems = ftl_image.report_lines(fresh, spec_12=False)
    table, missing = collect(results, "ftl", JOBS, DEVICES, args.rounds)
    problems += missing
    print(f"\nFTL: --mode ftl ({GEOMETRY_TEXT}, op {OP_PERCENT} %, {BLOCKS} blocks) vs a plain "
          f"ocssd_vfu namespace of the same size, written once first, {args.runtime} s per "
          f"job, median (min-max) of {args.rounds} rounds")
    print(format_table(table, JOBS, DEVICES, ("plain",)))
    print("\na fresh FTL device after a sustained 4K random write over 3x its capacity:")
    print("\n".join(lines))
    points = throughput(results)
    before = [bw for w, bw in points if w < GC_FROM_MIB]
    after = [bw for w, bw in points if w >= GC_FROM_MIB]
    if before and after:
        print(f"sustained: {sum(before) / len(before):.1f} MiB/s before GC, "
              f"{sum(after) / len(after):.1f} MiB/s with GC")
    if points:
        plot(points, args.out / "ftl-throughput.png")
        print(f"ftlbench: {args.out / 'ftl-throughput.png'}")
    else:
        problems.append("no throughput log from the sustained run")
    summary = {"geometry": GEOMETRY_TEXT, "op_percent": OP_PERCENT, "blocks": BLOCKS,
               "jobs": {row: {dev: (stats.__dict__ if stats else None)
                              for dev, stats in cells.items()}
                        for row, cells in table.items()},
               "image_info": lines, "throughput_mib_s": points, "problems": problems,
               "guest_status": status}
    (args.out / "ftl.json").write_text(json.dumps(summary, indent=2) + "\n")
    for problem in problems:
        print(f"ftlbench: {problem}", file=sys.stderr)
    return 1 if status or problems else 0


if __name__ == "__main__":
    sys.exit(main())
