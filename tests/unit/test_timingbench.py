"""`make timingbench`'s harness: the modelled side on its virtual clock gives exact
figures; the measured side completes every command and never before it is due."""

from __future__ import annotations

import pytest
import trio

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.timingbench import Cell, all_cells, measured, modelled, parameters_of

GEOMETRY = OcssdGeometry(num_grp=2, num_pu=4)   # tRD 70 µs, tPROG 1.9 ms, tBERS 3 ms
PARAMETERS = parameters_of(GEOMETRY, channel_mbps=800)


def test_the_matrix_has_every_cell_the_issue_names() -> None:
    cells = all_cells()
    assert len(cells) == 36
    assert cells[0].name == "read QD1 1 PU, idle"
    assert cells[-1].name == "reset QD32 all PUs, full"


def test_one_read_at_a_time_on_one_pu_takes_trd_and_one_sector_on_the_bus() -> None:
    figures = modelled(Cell("read", 1, "1 PU", "idle"), GEOMETRY, PARAMETERS, 0.1, seed=1)
    assert (figures.p50_ns, figures.p99_ns) == (75_120, 75_120)     # 70,000 + 5,120
    assert figures.commands == 1_332                                # 0.1 s / 75.12 µs, +1
    assert figures.per_s == pytest.approx(13_312.03, abs=0.01)


def test_thirty_two_reads_queued_on_one_pu_wait_for_each_other() -> None:
    figures = modelled(Cell("read", 32, "1 PU", "idle"), GEOMETRY, PARAMETERS, 0.1, seed=1)
    assert figures.p50_ns == 2_403_840                              # 32 x 75,120


def test_resets_on_one_pu_are_bounded_by_tbers() -> None:
    figures = modelled(Cell("reset", 32, "1 PU", "idle"), GEOMETRY, PARAMETERS, 0.5, seed=1)
    assert figures.per_s == pytest.approx(1e9 / 3_000_000, rel=1e-9)


@pytest.mark.timeout(60)
def test_the_measured_side_completes_commands_never_early() -> None:
    figures = trio.run(measured, Cell("read", 32, "1 group", "full"), GEOMETRY, PARAMETERS,
                       0.05, 1)
    assert figures.commands > 0
    assert figures.lateness_p50_ns >= 0
