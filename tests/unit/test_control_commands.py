"""The command registry per kind: 1.2 devices have blocks, plain NVMe has no media ops."""

from __future__ import annotations

from typing import Any

import trio

from ocssd_vfu.control.commands import build_registry
from ocssd_vfu.control.qmp import Request
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.ocssd12.bad_blocks import ocssd12_space
from ocssd_vfu.openchannel.faults import FaultBook
from tests.fake_control_device import FakeDevice

G12 = Ocssd12Geometry(num_ch=2, num_lun=4, num_pln=2, num_blk=16, num_pg=32)


class Fake12(FakeDevice):
    address_space = ocssd12_space(G12)

    def __init__(self) -> None:
        super().__init__()
        self.faults = FaultBook(ocssd12_space(G12))


class FakePlain(FakeDevice):
    address_space = None


def run(device: FakeDevice, name: str, **arguments: Any) -> dict[str, Any]:
    async def execute() -> dict[str, Any]:
        reply, _ = await build_registry(device).execute(Request(name, arguments))
        return reply
    return trio.run(execute)


def names(device: FakeDevice) -> list[str]:
    return [command["name"] for command in run(device, "query-commands")["return"]]


def test_a_12_device_has_blocks_and_read_statuses() -> None:
    device = Fake12()
    assert "query-blocks" in names(device)
    assert "query-chunks" not in names(device) and "set-chunk-state" not in names(device)
    assert run(device, "inject-fault", op="read", ch=1, lun=3, blk=15, pln=1, pg=31,
               status="HIGH_ECC") == {"return": {"op": "read", "ch": 1, "lun": 3, "blk": 15,
                                                 "pln": 1, "pg": 31, "probability": 100,
                                                 "status": "HIGH_ECC"}}
    assert run(device, "inject-fault", op="reset", ch=0, lun=4, blk=0) == {"error": {
        "class": "GenericError", "desc": "Parameter 'lun' out of range: 4 is not in 0..3"}}
    assert run(device, "query-faults") == {"return": [
        {"op": "read", "ch": 1, "lun": 3, "blk": 15, "pln": 1, "pg": 31, "probability": 100,
         "status": "HIGH_ECC"}]}


def test_a_plain_device_has_no_chunks_and_refuses_faults_by_op() -> None:
    device = FakePlain()
    assert "query-chunks" not in names(device) and "query-blocks" not in names(device)
    assert run(device, "inject-fault", op="write") == {"error": {
        "class": "GenericError",
        "desc": "Parameter 'op': this device has no media operations to fail"}}
    assert run(device, "inject-fault", op="write", grp=0) == {"error": {
        "class": "GenericError", "desc": "Parameter 'grp' is unexpected"}}
    assert run(device, "query-faults") == {"return": []}


def test_a_handler_bug_is_an_error_reply_not_a_crash() -> None:
    class Broken(FakeDevice):
        def query_stats(self) -> dict[str, Any]:
            raise ZeroDivisionError("division by zero")

    assert run(Broken(), "query-stats") == {"error": {
        "class": "GenericError", "desc": "internal error in query-stats: division by zero"}}
