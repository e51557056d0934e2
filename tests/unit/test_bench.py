"""`make bench`'s pure parts: the guest script, fio JSON figures, tables, dmesg notes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from ocssd_vfu import bench
from ocssd_vfu.bench import NVME_JOBS, PBLK_FILL, PBLK_JOBS, Job, ResultError, Stats

RANDREAD = Job("4k-randread-qd32", "randread", "4k", 32, "IOPS")
SEQWRITE = Job("128k-seqwrite-qd32", "write", "128k", 32, "MiB/s")
LATENCY = Job("4k-randwrite-qd1", "randwrite", "4k", 1, "latency")


def fio_json(*, read_iops: float = 0.0, write_iops: float = 0.0, write_bw_bytes: int = 0,
             error: int = 0, write_p50_ns: int = 0, write_p99_ns: int = 0) -> dict[str, object]:
    percentiles = {"1.000000": 1, "50.000000": write_p50_ns, "99.000000": write_p99_ns}
    return {"fio version": "fio-3.33", "jobs": [{
        "jobname": "x", "error": error,
        "read": {"iops": read_iops, "bw": 0, "bw_bytes": 0},
        "write": {"iops": write_iops, "bw": write_bw_bytes // 1024,
                  "bw_bytes": write_bw_bytes, "clat_ns": {"percentile": percentiles}},
    }]}


def test_iops_from_the_side_the_job_used() -> None:
    assert bench.job_figures(fio_json(read_iops=1234.5, write_iops=9), RANDREAD) == \
        {"IOPS": 1234.5}


def test_mib_per_second() -> None:
    assert bench.job_figures(fio_json(write_bw_bytes=162 << 20), SEQWRITE) == {"MiB/s": 162.0}


def test_falls_back_to_kib_bw() -> None:
    result = fio_json()
    result["jobs"][0]["write"] = {"iops": 1, "bw": 2048}  # type: ignore[index]
    assert bench.job_figures(result, SEQWRITE) == {"MiB/s": 2.0}


def test_latency_percentiles_in_microseconds() -> None:
    result = fio_json(write_p50_ns=87_040, write_p99_ns=211_968)
    assert bench.job_figures(result, LATENCY) == {"p50 us": 87.04, "p99 us": 211.968}


def test_fio_error_is_a_result_error() -> None:
    with pytest.raises(ResultError, match="error 5"):
        bench.job_figures(fio_json(read_iops=100, error=5), RANDREAD)


def test_malformed_fio_output_is_a_result_error() -> None:
    with pytest.raises(ResultError):
        bench.job_figures({"jobs": []}, RANDREAD)
    with pytest.raises(ResultError):
        bench.job_figures(fio_json(), Job("4k-randread-qd1", "randread", "4k", 1, "latency"))


def test_missing_and_garbled_files(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="no result"):
        bench.read_figures(tmp_path / "absent.json", RANDREAD)
    (tmp_path / "cut.json").write_text('{"jobs": [')
    with pytest.raises(ResultError, match="unreadable"):
        bench.read_figures(tmp_path / "cut.json", RANDREAD)


def test_stats_of_rounds() -> None:
    assert Stats.of([300.0, 100.0, 200.0]) == Stats(200.0, 100.0, 300.0, (300.0, 100.0, 200.0))
    assert Stats.of([1.0, 4.0]).median == 2.5


def test_collect_takes_the_median_and_names_what_is_missing(tmp_path: Path) -> None:
    jobs = (RANDREAD, LATENCY)
    for round_, iops in ((1, 900.0), (2, 1100.0), (3, 1000.0)):
        path = tmp_path / bench.result_name("pblk", "pblk", RANDREAD, round_)
        path.write_text(json.dumps(fio_json(read_iops=iops)))
    for round_ in (1, 2):
        path = tmp_path / bench.result_name("pblk", "pblk", LATENCY, round_)
        path.write_text(json.dumps(fio_json(write_p50_ns=50_000 * round_,
                                            write_p99_ns=90_000 * round_)))
    table, problems = bench.collect(tmp_path, "pblk", jobs, bench.PBLK_DEVICES, 3)
    assert table["4k-randread-qd32"] == {"pblk": Stats(1000.0, 900.0, 1100.0,
                                                       (900.0, 1100.0, 1000.0)),
                                         "null_blk": None}
    assert table["4k-randwrite-qd1 p50 us"]["pblk"] == Stats(75.0, 50.0, 100.0, (50.0, 100.0))
    assert table["4k-randwrite-qd1 p99 us"]["pblk"] == Stats(135.0, 90.0, 180.0, (90.0, 180.0))
    assert problems == [
        "null_blk 4k-randread-qd32 round 1: no result",
        "null_blk 4k-randread-qd32 round 2: no result",
        "null_blk 4k-randread-qd32 round 3: no result",
        "pblk 4k-randwrite-qd1 round 3: no result",
        "null_blk 4k-randwrite-qd1 round 1: no result",
        "null_blk 4k-randwrite-qd1 round 2: no result",
        "null_blk 4k-randwrite-qd1 round 3: no result",
    ]


def test_result_names_keep_the_two_null_blk_runs_apart() -> None:
    job = NVME_JOBS[0]
    assert bench.result_name("nvme", "null_blk", job, 2) == "null_blk-4k-randread-qd32-r2.json"
    assert bench.result_name("pblk", "null_blk", job, 1) == \
        "null_blk-pblk-4k-randread-qd32-r1.json"
    assert bench.result_name("pblk", "pblk", PBLK_FILL, None) == "pblk-fill-128k-seqwrite.json"


def test_ratio() -> None:
    assert bench.ratio(Stats.of([50.0]), Stats.of([100.0])) == 0.5
    assert math.isnan(bench.ratio(None, Stats.of([100.0])))
    assert math.isnan(bench.ratio(Stats.of([50.0]), None))
    assert math.isnan(bench.ratio(Stats.of([50.0]), Stats.of([0.0])))


def test_pblk_table() -> None:
    text = bench.format_table({
        "4k-randread-qd32": {"pblk": Stats.of([7100.0, 7000.0, 7300.0]),
                             "null_blk": Stats.of([17900.0])},
        "4k-randwrite-qd32": {"pblk": Stats.of([14200.0]), "null_blk": None},
        "128k-seqwrite-qd32": {"pblk": Stats.of([162.4]), "null_blk": Stats.of([1624.0])},
        "4k-randread-qd1 p50 us": {"pblk": Stats.of([120.0]), "null_blk": Stats.of([60.0])},
    }, PBLK_JOBS, bench.PBLK_DEVICES, ("null_blk",))
    # Row names padded to 24, cells right-aligned in 26, ratios in 14.
    assert text.splitlines() == [
        "job                                           pblk                  null_blk"
        "   vs null_blk  unit",
        "4k-randread-qd32               7,100 (7,000-7,300)    17,900 (17,900-17,900)"
        "         0.40x  IOPS",
        "4k-randwrite-qd32           14,200 (14,200-14,200)                         -"
        "             -  IOPS",
        "128k-seqwrite-qd32                   162 (162-162)       1,624 (1,624-1,624)"
        "         0.10x  MiB/s",
        "4k-randread-qd1 p50 us               120 (120-120)                60 (60-60)"
        "         2.00x  us",
        "4k-randread-qd1 p99 us                           -                         -"
        "             -  us",
        "4k-randwrite-qd1 p50 us                          -                         -"
        "             -  us",
        "4k-randwrite-qd1 p99 us                          -                         -"
        "             -  us",
    ]


def test_one_line_per_figure_names_the_emulators_figure_and_the_guests_limit() -> None:
    text = bench.format_limits({
        "4k-randread-qd32": {"pblk": Stats.of([7100.0, 7000.0, 7300.0]),
                             "null_blk": Stats.of([17750.0])},
        "4k-randwrite-qd32": {"pblk": Stats.of([14200.0]), "null_blk": None},
        "4k-randread-qd1 p50 us": {"pblk": Stats.of([120.0]), "null_blk": Stats.of([60.0])},
    }, PBLK_JOBS, "pblk", "null_blk")
    assert text.splitlines() == [
        "4k-randread-qd32: the emulator (pblk) 7,100 IOPS; the guest's limit (null_blk) "
        "17,750 IOPS (0.40x)",
        "4k-randwrite-qd32: the emulator (pblk) 14,200 IOPS; the guest's limit (null_blk) -",
        "128k-seqwrite-qd32: the emulator (pblk) -; the guest's limit (null_blk) -",
        "4k-randread-qd1 p50 us: the emulator (pblk) 120 us; the guest's limit (null_blk) "
        "60 us (2.00x)",
        "4k-randread-qd1 p99 us: the emulator (pblk) -; the guest's limit (null_blk) -",
        "4k-randwrite-qd1 p50 us: the emulator (pblk) -; the guest's limit (null_blk) -",
        "4k-randwrite-qd1 p99 us: the emulator (pblk) -; the guest's limit (null_blk) -",
    ]


def test_chart_is_a_png(tmp_path: Path) -> None:
    stats = {"median": 2.0, "low": 1.0, "high": 3.0, "runs": [1.0, 2.0, 3.0]}
    summary = {name: {"jobs": {row: {device: stats for device in devices}
                               for row, _ in bench.rows(jobs)}}
               for name, jobs, devices in (("nvme", NVME_JOBS, bench.NVME_DEVICES),
                                           ("pblk", PBLK_JOBS, bench.PBLK_DEVICES))}
    summary["pblk"]["jobs"]["4k-randread-qd32"]["null_blk"] = None
    bench.chart(summary, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    script = bench.guest_script(7, 3)
    for job in (*NVME_JOBS, *PBLK_JOBS, PBLK_FILL):
        assert job.title in script
    assert "4k-randread-qd1:randread:4k:1" in script
    for model in (bench.MODEL_PLAIN, bench.MODEL_OCSSD, bench.MODEL_QEMU):
        assert f'"{model}"' in script
    assert '--runtime=$7 --time_based' in script and '"$size" 7 "$path"' in script
    assert script.count("while [ $round -le 3 ]") == 3
    assert script.startswith("set -e\n")
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no sh")
    subprocess.run([shell, "-n", "-c", script], check=True)


def test_doorbell_figures_from_server_logs_and_fio(tmp_path: Path) -> None:
    servers = {serial: bench.BenchServer(tmp_path / f"{serial}.sock",
                                         tmp_path / f"{serial}.log", None)  # type: ignore[arg-type]
               for serial in bench.DOORBELL_SERVERS}
    (tmp_path / "bench-shadow.log").write_text(
        "ocssd-vfu serve: client attached\nocssd-vfu serve: doorbell writes so far: 12\n"
        "ocssd-vfu serve: doorbell writes so far: 1500\n")
    (tmp_path / "bench-mmio.log").write_text("ocssd-vfu serve: client attached\n")
    for serial in bench.DOORBELL_SERVERS:
        (tmp_path / f"doorbells-{serial}.json").write_text(json.dumps(
            {"jobs": [{"read": {"total_ios": 20000}}]}))
    figures, problems = bench.doorbell_figures(servers, tmp_path)
    assert figures == {"bench-shadow": {"doorbell_writes": 1500, "ios": 20000,
                                        "per_io": 0.075}}
    assert problems == ["doorbells bench-mmio: no doorbell total in its log, or no I/O"]
    assert bench.format_doorbells(figures).splitlines() == [
        "server          serve flags              doorbell writes      I/Os   per I/O",
        "bench-shadow    (default)                          1,500    20,000     0.075",
        "bench-mmio      --no-shadow-doorbells                  -         -         -",
    ]


def test_rss_anon_from_proc_status() -> None:
    status = "Name:\tpython3\nVmRSS:\t   32032 kB\nRssAnon:\t   20512 kB\nRssFile:\t 11520 kB\n"
    assert bench.rss_anon_kib(status) == 20512
    assert bench.rss_anon_kib("Name:\tzombie\n") == 0


def test_the_servers_the_bench_starts_are_kept_out_of_the_model_lookup() -> None:
    assert all(serial.startswith("bench-") for serial in (*bench.DOORBELL_SERVERS,
                                                           bench.MEMORY_SERIAL))
    assert 'in bench-*) continue' in bench.guest_script(1, 1)


def test_timing_bounds_of_the_timed_device() -> None:
    # tRD 500 µs + one 4 KiB sector at 800 MB/s (5.12 µs); 4 PUs x 32 KiB per
    # (1.9 ms + 8 x 5.12 µs)
    bounds = bench.timing_bounds()
    assert bounds["1pu_iops"] == pytest.approx(1979.73, abs=0.01)
    assert bounds["4pu_iops"] == pytest.approx(7918.91, abs=0.01)
    assert bounds["qd1_added_us"] == pytest.approx(505.12)
    assert bounds["pblk_mib_s"] == pytest.approx(64.40, abs=0.01)


def test_timing_table_puts_each_timed_figure_beside_its_bound(tmp_path: Path) -> None:
    def result(name: str, side: str, **figures: object) -> None:
        (tmp_path / f"timing-{name}.json").write_text(json.dumps(
            {"jobs": [{"error": 0, side: figures}]}))

    result("bench-timed-4k-randread-qd32-1pu", "read", iops=1975.4, bw=1, bw_bytes=1)
    result("bench-untimed-4k-randread-qd32-1pu", "read", iops=8100.0, bw=1, bw_bytes=1)
    result("bench-timed-4k-randread-qd1", "read", iops=1.0, bw=1, bw_bytes=1,
           clat_ns={"percentile": {"50.000000": 690_176, "99.000000": 900_000}})
    result("bench-untimed-4k-randread-qd1", "read", iops=1.0, bw=1, bw_bytes=1,
           clat_ns={"percentile": {"50.000000": 180_224, "99.000000": 300_000}})
    result("bench-timed-128k-seqwrite-pblk", "write", iops=1.0, bw=60 << 10, bw_bytes=60 << 20)
    figures, problems = bench.timing_figures(tmp_path)
    assert [p.split(":")[0] for p in problems] == [
        "timing bench-timed 4k-randread-qd32-4pu", "timing bench-untimed 4k-randread-qd32-4pu"]
    assert bench.format_timing(figures).splitlines() == [
        "job                                    untimed  --timing   model's bound (--timing)",
        "4K random read QD32, 1 PU (IOPS)         8,100     1,975   1,980",
        "4K random read QD32, 4 PUs (IOPS)            -         -   7,919",
        "4K random read QD1, p50 (µs)               180       690   untimed + 505 = 685",
        "pblk 128K sequential write (MiB/s)           -        60   64.4",
    ]


def test_the_guest_script_runs_the_timing_jobs_on_both_servers() -> None:
    script = bench.guest_script(8, 1)
    assert "for serial in bench-timed bench-untimed; do" in script
    assert "4k-randread-qd32-1pu randread 4k 32 128M 8" in script
    assert "4k-randread-qd32-4pu randread 4k 32 512M 8" in script
    assert bench.TIMING_SERVERS["bench-timed"] == ("--timing", "--trdt", "500000")
