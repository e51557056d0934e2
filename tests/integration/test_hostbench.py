"""The host-side bench drives the real controller, C shim and BAR0/DMA callbacks."""

from __future__ import annotations

from ocssd_vfu import hostbench


def test_every_job_completes_commands_without_errors() -> None:
    result = hostbench.measure(0.05, (1, 8), image_size=16 << 20)
    jobs = [(job["workload"], job["queue_depth"]) for job in result["jobs"]]
    assert jobs == [("randread", 1), ("randread", 8), ("randwrite", 1), ("randwrite", 8)]
    assert all(job["commands"] > 0 and job["server_commands_per_s"] > 0
               for job in result["jobs"])
    assert result["copy_limit_blocks_per_s"] > 0


COLLAPSED = "\n".join([
    "<module> (x.py:1);main (x.py:2) 50",
    "<module> (x.py:1);run (hostbench.py:9);Controller.process (controller.py:220);"
    "transfer (prp.py:66) 30",
    "<module> (x.py:1);run (hostbench.py:9);Controller.process (controller.py:217) 10",
    "<module> (x.py:1);doorbell (hostbench.py:91);ocssd_bar0_access (device.py:159);"
    "Controller.mmio_write (controller.py:117) 10",
])


def test_profile_summary_counts_only_the_servers_frames() -> None:
    summary = hostbench.profile_summary(COLLAPSED).splitlines()
    assert summary[0] == "50 samples in the server's entry points; own time by function:"
    assert summary[1:4] == ["   60.0%  transfer (prp.py)",
                            "   20.0%  Controller.process (controller.py)",
                            "   20.0%  Controller.mmio_write (controller.py)"]
    assert "   80.0%  Controller.process (controller.py)" in summary
    assert not any("main" in line or "run (" in line for line in summary)
