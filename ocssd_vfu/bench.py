"""`make bench`: fio in one guest boot on ocssd_vfu (plain mode), QEMU's built-in
NVMe device and null_blk, printed as ratios against the baselines of the same run.

Speed is never asserted; the run fails only when a fio job reports an error or
a device is missing. TCG varies by tens of percent between boots: compare the
ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ocssd_vfu.guest.runner import GuestRun, run_guest

JOBS = (("4k-randread-qd32", "randread"), ("4k-randwrite-qd32", "randwrite"))
DEVICES = ("ocssd_vfu", "qemu-nvme", "null_blk")

GUEST_SCRIPT = """\
set -e
dev_by_model() {{
    for c in /sys/class/nvme/nvme*; do
        if grep -q "$1" "$c/model"; then echo /dev/$(basename "$c")n1; return; fi
    done
    echo "no NVMe controller with model $1" >&2; exit 1
}}
ocssd=$(dev_by_model ocssd_vfu)
qnvme=$(dev_by_model "QEMU NVMe")
for dev in ocssd_vfu:$ocssd qemu-nvme:$qnvme null_blk:/dev/nullb0; do
    name=${{dev%%:*}}; path=${{dev#*:}}
    for job in {jobs}; do
        title=${{job%%:*}}; rw=${{job#*:}}
        echo "== $name $title"
        fio --name="$title" --filename="$path" --rw="$rw" --bs=4k --iodepth=32 \\
            --ioengine=libaio --direct=1 --size=128M --runtime={runtime} --time_based \\
            --eta=never --output-format=json --output=/results/$name-$title.json
    done
done
"""


def _iops(result: dict[str, object], rw: str) -> tuple[float, int]:
    job = result["jobs"][0]  # type: ignore[index]
    side = "read" if "read" in rw else "write"
    return float(job[side]["iops"]), int(job["error"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.bench", description=__doc__)
    parser.add_argument("--runtime", type=int, default=10, help="seconds per fio job")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where the fio JSON and the summary go")
    args = parser.parse_args(argv)
    jobs = " ".join(f"{title}:{rw}" for title, rw in JOBS)
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-bench-") as tmp:
        work = Path(tmp)
        for name in ("ocssd.raw", "qemu-nvme.raw"):
            with (work / name).open("wb") as f:
                f.truncate(1 << 30)
        script = work / "bench.sh"
        script.write_text(GUEST_SCRIPT.format(jobs=jobs, runtime=args.runtime))
        results = args.out / "fio"
        status = run_guest(GuestRun(script=script, images=[work / "ocssd.raw"],
                                    qemu_nvme=[work / "qemu-nvme.raw"], results=results,
                                    timeout=120 + 8 * args.runtime * len(JOBS)))
    if status != 0:
        print(f"bench: the guest run failed (status {status})", file=sys.stderr)
        return 1
    failed = False
    table: dict[str, dict[str, float]] = {}
    for title, rw in JOBS:
        for device in DEVICES:
            path = results / f"{device}-{title}.json"
            if not path.exists():
                print(f"bench: no result for {device} {title}", file=sys.stderr)
                failed = True
                continue
            iops, error = _iops(json.loads(path.read_text()), rw)
            failed |= error != 0
            table.setdefault(title, {})[device] = iops
    print(f"\n{'job':<20}{'ocssd_vfu':>12}{'qemu-nvme':>12}{'null_blk':>12}"
          f"{'vs qemu':>10}{'vs null':>10}")
    for title, row in table.items():
        ours = row.get("ocssd_vfu", 0.0)
        ratios = [ours / row[base] if row.get(base) else float("nan")
                  for base in ("qemu-nvme", "null_blk")]
        print(f"{title:<20}" + "".join(f"{row.get(d, 0):>12,.0f}" for d in DEVICES)
              + "".join(f"{r:>9.2f}x" for r in ratios))
    (args.out / "summary.json").write_text(json.dumps(table, indent=2))
    if failed:
        print("bench: a fio job reported an error or a result is missing", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
