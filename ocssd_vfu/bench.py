"""`make bench`: fio in one guest boot, printed as ratios against baselines of the
same run, in two tables.

- NVMe: ocssd_vfu serving a plain namespace, QEMU's built-in NVMe device and
  null_blk; 4K random read and write at QD32.
- pblk: a pblk target on an OCSSD 2.0 image served by ocssd_vfu (a second
  vfio-user device in the same guest) and null_blk; 4K random read and write
  at QD32 and 128K sequential write at QD32. The range is written once before
  the jobs, because a fresh pblk answers reads of unmapped blocks without
  touching the device.

Speed is never asserted; the run fails only when a fio job reports an error or
a result is missing. TCG varies by tens of percent between boots: compare the
ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocssd_vfu.guest.runner import GuestRun, run_guest
from ocssd_vfu.media.ocssd_image import create_image
from ocssd_vfu.ocssd.geometry import OcssdGeometry


@dataclass(frozen=True)
class Job:
    title: str
    rw: str
    bs: str
    unit: str  # "IOPS" or "MiB/s"


NVME_JOBS = (Job("4k-randread-qd32", "randread", "4k", "IOPS"),
             Job("4k-randwrite-qd32", "randwrite", "4k", "IOPS"))
NVME_DEVICES = ("ocssd_vfu", "qemu-nvme", "null_blk")
NVME_SIZE = "128M"

# Run in this order, after the fill: reads first, while the range holds the fill's data.
PBLK_JOBS = (Job("4k-randread-qd32", "randread", "4k", "IOPS"),
             Job("4k-randwrite-qd32", "randwrite", "4k", "IOPS"),
             Job("128k-seqwrite-qd32", "write", "128k", "MiB/s"))
PBLK_DEVICES = ("pblk", "null_blk")
PBLK_SIZE = "256M"
# The 128K sequential fill of the pblk range before the measured jobs.
PBLK_FILL = Job("fill-128k-seqwrite", "write", "128k", "MiB/s")

# 2 groups x 4 PUs x 32 chunks x 1024 sectors of 4 KiB: 1 GiB (sparse), 32 lines,
# enough over-provisioning for pblk and quick to set up under TCG.
PBLK_GEOMETRY = OcssdGeometry(num_grp=2, num_pu=4, num_chk=32, num_sec=1024)
PBLK_GEOMETRY_TEXT = (f"--num-grp {PBLK_GEOMETRY.num_grp} --num-pu {PBLK_GEOMETRY.num_pu} "
                      f"--num-chk {PBLK_GEOMETRY.num_chk} --num-sec {PBLK_GEOMETRY.num_sec}")

# Controller models (Identify Controller MN) the guest script looks devices up by.
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
find_ctrl() {{
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/model" ] || continue
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
# run_fio DEVICE TITLE RW BS SIZE SECONDS PATH (SECONDS 0: write SIZE once, not time-based)
run_fio() {{
    timing="--runtime=$6 --time_based"
    if [ "$6" = 0 ]; then timing=""; fi
    echo "== $1 $2"
    fio --name="$2" --filename="$7" --rw="$3" --bs="$4" --iodepth=32 \\
        --ioengine=libaio --direct=1 --size="$5" $timing \\
        --eta=never --output-format=json --output="/results/$1-$2.json" \\
        || {{ echo "bench: fio $1 $2 failed (status $?)" >&2; bad=1; }}
}}

settle
qnvme=$(wait_ctrl "{model_qemu}") || fail "no NVMe controller with model '{model_qemu}'"
[ -b /dev/nullb0 ] || fail "no /dev/nullb0 (null_blk)"
plain=$(wait_ctrl "{model_plain}") || fail "no NVMe controller with model '{model_plain}'"
echo "== NVMe table: ocssd_vfu plain ${{plain}}n1, qemu-nvme ${{qnvme}}n1, null_blk nullb0"
for dev in ocssd_vfu:/dev/${{plain}}n1 qemu-nvme:/dev/${{qnvme}}n1 null_blk:/dev/nullb0; do
    for job in {nvme_jobs}; do
        set -- $(echo "$job" | tr : ' ')
        run_fio "${{dev%%:*}}" "$1" "$2" "$3" {nvme_size} {runtime} "${{dev#*:}}"
    done
done

ocssd=$(wait_ctrl "{model_ocssd}") || fail "no NVMe controller with model '{model_ocssd}'"
ns=${{ocssd}}n1
[ -d /sys/block/$ns/lightnvm ] || fail "$ns is not a LightNVM (OCSSD) namespace"
echo "== nvme lnvm create -d $ns -n bench -t pblk"
nvme lnvm create -d "$ns" -n bench -t pblk || fail "nvme lnvm create -d $ns -n bench -t pblk failed"
[ -b /dev/bench ] || fail "no /dev/bench after nvme lnvm create"
dmesg | grep -E "nvm: registered $ns|pblk bench:" || true
run_fio pblk {fill} /dev/bench
for job in {pblk_jobs}; do
    set -- $(echo "$job" | tr : ' ')
    run_fio pblk "$1" "$2" "$3" {pblk_size} {runtime} /dev/bench
done
echo "== nvme lnvm remove -n bench"
nvme lnvm remove -n bench || fail "nvme lnvm remove -n bench failed"
for job in {pblk_jobs}; do
    set -- $(echo "$job" | tr : ' ')
    run_fio null_blk-pblk "$1" "$2" "$3" {pblk_size} {runtime} /dev/nullb0
done
dmesg > /results/dmesg.txt
exit $bad
"""


