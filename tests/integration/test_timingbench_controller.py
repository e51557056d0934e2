"""`make timingbench` through the real controller (libvfio-user's callbacks, no QEMU):
every command of every kind succeeds, none completes before its modelled time, and
nothing is left held at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.spec.ocssd import Mccap
from ocssd_vfu.timingbench import Cell, ControllerTarget, measured, parameters_of


@pytest.mark.parametrize("operation", ["read", "write", "reset"])
def test_through_the_controller_every_command_succeeds_and_none_completes_early(
        operation: str, tmp_path: Path) -> None:
    geometry = OcssdGeometry(num_grp=2, num_pu=2, num_chk=8, num_sec=256,
                             mccap=Mccap.MULTIPLE_RESETS)
    parameters = parameters_of(geometry, channel_mbps=800)
    target = ControllerTarget(geometry, 800, 0, tmp_path)
    try:
        figures = trio.run(measured, Cell(operation, 32, "all PUs", "full"), geometry,
                           parameters, 0.05, 1, 0, target)
    finally:
        target.close()
    assert target.failures == 0
    assert figures.commands > 0
    assert figures.lateness_p50_ns >= 0
    assert len(target.controller.held) == 0 and not target.waiting
