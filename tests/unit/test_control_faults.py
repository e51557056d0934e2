"""The run-time fault model: arguments, the book the kinds ask, and the start-up files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ocssd_vfu.control.arguments import ArgumentError
from ocssd_vfu.control.faults import fault_from_arguments
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.ocssd.faults import faults_from_files_20, ocssd20_space
from ocssd_vfu.ocssd12.bad_blocks import faults_from_files_12, ocssd12_space
from ocssd_vfu.openchannel.faults import AddressSpace, Fault, FaultBook, FaultFileError

G20 = OcssdGeometry(num_grp=2, num_pu=4, num_chk=8, num_sec=64, ws_min=4, ws_opt=8)
# What the files' model (random.Random(7), one draw per check, fail below 60) gave.
RECORDED = "xxx.xx.xx.x.xxxxxxxx"
G12 = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=16, num_pg=32)


@pytest.fixture
def space20() -> AddressSpace:
    return ocssd20_space(G20)


@pytest.fixture
def space12() -> AddressSpace:
    return ocssd12_space(G12)


def test_arguments_make_faults(space20: AddressSpace, space12: AddressSpace) -> None:
    assert fault_from_arguments(space20, {"op": "write", "grp": 1, "pu": 3, "chk": 7,
                                          "sec": 63}) == Fault("write", (1, 3, 7), (63,), 100)
    assert fault_from_arguments(space20, {"op": "reset", "grp": 0, "pu": 0, "chk": 0,
                                          "probability": 0, "count": 3}) == \
        Fault("reset", (0, 0, 0), (), 0, 3)
    assert fault_from_arguments(space12, {"op": "read", "ch": 1, "lun": 0, "blk": 15,
                                          "pg": 31}) == \
        Fault("read", (1, 0, 15), (None, 31), 100, None, "ECC")
    assert fault_from_arguments(space12, {"op": "read", "ch": 1, "lun": 0, "blk": 2,
                                          "pln": 1, "status": "HIGH_ECC"}) == \
        Fault("read", (1, 0, 2), (1, None), 100, None, "HIGH_ECC")


@pytest.mark.parametrize(("given", "argument", "message"), [
    ({"op": "write", "ch": 2, "lun": 0, "blk": 0}, "ch",
     "Parameter 'ch' out of range: 2 is not in 0..1"),
    ({"op": "reset", "ch": 0, "lun": 0, "blk": 0, "pg": 1}, "pg",
     "Parameter 'pg' is unexpected for op 'reset'"),
    ({"op": "write", "ch": 0, "lun": 0, "blk": 0, "status": "ECC"}, "status",
     "Parameter 'status' is unexpected for op 'write'"),
    ({"op": "read", "ch": 0, "lun": 0, "blk": 0, "status": "FINE"}, "status",
     "Parameter 'status' does not accept value 'FINE'"),
    ({"op": "write", "grp": 0, "pu": 0, "chk": 0}, "grp", "Parameter 'grp' is unexpected"),
    ({"ch": 0, "lun": 0, "blk": 0}, "op", "Parameter 'op' is missing"),
    ({"op": "write", "ch": 0, "lun": 0, "blk": 0, "count": 1.5}, "count",
     "Invalid parameter type for 'count', expected: integer"),
])
def test_bad_arguments_name_themselves(space12: AddressSpace, given: dict[str, object],
                                       argument: str, message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        fault_from_arguments(space12, given)
    assert (caught.value.argument, str(caught.value)) == (argument, message)


def test_a_kind_without_media_operations_refuses_every_fault() -> None:
    with pytest.raises(ArgumentError, match="Parameter 'op': this device has no media"):
        fault_from_arguments(AddressSpace("chunk", (), {}), {"op": "write"})


def test_counted_faults_are_spent(space20: AddressSpace) -> None:
    book = FaultBook(space20)
    book.add(Fault("write", (0, 1, 2), (5,), 100, 2))
    assert book.has("write") and not book.has("reset")
    assert book.fires("write", (0, 1, 2), (4,)) is None
    assert book.fires("write", (0, 1, 3), (5,)) is None
    assert book.fires("write", (0, 1, 2), (5,)) == Fault("write", (0, 1, 2), (5,), 100, 1)
    assert book.fires("write", (0, 1, 2), (5,)) == Fault("write", (0, 1, 2), (5,), 100, 0)
    assert book.fires("write", (0, 1, 2), (5,)) is None
    assert not book.has("write") and book.faults() == []


def test_a_sector_fault_is_asked_before_its_chunk_and_same_address_replaces(
        space20: AddressSpace) -> None:
    book = FaultBook(space20)
    book.add(Fault("read", (1, 0, 0), (None,), 100))
    book.add(Fault("read", (1, 0, 0), (9,), 100, 1))
    fired = book.fires("read", (1, 0, 0), (9,))
    assert fired is not None and fired.detail == (9,)
    fired = book.fires("read", (1, 0, 0), (9,))   # the sector's fault is spent
    assert fired is not None and fired.detail == (None,)
    book.add(Fault("read", (1, 0, 0), (None,), 0))
    assert book.faults() == [Fault("read", (1, 0, 0), (None,), 0)]
    assert book.fires("read", (1, 0, 0), (3,)) is None
    assert book.clear("write") == 0
    assert book.clear() == 1 and not book.has("read")


def test_probability_draws_one_number_per_check(space20: AddressSpace) -> None:
    # random.Random(3).randrange(100) gives 30, 75, 69, 16, 47, ...
    book = FaultBook(space20, random.Random(3))
    book.add(Fault("reset", (0, 0, 0), (), 50))
    assert [book.fires("reset", (0, 0, 0)) is not None for _ in range(5)] == [
        True, False, False, True, True]


def test_files_load_as_faults_that_fail_like_the_old_ones(tmp_path: Path) -> None:
    write = tmp_path / "write"
    write.write_text("grp=1 pu=2 chk=3 sec=4 writefail_prob=60\n"
                     "# comment\ngrp=0 pu=0 chk=0 sec=63 writefail_prob=100\n")
    reset = tmp_path / "reset"
    reset.write_text("grp=1 pu=3 chk=7 resetfail_prob=25\n")
    faults = faults_from_files_20(G20, write, reset)
    assert faults == [Fault("write", (1, 2, 3), (4,), 60), Fault("write", (0, 0, 0), (63,), 100),
                      Fault("reset", (1, 3, 7), (), 25)]
    book = FaultBook(ocssd20_space(G20), random.Random(7))
    for fault in faults:
        book.add(fault)
    # The 60 % fault fails as the files' own model did with that seed (its draws, recorded).
    assert "".join("x" if book.fires("write", (1, 2, 3), (4,)) else "." for _ in range(20)) \
        == RECORDED


def test_files_12_load_as_faults(tmp_path: Path) -> None:
    write, reset, read = tmp_path / "w", tmp_path / "e", tmp_path / "r"
    write.write_text("ch=1 lun=1 pln=1 blk=15 pg=31 writefail_prob=100\n")
    reset.write_text("ch=0 lun=1 blk=3 resetfail_prob=50\n")
    read.write_text("ch=1 lun=0 pln=0 blk=2 pg=0 status=HIGH_ECC readfail_prob=10\n")
    assert faults_from_files_12(G12, write, reset, read) == [
        Fault("write", (1, 1, 15), (1, 31), 100), Fault("reset", (0, 1, 3), (), 50),
        Fault("read", (1, 0, 2), (0, 0), 10, None, "HIGH_ECC")]


def test_a_bad_file_line_keeps_its_message(tmp_path: Path) -> None:
    reset = tmp_path / "reset"
    reset.write_text("grp=2 pu=0 chk=0 resetfail_prob=1\n")
    with pytest.raises(FaultFileError, match=r"reset:1: grp=2 out of range \(0..1\)"):
        faults_from_files_20(G20, reset_fail=reset)
