"""`make bench`: fio in one guest boot, printed as ratios against baselines of the
same run, in two tables.

- NVMe: ocssd_vfu serving a plain namespace, QEMU's built-in NVMe device and
  null_blk; 4K random read and write at QD32 (IOPS) and at QD1 (p50 and p99
  completion latency).
- pblk: a pblk target on an OCSSD 2.0 image served by ocssd_vfu (a second
  vfio-user device in the same guest) and null_blk; the same jobs plus 128K
  sequential write at QD32. The range is written once before the jobs, because
  a fresh pblk answers reads of unmapped blocks without touching the device.

- Memory: an ocssd_vfu server on a 64 GiB (sparse) OCSSD image, written and
  read through its block device; its RssAnon (/proc/PID/status) sampled.
- Doorbells: two more plain ocssd_vfu servers, one with shadow doorbells (the
  default) and one with --no-shadow-doorbells, serve the same fixed number of
  4K random reads at QD32; their doorbell MMIO writes (each one a vfio-user
  message), from the totals they log, per I/O.
- Timing: two OCSSD 2.0 servers of 1 group x 4 PUs, one with `--timing --trdt
  500000`, one without: 4K random reads at QD32 confined to one PU's LBAs and spread
  over all four (IOPS), at QD1 (p50 latency), and pblk 128K sequential writes on the
  timed one (MiB/s); each timed figure beside the timing model's bound.

Every job runs `--rounds` times (the NVMe devices interleaved round by round);
the tables give the median with min and max, summary.json every run, bench.png
a chart. Speed is never asserted; the run fails only when a fio job reports an
error, a result is missing or the guest kernel logged trouble (I/O timeouts,
controller resets, failed requests). TCG varies by tens of percent between boots:
compare the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.guest.runner import GuestRun, run_guest
from ocssd_vfu.media.ocssd_image import create_image


@dataclass(frozen=True)
class Job:
    title: str
    rw: str
    bs: str
    iodepth: int
    kind: str  # "IOPS", "MiB/s" or "latency" (p50 and p99 completion latency, µs)

    def figures(self) -> tuple[str, ...]:
        """The figures one run of this job gives."""
        return ("p50 us", "p99 us") if self.kind == "latency" else (self.kind,)


NVME_JOBS = (Job("4k-randread-qd32", "randread", "4k", 32, "IOPS"),
             Job("4k-randwrite-qd32", "randwrite", "4k", 32, "IOPS"),
             Job("4k-randread-qd1", "randread", "4k", 1, "latency"),
             Job("4k-randwrite-qd1", "randwrite", "4k", 1, "latency"))
NVME_DEVICES = ("ocssd_vfu", "qemu-nvme", "null_blk")
NVME_SIZE = "128M"

# Run in this order, after the fill: reads first, while the range holds the fill's data.
PBLK_JOBS = (Job("4k-randread-qd32", "randread", "4k", 32, "IOPS"),
             Job("4k-randwrite-qd32", "randwrite", "4k", 32, "IOPS"),
             Job("128k-seqwrite-qd32", "write", "128k", 32, "MiB/s"),
             Job("4k-randread-qd1", "randread", "4k", 1, "latency"),
             Job("4k-randwrite-qd1", "randwrite", "4k", 1, "latency"))
PBLK_DEVICES = ("pblk", "null_blk")
PBLK_SIZE = "256M"
# The 128K sequential fill of the pblk range before the measured jobs.
PBLK_FILL = Job("fill-128k-seqwrite", "write", "128k", 32, "MiB/s")

# 2 groups x 4 PUs x 32 chunks x 1024 sectors of 4 KiB: 1 GiB (sparse), 32 lines,
# enough over-provisioning for pblk and quick to set up under TCG.
PBLK_GEOMETRY = OcssdGeometry(num_grp=2, num_pu=4, num_chk=32, num_sec=1024)
PBLK_GEOMETRY_TEXT = (f"--num-grp {PBLK_GEOMETRY.num_grp} --num-pu {PBLK_GEOMETRY.num_pu} "
                      f"--num-chk {PBLK_GEOMETRY.num_chk} --num-sec {PBLK_GEOMETRY.num_sec}")

# Servers the bench starts itself, to read their logs and memory (serial -> extra flags):
# the doorbell comparison, and the memory figure on a 64 GiB OCSSD image.
DOORBELL_SERVERS = {"bench-shadow": (), "bench-mmio": ("--no-shadow-doorbells",)}
DOORBELL_IOS = 20000
DOORBELL_TOTAL = re.compile(r"doorbell writes so far: (\d+)")
MEMORY_SERIAL = "bench-memory"
MEMORY_GEOMETRY = OcssdGeometry(num_grp=4, num_pu=8, num_chk=128, num_sec=4096)  # 64 GiB
MEMORY_IO = "256M"
RSS_ANON = re.compile(r"^RssAnon:\s+(\d+) kB$", re.M)

# Controller models (Identify Controller MN) the guest script looks the others up by.
# Timing: 1 group x 4 PUs x 32 chunks x 1024 sectors, so that one PU's LBAs are one
# contiguous 128 MiB range of the raw namespace (sec 10 bits, chk 5, pu 2).
TIMING_GEOMETRY = OcssdGeometry(num_grp=1, num_pu=4, num_chk=32, num_sec=1024)
TIMING_TRDT_NS = 500_000
TIMING_SERVERS = {"bench-timed": ("--timing", "--trdt", str(TIMING_TRDT_NS)),
                  "bench-untimed": ()}
TIMING_PU_BYTES = TIMING_GEOMETRY.num_chk * TIMING_GEOMETRY.num_sec * TIMING_GEOMETRY.sec_size
TIMING_JOBS = (Job("4k-randread-qd32-1pu", "randread", "4k", 32, "IOPS"),
               Job("4k-randread-qd32-4pu", "randread", "4k", 32, "IOPS"),
               Job("4k-randread-qd1", "randread", "4k", 1, "latency"))
TIMING_PBLK = Job("128k-seqwrite-pblk", "write", "128k", 32, "MiB/s")

MODEL_PLAIN = "ocssd_vfu NVMe"
MODEL_OCSSD = "ocssd_vfu OCSSD"
MODEL_QEMU = "QEMU NVMe"

GUEST_SCRIPT = """\
set -e
bad=0
fail() {{
    echo "bench: $*" >&2
    dmesg > /results/dmesg.txt
    dmesg | tail -20 >&2
    exit 1
}}
# The controller (nvmeN) whose model contains $1, once it is live with namespace 1.
# The servers the bench starts itself (serials bench-*) are looked up by serial instead.
find_ctrl() {{
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/model" ] || continue
        case "$(tr -d ' ' < "$c/serial")" in bench-*) continue ;; esac
        if grep -q "$1" "$c/model" && [ "$(cat "$c/state")" = live ] \\
            && [ -b "/dev/$(basename "$c")n1" ]; then
            basename "$c"; return 0
        fi
    done
    return 1
}}
wait_ctrl() {{
    i=0
    while [ $i -lt 60 ]; do
        if find_ctrl "$1"; then return 0; fi
        sleep 1; i=$((i + 1))
    done
    return 1
}}
# Wait (at most 60 s) until no NVMe controller is still being probed.
settle() {{
    i=0
    while [ $i -lt 60 ]; do
        busy=0
        for c in /sys/class/nvme/nvme*; do
            [ -e "$c/state" ] || continue
            if [ "$(cat "$c/state")" != live ]; then busy=1; fi
        done
        if [ $busy = 0 ]; then return 0; fi
        sleep 1; i=$((i + 1))
    done
}}
# run_fio DEVICE TITLE RW BS QD SIZE SECONDS PATH NAME
#   (SECONDS 0: write SIZE once, not time-based; the result goes to /results/NAME.json)
run_fio() {{
    timing="--runtime=$7 --time_based"
    if [ "$7" = 0 ]; then timing=""; fi
    echo "== $1 $2 ($9)"
    fio --name="$2" --filename="$8" --rw="$3" --bs="$4" --iodepth="$5" \\
        --ioengine=libaio --direct=1 --size="$6" $timing \\
        --eta=never --output-format=json --output="/results/$9.json" \\
        || {{ echo "bench: fio $1 $2 failed (status $?)" >&2; bad=1; }}
}}
# run_jobs DEVICE PREFIX SIZE PATH ROUND JOB...: each JOB is TITLE:RW:BS:QD.
run_jobs() {{
    device=$1 prefix=$2 size=$3 path=$4 round=$5
    shift 5
    for job in "$@"; do
        set -- $(echo "$job" | tr : ' ')
        run_fio "$device" "$1" "$2" "$3" "$4" "$size" {runtime} "$path" "$prefix-$1-r$round"
    done
}}

