"""Test files and generated bad blocks of a 1.2 device, in the 2.0 files' style
(ocssd/faults.py: every key required, # comments, errors as FILE:LINE: reason):

    --bbt:         ch=C lun=L pln=P blk=B state=FACTORY|GROWN|DEVICE|HOST
    --write-fail:  ch=C lun=L pln=P blk=B pg=G writefail_prob=0..100
    --reset-fail:  ch=C lun=L blk=B resetfail_prob=0..100   (an erase of all planes)
    --read-fail:   ch=C lun=L pln=P blk=B pg=G status=ECC|HIGH_ECC readfail_prob=0..100

`--bad-block-frequency N` marks every Nth entry of the bad-block table (the
plane blocks in table order: channel, LUN, block, plane) factory bad, the
first being entry N-1: deterministic, and spread over every LUN and plane.
"""

from __future__ import annotations

from pathlib import Path

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.openchannel.faults import (
    AddressField,
    AddressSpace,
    Fault,
    FaultFileError,
    field_choice,
    field_lines,
    field_number,
)
from ocssd_vfu.spec.ocssd12 import BlockValue
from ocssd_vfu.spec.status import DNR, Status

STATES = {value.name: int(value) for value in BlockValue if value != BlockValue.GOOD}
# What Linux calls NVM_RSP_ERR_FAILECC (no data) and NVM_RSP_WARN_HIGHECC (data is good).
READ_STATUSES = {"ECC": Status.UNRECOVERED_READ | DNR, "HIGH_ECC": Status.OCSSD12_HIGH_ECC | DNR}


def _block(where: str, fields: dict[str, str], g: Ocssd12Geometry) -> int:
    ch = field_number(where, fields, "ch", g.num_ch)
    lun = field_number(where, fields, "lun", g.num_lun)
    return g.block_index(ch, lun, field_number(where, fields, "blk", g.num_blk))


def _plane_block(where: str, fields: dict[str, str], g: Ocssd12Geometry) -> int:
    block = _block(where, fields, g)
    return block * g.num_pln + field_number(where, fields, "pln", g.num_pln)


def parse_bad_blocks(path: Path, g: Ocssd12Geometry) -> dict[int, int]:
    """plane block -> value."""
    return {_plane_block(where, fields, g): field_choice(where, fields, "state", STATES)
            for where, fields in field_lines(path, ("ch", "lun", "pln", "blk", "state"))}


def generated_bad_blocks(g: Ocssd12Geometry, frequency: int) -> dict[int, int]:
    if frequency < 1:
        raise FaultFileError(f"--bad-block-frequency {frequency}: must be at least 1")
    return {index: int(BlockValue.FACTORY)
            for index in range(frequency - 1, g.plane_blocks, frequency)}


def bad_block_table(g: Ocssd12Geometry, marked: dict[int, int]) -> bytes:
    table = bytearray(g.plane_blocks)
    for plane_block, value in marked.items():
        table[plane_block] = value
    return bytes(table)


def parse_write_fail(path: Path, g: Ocssd12Geometry) -> dict[tuple[int, int], int]:
    """(plane block, page) -> probability in percent."""
    failures = {}
    for where, fields in field_lines(path, ("ch", "lun", "pln", "blk", "pg", "writefail_prob")):
        page = (_plane_block(where, fields, g), field_number(where, fields, "pg", g.num_pg))
        failures[page] = field_number(where, fields, "writefail_prob", 101)
    return failures


def parse_reset_fail(path: Path, g: Ocssd12Geometry) -> dict[int, int]:
    """block -> probability in percent."""
    return {_block(where, fields, g): field_number(where, fields, "resetfail_prob", 101)
            for where, fields in field_lines(path, ("ch", "lun", "blk", "resetfail_prob"))}


def parse_read_fail(path: Path, g: Ocssd12Geometry) -> dict[tuple[int, int], tuple[int, int]]:
    """(plane block, page) -> (status, probability in percent)."""
    failures = {}
    for where, fields in field_lines(path, ("ch", "lun", "pln", "blk", "pg", "status",
                                       "readfail_prob")):
        page = (_plane_block(where, fields, g), field_number(where, fields, "pg", g.num_pg))
        failures[page] = (field_choice(where, fields, "status", READ_STATUSES),
                          field_number(where, fields, "readfail_prob", 101))
    return failures


def ocssd12_space(g: Ocssd12Geometry) -> AddressSpace:
    page = (AddressField("pln", g.num_pln, "plane (default: any)"),
            AddressField("pg", g.num_pg, "page (default: any)"))
    return AddressSpace(
        "block",
        (AddressField("ch", g.num_ch, "channel"), AddressField("lun", g.num_lun, "LUN"),
         AddressField("blk", g.num_blk, "block in the LUN")),
        {"write": page, "read": page, "reset": ()},
        {"read": ("ECC", "HIGH_ECC")})


READ_STATUS_NAMES = {status: name for name, status in READ_STATUSES.items()}


def faults_from_files_12(g: Ocssd12Geometry, write_fail: Path | None = None,
                         reset_fail: Path | None = None, read_fail: Path | None = None
                         ) -> list[Fault]:
    """The 1.2 start-up files' lines as faults."""
    def page(plane_block: int, pg: int) -> tuple[tuple[int, ...], tuple[int, int]]:
        block, pln = divmod(plane_block, g.num_pln)
        return g.block_position(block), (pln, pg)

    faults = []
    if write_fail is not None:
        for (plane_block, pg), probability in parse_write_fail(write_fail, g).items():
            faults.append(Fault("write", *page(plane_block, pg), probability))
    if reset_fail is not None:
        for block, probability in parse_reset_fail(reset_fail, g).items():
            faults.append(Fault("reset", g.block_position(block), (), probability))
    if read_fail is not None:
        for (plane_block, pg), (status, probability) in parse_read_fail(
                read_fail, g).items():
            faults.append(Fault("read", *page(plane_block, pg), probability,
                                status=READ_STATUS_NAMES[status]))
    return faults