def guest_script(runtime: int) -> str:
    def words(jobs: tuple[Job, ...]) -> str:
        return " ".join(f"{job.title}:{job.rw}:{job.bs}" for job in jobs)

    fill = f"{PBLK_FILL.title} {PBLK_FILL.rw} {PBLK_FILL.bs} {PBLK_SIZE} 0"
    return GUEST_SCRIPT.format(
        model_plain=MODEL_PLAIN, model_qemu=MODEL_QEMU, model_ocssd=MODEL_OCSSD,
        nvme_jobs=words(NVME_JOBS), nvme_size=NVME_SIZE, pblk_jobs=words(PBLK_JOBS),
        pblk_size=PBLK_SIZE, fill=fill, runtime=runtime)


# The files the guest writes: (table, device) -> the prefix of its fio JSON files.
def result_name(table: str, device: str, job: Job) -> str:
    prefix = "null_blk-pblk" if (table, device) == ("pblk", "null_blk") else device
    return f"{prefix}-{job.title}.json"


class ResultError(Exception):
    """A fio result that is missing, unreadable or reports an error."""


def fio_figure(result: dict[str, Any], job: Job) -> float:
    """IOPS or MiB/s of a fio JSON result; ResultError if the job reported an error."""
    try:
        entry = result["jobs"][0]
        side = entry["read" if "read" in job.rw else "write"]
        error = int(entry["error"])
        if job.unit == "IOPS":
            value = float(side["iops"])
        else:
            value = float(side.get("bw_bytes", side["bw"] * 1024)) / (1 << 20)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResultError(f"unexpected fio output ({exc!r})") from exc
    if error:
        raise ResultError(f"fio reported error {error}")
    return value


def read_figure(path: Path, job: Job) -> float:
    if not path.exists():
        raise ResultError("no result")
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultError(f"unreadable result ({exc})") from exc
    return fio_figure(result, job)


def ratio(ours: float | None, base: float | None) -> float:
    return ours / base if ours is not None and base else math.nan


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width},.0f}"


def _ratio_cell(value: float, width: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width - 1}.2f}x"


Table = dict[str, dict[str, float | None]]


def format_nvme_table(table: Table) -> str:
    lines = [f"{'job':<20}{'ocssd_vfu':>12}{'qemu-nvme':>12}{'null_blk':>12}"
             f"{'vs qemu':>10}{'vs null':>10}"]
    for job in NVME_JOBS:
        row = table.get(job.title, {})
        ours = row.get("ocssd_vfu")
        lines.append(f"{job.title:<20}"
                     + "".join(_cell(row.get(d), 12) for d in NVME_DEVICES)
                     + "".join(_ratio_cell(ratio(ours, row.get(b)), 10)
                               for b in ("qemu-nvme", "null_blk")))
    return "\n".join(lines)