settle
qnvme=$(wait_ctrl "{model_qemu}") || fail "no NVMe controller with model '{model_qemu}'"
[ -b /dev/nullb0 ] || fail "no /dev/nullb0 (null_blk)"
plain=$(wait_ctrl "{model_plain}") || fail "no NVMe controller with model '{model_plain}'"
echo "== NVMe table: ocssd_vfu plain ${{plain}}n1, qemu-nvme ${{qnvme}}n1, null_blk nullb0"
# Rounds interleave the devices, so that drift of the machine affects them alike.
round=1
while [ $round -le {rounds} ]; do
    for dev in ocssd_vfu:/dev/${{plain}}n1 qemu-nvme:/dev/${{qnvme}}n1 null_blk:/dev/nullb0; do
        run_jobs "${{dev%%:*}}" "${{dev%%:*}}" {nvme_size} "${{dev#*:}}" $round {nvme_jobs}
    done
    round=$((round + 1))
done

# The controller (nvmeN) whose serial is $1.
find_serial() {{
    for c in /sys/class/nvme/nvme*; do
        if [ "$(tr -d ' ' < "$c/serial" 2>/dev/null)" = "$1" ]; then
            basename "$c"; return 0
        fi
    done
    return 1
}}

# Memory: sequential writes (QD1: an OCSSD chunk takes writes in order), then reads.
ctrl=$(find_serial {memory_serial}) || fail "no NVMe controller with serial {memory_serial}"
echo "== memory: {memory_io} written and read on ${{ctrl}}n1 (64 GiB OCSSD image)"
fio --name=memory-write --filename="/dev/${{ctrl}}n1" --rw=write --bs=64k --iodepth=1 \\
    --ioengine=libaio --direct=1 --size={memory_io} --eta=never --output=/dev/null \\
    || {{ echo "bench: fio memory-write failed (status $?)" >&2; bad=1; }}
