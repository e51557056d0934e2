"""`make bench`'s pure parts: the guest script, fio JSON figures, tables, dmesg notes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from ocssd_vfu import bench
from ocssd_vfu.bench import NVME_JOBS, PBLK_FILL, PBLK_JOBS, Job, ResultError

RANDREAD = Job("4k-randread-qd32", "randread", "4k", "IOPS")
SEQWRITE = Job("128k-seqwrite-qd32", "write", "128k", "MiB/s")


def fio_json(*, read_iops: float = 0.0, write_iops: float = 0.0, write_bw_bytes: int = 0,
             error: int = 0) -> dict[str, object]:
    return {"fio version": "fio-3.33", "jobs": [{
        "jobname": "x", "error": error,
        "read": {"iops": read_iops, "bw": 0, "bw_bytes": 0},
        "write": {"iops": write_iops, "bw": write_bw_bytes // 1024,
                  "bw_bytes": write_bw_bytes},
    }]}


def test_fio_figure_iops_from_the_side_the_job_used() -> None:
    assert bench.fio_figure(fio_json(read_iops=1234.5, write_iops=9), RANDREAD) == 1234.5


def test_fio_figure_mib_per_second() -> None:
    assert bench.fio_figure(fio_json(write_bw_bytes=162 << 20), SEQWRITE) == 162.0


def test_fio_figure_falls_back_to_kib_bw() -> None:
    result = fio_json()
    result["jobs"][0]["write"] = {"iops": 1, "bw": 2048}  # type: ignore[index]
    assert bench.fio_figure(result, SEQWRITE) == 2.0


def test_fio_error_is_a_result_error() -> None:
    with pytest.raises(ResultError, match="error 5"):
        bench.fio_figure(fio_json(read_iops=100, error=5), RANDREAD)


def test_malformed_fio_output_is_a_result_error() -> None:
    with pytest.raises(ResultError):
        bench.fio_figure({"jobs": []}, RANDREAD)


def test_missing_and_garbled_files(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="no result"):
        bench.read_figure(tmp_path / "absent.json", RANDREAD)
    (tmp_path / "cut.json").write_text('{"jobs": [')
    with pytest.raises(ResultError, match="unreadable"):
        bench.read_figure(tmp_path / "cut.json", RANDREAD)


def test_collect_names_what_is_missing(tmp_path: Path) -> None:
    for job in PBLK_JOBS:
        figure = {"write_bw_bytes": 10 << 20} if job.unit == "MiB/s" else \
            {"read_iops" if "read" in job.rw else "write_iops": 1000.0}
        path = tmp_path / bench.result_name("pblk", "pblk", job)
        path.write_text(json.dumps(fio_json(**figure)))
    table, problems = bench.collect(tmp_path, "pblk", PBLK_JOBS, bench.PBLK_DEVICES)
    assert table["4k-randread-qd32"] == {"pblk": 1000.0, "null_blk": None}
    assert table["128k-seqwrite-qd32"]["pblk"] == 10.0
    assert problems == [f"null_blk {job.title}: no result" for job in PBLK_JOBS]


def test_result_names_keep_the_two_null_blk_runs_apart() -> None:
    job = NVME_JOBS[0]
    assert bench.result_name("nvme", "null_blk", job) == "null_blk-4k-randread-qd32.json"
    assert bench.result_name("pblk", "null_blk", job) == "null_blk-pblk-4k-randread-qd32.json"
    assert bench.result_name("pblk", "pblk", PBLK_FILL) == "pblk-fill-128k-seqwrite.json"


def test_ratio() -> None:
    assert bench.ratio(50.0, 100.0) == 0.5
    assert math.isnan(bench.ratio(None, 100.0))
    assert math.isnan(bench.ratio(50.0, None))
    assert math.isnan(bench.ratio(50.0, 0.0))


def test_pblk_table() -> None:
    text = bench.format_pblk_table({
        "4k-randread-qd32": {"pblk": 7100.0, "null_blk": 17900.0},
        "4k-randwrite-qd32": {"pblk": 14200.0, "null_blk": None},
        "128k-seqwrite-qd32": {"pblk": 162.4, "null_blk": 1624.0},
    })
    assert text.splitlines() == [
        "job                         pblk    null_blk     ratio  unit",
        "4k-randread-qd32           7,100      17,900     0.40x  IOPS",
        "4k-randwrite-qd32         14,200           -         -  IOPS",
        "128k-seqwrite-qd32           162       1,624     0.10x  MiB/s",
    ]


def test_nvme_table_keeps_its_columns() -> None:
    text = bench.format_nvme_table({
        "4k-randread-qd32": {"ocssd_vfu": 18000.0, "qemu-nvme": 12000.0, "null_blk": 20000.0},
    })
    assert text.splitlines() == [
        "job                    ocssd_vfu   qemu-nvme    null_blk   vs qemu   vs null",
        "4k-randread-qd32          18,000      12,000      20,000     1.50x     0.90x",
        "4k-randwrite-qd32              -           -           -         -         -",
    ]


def test_dmesg_notes() -> None:
    dmesg = "\n".join([
        "[    0.100000] tsc: Fast TSC calibration failed",
        "[    8.591759] nvme nvme1: Duplicate cntlid 0 with nvme0, rejecting",
        "[   26.393878] nvm: registered nvme0n1 [4/8/32/8/2]",
        "[   27.525050] pblk bench: luns:8, lines:32, secs:179200, buf entries:512",
        "[   30.000000] pblk bench: failed to write line 3 (error 5)",
        "[   31.000000] WARNING: CPU: 1 PID: 77 at drivers/lightnvm/pblk-core.c:123",
    ])
    ours, trouble = bench.dmesg_notes(dmesg)
    assert ours == ["nvm: registered nvme0n1 [4/8/32/8/2]",
                    "pblk bench: luns:8, lines:32, secs:179200, buf entries:512",
                    "pblk bench: failed to write line 3 (error 5)"]
    assert trouble == ["nvme nvme1: Duplicate cntlid 0 with nvme0, rejecting",
                       "pblk bench: failed to write line 3 (error 5)",
                       "WARNING: CPU: 1 PID: 77 at drivers/lightnvm/pblk-core.c:123"]


def test_guest_script_is_valid_shell_with_every_job() -> None:
    script = bench.guest_script(7)
    for job in (*NVME_JOBS, *PBLK_JOBS, PBLK_FILL):
        assert job.title in script
    for model in (bench.MODEL_PLAIN, bench.MODEL_OCSSD, bench.MODEL_QEMU):
        assert f'"{model}"' in script
    assert "--runtime=$6 --time_based" in script and " 7 " in script
    assert script.startswith("set -e\n")
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no sh")
    subprocess.run([shell, "-n", "-c", script], check=True)
