"""`make pollbench`'s pure parts: the guest script, fio figures, totals and the table."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ocssd_vfu import pollbench
from ocssd_vfu.pollbench import Served


def fio_result(side: str, iops: float, ios: int, p50_ns: int, p99_ns: int) -> str:
    figures = {"iops": iops, "total_ios": ios,
               "clat_ns": {"percentile": {"50.000000": p50_ns, "99.000000": p99_ns}}}
    empty = {"iops": 0, "total_ios": 0, "clat_ns": {"percentile": {}}}
    return json.dumps({"jobs": [{"error": 0, "read": figures if side == "read" else empty,
                                 "write": figures if side == "write" else empty}]})


def test_guest_script_interleaves_the_modes_job_by_job() -> None:
    script = pollbench.guest_script(runtime=3, rounds=2)
    assert ("for entry in poll-qd1:4k-randread-qd1:randread:1 "
            "default-qd1:4k-randread-qd1:randread:1 poll-qd1:4k-randwrite-qd1:randwrite:1 "
            "default-qd1:4k-randwrite-qd1:randwrite:1 poll-qd32:4k-randread-qd32:randread:32 "
            "default-qd32:4k-randread-qd32:randread:32 "
            "poll-qd32:4k-randwrite-qd32:randwrite:32 "
            "default-qd32:4k-randwrite-qd32:randwrite:32; do") in script
    assert "--runtime=3" in script and "-le 2 ]" in script
    assert "for serial in poll-qd1 default-qd1 poll-qd32 default-qd32 poll-idle " \
        "default-idle; do" in script
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    assert subprocess.run([sh, "-n"], input=script, text=True, check=False).returncode == 0


def test_totals_per_io_less_the_idle_server_of_the_same_mode(tmp_path: Path) -> None:
    results, servers = tmp_path / "fio", {}
    results.mkdir()
    for serial, writes, cpu_s in (("poll-qd1", 130, 2.6), ("default-qd1", 1130, 3.1),
                                  ("poll-qd32", 120, 4.1), ("default-qd32", 2120, 6.1),
                                  ("poll-idle", 100, 0.6), ("default-idle", 120, 0.6)):
        log = tmp_path / f"{serial}.log"
        log.write_text(f"doorbell writes so far: 7\ndoorbell writes so far: {writes}\n")
        servers[serial] = Served(None, tmp_path / "s", log, cpu_s)  # type: ignore[arg-type]
    for serial, ios in (("poll-qd1", 250), ("default-qd1", 250), ("poll-qd32", 2500),
                        ("default-qd32", 2500)):
        for title, _, _ in pollbench.SERVERS[serial][1]:
            side = "read" if "read" in title else "write"
            (results / f"{serial}-{title}-r1.json").write_text(
                fio_result(side, 1000.0, ios, 150_000, 400_000))
    summary = pollbench.summarize(results, servers, rounds=1)
    assert summary["totals"]["poll-qd1"]["doorbells_per_io"] == pytest.approx(0.06)
    assert summary["totals"]["default-qd1"]["doorbells_per_io"] == pytest.approx(2.02)
    assert summary["totals"]["poll-qd1"]["cpu_us_per_io"] == pytest.approx(4000.0)
    assert summary["totals"]["default-qd32"]["cpu_us_per_io"] == pytest.approx(1100.0)
    assert summary["jobs"]["poll-qd32"]["4k-randwrite-qd32"] == \
        {"iops": 1000.0, "p50": 150.0, "p99": 400.0}
    table = pollbench.format_summary(summary).splitlines()
    assert table[1] == ("4k-randread-qd1     poll         1,000      150      400"
                        "         0.060            4000.0")
    assert len(table) == 9


def test_a_fio_error_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    result = json.loads(fio_result("read", 1.0, 1, 1, 1))
    result["jobs"][0]["error"] = 5
    path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="fio error 5"):
        pollbench.fio_figures(path)