fio --name=memory-read --filename="/dev/${{ctrl}}n1" --rw=randread --bs=4k --iodepth=32 \\
    --ioengine=libaio --direct=1 --size={memory_io} --runtime=5 --time_based --eta=never \\
    --output=/dev/null || {{ echo "bench: fio memory-read failed (status $?)" >&2; bad=1; }}

# Doorbells: the same fixed number of reads on the two doorbell servers.
for serial in {doorbell_serials}; do
    ctrl=$(find_serial "$serial") || fail "no NVMe controller with serial $serial"
    echo "== doorbells: $serial (${{ctrl}}n1), {doorbell_ios} 4K random reads at QD32"
    fio --name=doorbells --filename="/dev/${{ctrl}}n1" --rw=randread --bs=4k --iodepth=32 \\
        --ioengine=libaio --direct=1 --size={nvme_size} --number_ios={doorbell_ios} \\
        --eta=never --output-format=json --output="/results/doorbells-$serial.json" \\
        || {{ echo "bench: fio on $serial failed (status $?)" >&2; bad=1; }}
done

# Timing: the same reads on the timed and the untimed device; pblk writes on the timed one.
for serial in {timing_serials}; do
    ctrl=$(find_serial "$serial") || fail "no NVMe controller with serial $serial"
    echo "== timing: $serial (${{ctrl}}n1)"
    run_fio "$serial" 4k-randread-qd32-1pu randread 4k 32 {timing_pu} {runtime} \
        "/dev/${{ctrl}}n1" "timing-$serial-4k-randread-qd32-1pu"
    run_fio "$serial" 4k-randread-qd32-4pu randread 4k 32 {timing_all} {runtime} \
        "/dev/${{ctrl}}n1" "timing-$serial-4k-randread-qd32-4pu"
    run_fio "$serial" 4k-randread-qd1 randread 4k 1 {timing_pu} {runtime} \
        "/dev/${{ctrl}}n1" "timing-$serial-4k-randread-qd1"
done
ctrl=$(find_serial bench-timed) || fail "no NVMe controller with serial bench-timed"
if nvme lnvm create -d "${{ctrl}}n1" -n tbench -t pblk; then
    run_fio bench-timed 128k-seqwrite-pblk write 128k 32 256M {runtime} /dev/tbench \
        timing-bench-timed-128k-seqwrite-pblk
    nvme lnvm remove -n tbench || {{ echo "bench: nvme lnvm remove -n tbench failed" >&2; bad=1; }}
else
    echo "bench: nvme lnvm create on the timed device failed" >&2; bad=1
fi

ocssd=$(wait_ctrl "{model_ocssd}") || fail "no NVMe controller with model '{model_ocssd}'"
ns=${{ocssd}}n1
[ -d /sys/block/$ns/lightnvm ] || fail "$ns is not a LightNVM (OCSSD) namespace"
echo "== nvme lnvm create -d $ns -n bench -t pblk"
nvme lnvm create -d "$ns" -n bench -t pblk || fail "nvme lnvm create -d $ns -n bench -t pblk failed"
[ -b /dev/bench ] || fail "no /dev/bench after nvme lnvm create"
dmesg | grep -E "nvm: registered $ns|pblk bench:" || true
run_fio pblk {fill} /dev/bench pblk-{fill_title}
round=1
while [ $round -le {rounds} ]; do
    run_jobs pblk pblk {pblk_size} /dev/bench $round {pblk_jobs}
    round=$((round + 1))