def format_pblk_table(table: Table) -> str:
    lines = [f"{'job':<20}{'pblk':>12}{'null_blk':>12}{'ratio':>10}  unit"]
    for job in PBLK_JOBS:
        row = table.get(job.title, {})
        lines.append(f"{job.title:<20}" + "".join(_cell(row.get(d), 12) for d in PBLK_DEVICES)
                     + _ratio_cell(ratio(row.get("pblk"), row.get("null_blk")), 10)
                     + f"  {job.unit}")
    return "\n".join(lines)


def collect(results: Path, table: str, jobs: tuple[Job, ...],
            devices: tuple[str, ...]) -> tuple[Table, list[str]]:
    """The figures of one table, and what went wrong."""
    figures: Table = {}
    problems = []
    for job in jobs:
        for device in devices:
            try:
                value: float | None = read_figure(results / result_name(table, device, job), job)
            except ResultError as exc:
                problems.append(f"{device} {job.title}: {exc}")
                value = None
            figures.setdefault(job.title, {})[device] = value
    return figures, problems


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", type=int, default=10, help="seconds per fio job")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where the fio JSON and the summary go")
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
        script.write_text(guest_script(args.runtime))
        timed_jobs = len(NVME_JOBS) * len(NVME_DEVICES) + len(PBLK_JOBS) * len(PBLK_DEVICES)
        if results.exists():
            for old in results.glob("*"):
                old.unlink()
        status = run_guest(GuestRun(script=script,
                                    images=[work / "ocssd.raw", work / "pblk.img"],
                                    qemu_nvme=[work / "qemu-nvme.raw"], results=results,
                                    timeout=300 + 6 * args.runtime * timed_jobs))
    elapsed = time.monotonic() - started
    nvme, problems = collect(results, "nvme", NVME_JOBS, NVME_DEVICES)
    pblk, pblk_problems = collect(results, "pblk", PBLK_JOBS, PBLK_DEVICES)
    filled, fill_problems = collect(results, "pblk", (PBLK_FILL,), ("pblk",))
    problems += pblk_problems + fill_problems
    fill = filled[PBLK_FILL.title]["pblk"]
    dmesg_path = results / "dmesg.txt"
    notes, trouble = dmesg_notes(dmesg_path.read_text(errors="replace")
                                 if dmesg_path.exists() else "")

    print("\nNVMe: ocssd_vfu (plain namespace) vs QEMU's NVMe and null_blk, IOPS, "
          f"{NVME_SIZE} range, {args.runtime} s")
    print(format_nvme_table(nvme))
    print(f"\npblk on an OCSSD 2.0 image ({PBLK_GEOMETRY_TEXT}) vs null_blk, "
          f"{PBLK_SIZE} range written first, {args.runtime} s")
    print(format_pblk_table(pblk))
    if notes:
        print("\nguest kernel:\n" + "\n".join(f"  {line}" for line in notes))
    if trouble:
        print("\nguest kernel lines that look like trouble:\n"
              + "\n".join(f"  {line}" for line in trouble))
    print(f"\nbench: {elapsed:.0f} s in all")

    summary = {
        "runtime_s": args.runtime,
        "nvme": {"size": NVME_SIZE, "unit": "IOPS", "jobs": nvme},
        "pblk": {"size": PBLK_SIZE, "geometry": PBLK_GEOMETRY_TEXT,
                 "fill_mib_s": fill,
                 "units": {job.title: job.unit for job in PBLK_JOBS}, "jobs": pblk},
        "guest_kernel": {"pblk": notes, "trouble": trouble},
        "problems": problems,
        "guest_status": status,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    if status != 0:
        print(f"bench: the guest run failed (status {status})", file=sys.stderr)
        return 1
    if problems:
        print("bench: a fio job reported an error or a result is missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