done
echo "== nvme lnvm remove -n bench"
nvme lnvm remove -n bench || fail "nvme lnvm remove -n bench failed"
round=1
while [ $round -le {rounds} ]; do
    run_jobs null_blk null_blk-pblk {pblk_size} /dev/nullb0 $round {pblk_jobs}
    round=$((round + 1))
done
dmesg > /results/dmesg.txt
exit $bad
"""


def guest_script(runtime: int, rounds: int) -> str:
    def words(jobs: tuple[Job, ...]) -> str:
        return " ".join(f"{job.title}:{job.rw}:{job.bs}:{job.iodepth}" for job in jobs)

    fill = (f"{PBLK_FILL.title} {PBLK_FILL.rw} {PBLK_FILL.bs} {PBLK_FILL.iodepth} "
            f"{PBLK_SIZE} 0")
    return GUEST_SCRIPT.format(
        model_plain=MODEL_PLAIN, model_qemu=MODEL_QEMU, model_ocssd=MODEL_OCSSD,
        nvme_jobs=words(NVME_JOBS), nvme_size=NVME_SIZE, pblk_jobs=words(PBLK_JOBS),
        pblk_size=PBLK_SIZE, fill=fill, fill_title=PBLK_FILL.title, runtime=runtime,
        rounds=rounds, doorbell_serials=" ".join(DOORBELL_SERVERS), doorbell_ios=DOORBELL_IOS,
        memory_serial=MEMORY_SERIAL, memory_io=MEMORY_IO,
        timing_serials=" ".join(TIMING_SERVERS), timing_pu=f"{TIMING_PU_BYTES >> 20}M",
        timing_all=f"{TIMING_GEOMETRY.num_pu * TIMING_PU_BYTES >> 20}M")


def result_name(table: str, device: str, job: Job, round_: int | None) -> str:
    """The guest's fio JSON file for one run (round None: the pblk fill, run once)."""
    prefix = "null_blk-pblk" if (table, device) == ("pblk", "null_blk") else device
    suffix = "" if round_ is None else f"-r{round_}"
    return f"{prefix}-{job.title}{suffix}.json"


class ResultError(Exception):
    """A fio result that is missing, unreadable or reports an error."""


def job_figures(result: dict[str, Any], job: Job) -> dict[str, float]:
    """The figures of a fio JSON result (Job.figures()); ResultError if the job failed."""
    try:
        entry = result["jobs"][0]
        side = entry["read" if "read" in job.rw else "write"]
        error = int(entry["error"])
        if job.kind == "IOPS":
            figures = {"IOPS": float(side["iops"])}
        elif job.kind == "MiB/s":
            figures = {"MiB/s": float(side.get("bw_bytes", side["bw"] * 1024)) / (1 << 20)}
        else:
            percentiles = side["clat_ns"]["percentile"]
            figures = {"p50 us": float(percentiles["50.000000"]) / 1000,
                       "p99 us": float(percentiles["99.000000"]) / 1000}
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResultError(f"unexpected fio output ({exc!r})") from exc
    if error:
        raise ResultError(f"fio reported error {error}")
    return figures


def read_figures(path: Path, job: Job) -> dict[str, float]:
    if not path.exists():
        raise ResultError("no result")
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"unreadable result ({exc})") from exc
    return job_figures(result, job)


@dataclass(frozen=True)
class Stats:
    """One figure over the rounds of a run."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: list[float]) -> Stats:
        return cls(statistics.median(runs), min(runs), max(runs), tuple(runs))


def ratio(ours: Stats | None, base: Stats | None) -> float:
    return ours.median / base.median if ours is not None and base and base.median else math.nan


# Rows of a table: "<job title> <figure>", e.g. "4k-randread-qd1 p99 us".
Table = dict[str, dict[str, Stats | None]]


def rows(jobs: tuple[Job, ...]) -> list[tuple[str, str]]:
    """(row name, unit) of every figure of `jobs`, in order."""
    return [(f"{job.title} {figure}" if job.kind == "latency" else job.title,
             "us" if job.kind == "latency" else job.kind)
            for job in jobs for figure in job.figures()]


def collect(results: Path, table: str, jobs: tuple[Job, ...], devices: tuple[str, ...],
            rounds: int) -> tuple[Table, list[str]]:
    """Every figure of one table over its rounds, and what went wrong. A figure
    missing from some round is a problem; the rounds that have it still count."""
    figures: Table = {}
    problems = []
    for job in jobs:
        for device in devices:
            runs: dict[str, list[float]] = {figure: [] for figure in job.figures()}
            for round_ in range(1, rounds + 1):
                try:
                    found = read_figures(results / result_name(table, device, job, round_), job)
                except ResultError as exc:
                    problems.append(f"{device} {job.title} round {round_}: {exc}")
                    continue
                for figure, value in found.items():
                    runs[figure].append(value)
            for figure, values in runs.items():
                row = f"{job.title} {figure}" if job.kind == "latency" else job.title
                figures.setdefault(row, {})[device] = Stats.of(values) if values else None
    return figures, problems


def _cell(stats: Stats | None, width: int) -> str:
    if stats is None:
        return f"{'-':>{width}}"
    text = f"{stats.median:,.0f} ({stats.low:,.0f}-{stats.high:,.0f})"
    return f"{text:>{width}}"


def _ratio_cell(value: float, width: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width - 1}.2f}x"


def format_table(table: Table, jobs: tuple[Job, ...], devices: tuple[str, ...],
                 baselines: tuple[str, ...]) -> str:
    """Medians with (min-max) per device, then the ratio of the first device's median
    to each baseline's (for latencies, lower is better)."""
    width = 26
    lines = [f"{'job':<24}" + "".join(f"{d:>{width}}" for d in devices)
             + "".join(f"{'vs ' + b:>14}" for b in baselines) + "  unit"]
    for row, unit in rows(jobs):
        cells = table.get(row, {})
        ours = cells.get(devices[0])
        lines.append(f"{row:<24}" + "".join(_cell(cells.get(d), width) for d in devices)
                     + "".join(_ratio_cell(ratio(ours, cells.get(b)), 14) for b in baselines)
                     + f"  {unit}")
    return "\n".join(lines)


def format_limits(table: Table, jobs: tuple[Job, ...], emulator: str, limit: str) -> str:
    """One line per figure: the emulator's median and the guest's limit (the same job on
    `limit`, a device with no emulation behind it), so neither is read for the other."""
    lines = []
    for row, unit in rows(jobs):
        cells = table.get(row, {})
        ours, theirs = cells.get(emulator), cells.get(limit)
        mine = f"{ours.median:,.0f} {unit}" if ours else "-"
        bound = f"{theirs.median:,.0f} {unit}" if theirs else "-"
        share = ratio(ours, theirs)
        of = "" if math.isnan(share) else f" ({share:.2f}x)"
        lines.append(f"{row}: the emulator ({emulator}) {mine}; the guest's limit "
                     f"({limit}) {bound}{of}")
    return "\n".join(lines)


def chart(summary: dict[str, Any], path: Path) -> None:
    """Medians as bars with min-max whiskers: one panel per table and unit."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    panels = [(name, unit, [row for row, u in rows(jobs) if u == unit], devices)
              for name, jobs, devices in (("NVMe", NVME_JOBS, NVME_DEVICES),
                                          ("pblk", PBLK_JOBS, PBLK_DEVICES))
              for unit in dict.fromkeys(u for _, u in rows(jobs))]
    # At most three panels a row, labels slanted: one panel per unit in a single row
    # made the labels of its bars overlap.
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    figure, grid = pyplot.subplots(lines, columns, figsize=(5.6 * columns, 4.8 * lines),
                                   squeeze=False)
    axes = list(grid.flat)
    for spare in axes[len(panels):]:
        spare.set_visible(False)
    for axis, (name, unit, row_names, devices) in zip(axes, panels, strict=False):
        width = 0.8 / len(devices)
        for i, device in enumerate(devices):
            cells = [summary[name.lower()]["jobs"][row].get(device) for row in row_names]
            medians = [c["median"] if c else 0 for c in cells]
            whiskers = [[c["median"] - c["low"] if c else 0 for c in cells],
                        [c["high"] - c["median"] if c else 0 for c in cells]]
            positions = [j + i * width for j in range(len(row_names))]
            axis.bar(positions, medians, width, yerr=whiskers, capsize=3, label=device)
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(row_names))], row_names,
                        fontsize=7, rotation=30, ha="right")
        axis.set_title(f"{name}: {unit}", fontsize=9)
        axis.legend(fontsize=7)
    figure.suptitle("make bench: median of the rounds, whiskers min-max "
                    "(latency: lower is better)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


DMESG_LINE = re.compile(r"^\[[ 0-9.]*\] (.*)$", re.M)
OURS = re.compile(r"^(?:pblk bench|nvm):")
BAD_WORD = re.compile(r"error|fail|timeout|timed out|corrupt|reject|abort", re.I)
STORAGE = re.compile(r"nvme|nvm|pblk|nullb|null_blk|blk|I/O", re.I)
OOPS = re.compile(r"WARNING:|BUG:|Call Trace|hung task")


def dmesg_notes(dmesg: str) -> tuple[list[str], list[str]]:
    """pblk's and LightNVM's own lines, and storage lines that look like trouble."""
    lines = DMESG_LINE.findall(dmesg)
    ours = [line for line in lines if OURS.match(line)]
    trouble = [line for line in lines
               if OOPS.search(line) or (BAD_WORD.search(line) and STORAGE.search(line))]
    return ours, trouble


@dataclass
class BenchServer:
    socket: Path
    log: Path
    process: subprocess.Popen[bytes]
    rss_anon_peak_kib: int = 0


def rss_anon_kib(status: str) -> int:
    """RssAnon of a /proc/PID/status text (0 when absent)."""
    found = RSS_ANON.search(status)
    return int(found[1]) if found else 0


@contextlib.contextmanager
def bench_servers(work: Path) -> Iterator[dict[str, BenchServer]]:
    """The servers the bench starts itself, by serial: their logs (doorbell totals) and
    memory (sampled every 0.2 s) are ours. `serve --once` ends each when QEMU goes; one
    still running after that is stopped."""
    images = {serial: work / f"{serial}.raw" for serial in DOORBELL_SERVERS}
    images[MEMORY_SERIAL] = work / f"{MEMORY_SERIAL}.img"
    images.update({serial: work / f"{serial}.img" for serial in TIMING_SERVERS})
    for serial, image in images.items():
        if serial == MEMORY_SERIAL:
            create_image(image, MEMORY_GEOMETRY)
        elif serial in TIMING_SERVERS:
            create_image(image, TIMING_GEOMETRY)
        else:
            with image.open("wb") as f:
                f.truncate(1 << 30)
    servers: dict[str, BenchServer] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            for server in servers.values():
                with contextlib.suppress(OSError):
                    rss = rss_anon_kib(Path(f"/proc/{server.process.pid}/status").read_text())
                    server.rss_anon_peak_kib = max(server.rss_anon_peak_kib, rss)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        for serial, image in images.items():
            sock, log = work / f"{serial}.sock", work / f"{serial}.log"
            flags = {**DOORBELL_SERVERS, **TIMING_SERVERS}.get(serial, ())
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "ocssd_vfu", "serve", "--once", "--socket", str(sock),
                     "--image", str(image), "--serial", serial, *flags],
                    stdout=out, stderr=subprocess.STDOUT)
            servers[serial] = BenchServer(sock, log, process)
        deadline = time.monotonic() + 30
        while not all(server.socket.exists() for server in servers.values()):
            if time.monotonic() > deadline or any(
                    server.process.poll() is not None for server in servers.values()):
                logs = "\n".join(s.log.read_text(errors="replace") for s in servers.values())
                raise ResultError(f"a bench server did not start:\n{logs}")
            time.sleep(0.1)
        sampler.start()
        yield servers
    finally:
        done.set()
        for server in servers.values():
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.terminate()
                server.process.wait()


def doorbell_figures(servers: dict[str, BenchServer],
                     results: Path) -> tuple[dict[str, dict[str, float]], list[str]]:
    """serial -> doorbell writes (the server's last logged total), I/Os (fio's) and
    writes per I/O; and what went wrong."""
    figures, problems = {}, []
    for serial in DOORBELL_SERVERS:
        log = servers[serial].log
        totals = DOORBELL_TOTAL.findall(log.read_text(errors="replace")) if log.exists() else []
        try:
            result = json.loads((results / f"doorbells-{serial}.json").read_text())
            ios = int(result["jobs"][0]["read"]["total_ios"])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            problems.append(f"doorbells {serial}: no fio result ({exc})")
            continue
        if not totals or not ios:
            problems.append(f"doorbells {serial}: no doorbell total in its log, or no I/O")
            continue
        writes = int(totals[-1])
        figures[serial] = {"doorbell_writes": writes, "ios": ios, "per_io": writes / ios}
    return figures, problems


def format_doorbells(figures: dict[str, dict[str, float]]) -> str:
    lines = [f"{'server':<16}{'serve flags':<24}{'doorbell writes':>16}{'I/Os':>10}"
             f"{'per I/O':>10}"]
    for serial, flags in DOORBELL_SERVERS.items():
        row = figures.get(serial)
        cells = ("-", "-", "-") if row is None else (
            f"{row['doorbell_writes']:,.0f}", f"{row['ios']:,.0f}", f"{row['per_io']:.3f}")
        lines.append(f"{serial:<16}{' '.join(flags) or '(default)':<24}{cells[0]:>16}"
                     f"{cells[1]:>10}{cells[2]:>10}")
    return "\n".join(lines)


def timing_bounds() -> dict[str, float]:
    """What the timing model allows the timed device (--trdt 500000, the image's TWRT,
    800 MB/s): reads/s of one PU and of four, the µs a QD1 read gains, pblk's MiB/s."""
    g = TIMING_GEOMETRY
    sector_ns = g.sec_size * 1000 / 800  # one sector across an 800 MB/s channel
    read_ns = TIMING_TRDT_NS + sector_ns
    program_ns = g.twrt + g.ws_opt * sector_ns
    return {"1pu_iops": 1e9 / read_ns, "4pu_iops": g.num_pu * 1e9 / read_ns,
            "qd1_added_us": read_ns / 1000,
            "pblk_mib_s": g.num_pu * g.ws_opt * g.sec_size / program_ns * 1e9 / (1 << 20)}


def timing_figures(results: Path) -> tuple[dict[str, dict[str, float]], list[str]]:
    """serial -> job title -> figure (IOPS, p50 µs, MiB/s); and what is missing."""
    figures: dict[str, dict[str, float]] = {serial: {} for serial in TIMING_SERVERS}
    problems = []
    runs = [(serial, job) for serial in TIMING_SERVERS for job in TIMING_JOBS]
    for serial, job in [*runs, ("bench-timed", TIMING_PBLK)]:
        try:
            found = read_figures(results / f"timing-{serial}-{job.title}.json", job)
        except ResultError as exc:
            problems.append(f"timing {serial} {job.title}: {exc}")
            continue
        figures[serial][job.title] = found["p50 us" if job.kind == "latency" else job.kind]
    return figures, problems


def format_timing(figures: dict[str, dict[str, float]]) -> str:
    bounds = timing_bounds()
    timed, untimed = figures.get("bench-timed", {}), figures.get("bench-untimed", {})

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    qd1 = untimed.get("4k-randread-qd1")
    rows = [
        ("4K random read QD32, 1 PU (IOPS)", untimed.get("4k-randread-qd32-1pu"),
         timed.get("4k-randread-qd32-1pu"), f"{bounds['1pu_iops']:,.0f}"),
        ("4K random read QD32, 4 PUs (IOPS)", untimed.get("4k-randread-qd32-4pu"),
         timed.get("4k-randread-qd32-4pu"), f"{bounds['4pu_iops']:,.0f}"),
        ("4K random read QD1, p50 (µs)", qd1, timed.get("4k-randread-qd1"),
         "untimed + " + f"{bounds['qd1_added_us']:,.0f}"
         + ("" if qd1 is None else f" = {qd1 + bounds['qd1_added_us']:,.0f}")),
        ("pblk 128K sequential write (MiB/s)", None, timed.get("128k-seqwrite-pblk"),
         f"{bounds['pblk_mib_s']:,.1f}"),
    ]
    lines = [f"{'job':<36}{'untimed':>10}{'--timing':>10}   model's bound (--timing)"]
    lines += [f"{title:<36}{cell(off):>10}{cell(on):>10}   {bound}"
              for title, off, on, bound in rows]
    return "\n".join(lines)


def as_json(table: Table) -> dict[str, dict[str, dict[str, Any] | None]]:
    return {row: {device: None if stats is None else asdict(stats)
                  for device, stats in cells.items()}
            for row, cells in table.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", type=int, default=8, help="seconds per fio job")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every job; the tables give their median, min and max")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where the fio JSON, summary.json and bench.png go")
    args = parser.parse_args(argv)
    results = args.out / "fio"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-bench-") as tmp:
        work = Path(tmp)
        for name in ("ocssd.raw", "qemu-nvme.raw"):
            with (work / name).open("wb") as f:
                f.truncate(1 << 30)
        create_image(work / "pblk.img", PBLK_GEOMETRY)
        script = work / "bench.sh"
        script.write_text(guest_script(args.runtime, args.rounds))
        timed_jobs = args.rounds * (len(NVME_JOBS) * len(NVME_DEVICES)
                                    + len(PBLK_JOBS) * len(PBLK_DEVICES)) \
            + len(TIMING_SERVERS) * len(TIMING_JOBS) + 1
        if results.exists():
            for old in results.glob("*"):
                old.unlink()
        with bench_servers(work) as servers:
            status = run_guest(GuestRun(
                script=script, images=[work / "ocssd.raw", work / "pblk.img"],
                sockets=[server.socket for server in servers.values()],
                qemu_nvme=[work / "qemu-nvme.raw"], results=results,
                timeout=300 + 3 * args.runtime * timed_jobs))
        doorbells, problems = doorbell_figures(servers, results)
        memory_kib = servers[MEMORY_SERIAL].rss_anon_peak_kib
        if not memory_kib:
            problems.append(f"{MEMORY_SERIAL}: no RssAnon sampled")
    elapsed = time.monotonic() - started
    nvme, nvme_problems = collect(results, "nvme", NVME_JOBS, NVME_DEVICES, args.rounds)
    problems += nvme_problems
    pblk, pblk_problems = collect(results, "pblk", PBLK_JOBS, PBLK_DEVICES, args.rounds)
    problems += pblk_problems
    fill: float | None = None
    try:
        fill = read_figures(results / result_name("pblk", "pblk", PBLK_FILL, None),
                            PBLK_FILL)["MiB/s"]
    except ResultError as exc:
        problems.append(f"pblk {PBLK_FILL.title}: {exc}")
    timing, timing_problems = timing_figures(results)
    problems += timing_problems
    dmesg_path = results / "dmesg.txt"
    notes, trouble = dmesg_notes(dmesg_path.read_text(errors="replace")
                                 if dmesg_path.exists() else "")
    # Timeouts, resets, failed requests: the figures of such a run are not comparable.
    problems += [f"guest kernel: {line}" for line in trouble]

    print(f"\nNVMe: ocssd_vfu (plain namespace) vs QEMU's NVMe and null_blk, {NVME_SIZE} "
          f"range, {args.runtime} s per job, median (min-max) of {args.rounds} rounds")
    print(format_table(nvme, NVME_JOBS, NVME_DEVICES, ("qemu-nvme", "null_blk")))
    print(format_limits(nvme, NVME_JOBS, "ocssd_vfu", "null_blk"))
    print(f"\npblk on an OCSSD 2.0 image ({PBLK_GEOMETRY_TEXT}) vs null_blk, {PBLK_SIZE} "
          f"range written first ({fill or 0:.0f} MiB/s), {args.runtime} s per job, "
          f"median (min-max) of {args.rounds} rounds")
    print(format_table(pblk, PBLK_JOBS, PBLK_DEVICES, ("null_blk",)))
    print(format_limits(pblk, PBLK_JOBS, "pblk", "null_blk"))
    print("(ratios: the first column's median over the baseline's; for latencies, lower is "
          "better)")
    print(f"\nDoorbells: {DOORBELL_IOS} 4K random reads at QD32 on each, doorbell MMIO writes "
          "(vfio-user messages) per I/O, boot included")
    print(format_doorbells(doorbells))
    print(f"\nMemory: server RssAnon peak {memory_kib / 1024:.1f} MiB on a 64 GiB OCSSD image "
          f"({MEMORY_IO} written and read; the chunk table is "
          f"{MEMORY_GEOMETRY.chunks * 32 // 1024} KiB of it)")
    g = TIMING_GEOMETRY
    print(f"\nTiming: OCSSD 2.0, {g.num_grp} group x {g.num_pu} PUs, served with --timing "
          f"--trdt {TIMING_TRDT_NS} (tPROG {g.twrt} ns per {g.ws_opt} sectors, 800 MB/s) and "
          f"without; {args.runtime} s per job, one run each; figures only")
    print(format_timing(timing))
    if notes:
        print("\nguest kernel:\n" + "\n".join(f"  {line}" for line in notes))
    if trouble:
        print("\nguest kernel lines that look like trouble:\n"
              + "\n".join(f"  {line}" for line in trouble))
    print(f"\nbench: {elapsed:.0f} s in all")

    summary = {
        "runtime_s": args.runtime,
        "rounds": args.rounds,
        "nvme": {"size": NVME_SIZE, "units": dict(rows(NVME_JOBS)), "jobs": as_json(nvme)},
        "pblk": {"size": PBLK_SIZE, "geometry": PBLK_GEOMETRY_TEXT, "fill_mib_s": fill,
                 "units": dict(rows(PBLK_JOBS)), "jobs": as_json(pblk)},
        "doorbells": {"ios_per_server": DOORBELL_IOS, "servers": doorbells},
        "memory": {"image_gib": 64, "rss_anon_peak_kib": memory_kib},
        "timing": {"trdt_ns": TIMING_TRDT_NS, "figures": timing, "bounds": timing_bounds()},
        "guest_kernel": {"pblk": notes, "trouble": trouble},
        "problems": problems,
        "guest_status": status,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart(summary, args.out / "bench.png")
    print(f"bench: {args.out / 'summary.json'}, {args.out / 'bench.png'}")
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    if status != 0:
        print(f"bench: the guest run failed (status {status})", file=sys.stderr)
        return 1
    if problems:
        print("bench: a fio job reported an error, a result is missing or the guest kernel "
              "logged trouble", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
