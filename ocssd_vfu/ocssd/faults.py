"""qemu-nvme's test files (ocssd-spec §5.1), same syntax, one item per line:

    --chunk-state:  grp=G pu=P chk=C state=FREE|OPEN|CLOSED|OFFLINE type=W_SEQ|W_RAN wp=N wi=N
    --write-fail:   grp=G pu=P chk=C sec=S writefail_prob=0..100
    --reset-fail:   grp=G pu=P chk=C resetfail_prob=0..100

Every key is required; blank lines and lines starting with # are skipped. A
malformed line is refused with file:line and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.ocssd.chunk_states import CLOSED, FREE, OFFLINE, OPEN
from ocssd_vfu.ocssd.chunks import RANDOM, SEQUENTIAL, Problem, chunk_problems
from ocssd_vfu.openchannel.faults import (
    AddressField,
    AddressSpace,
    Fault,
    FaultFileError,
    field_choice,
    field_lines,
    field_number,
)
from ocssd_vfu.spec.ocssd import NotificationState

STATES = {"FREE": FREE, "OPEN": OPEN, "CLOSED": CLOSED, "OFFLINE": OFFLINE}
TYPES = {"W_SEQ": SEQUENTIAL, "W_RAN": RANDOM}


@dataclass(frozen=True)
class ChunkStateLine:
    chunk: int
    state: int
    chunk_type: int
    wp: int
    wli: int


def _chunk(where: str, fields: dict[str, str], g: OcssdGeometry) -> int:
    grp = field_number(where, fields, "grp", g.num_grp)
    pu = field_number(where, fields, "pu", g.num_pu)
    chk = field_number(where, fields, "chk", g.num_chk)
    return g.chunk_index(grp, pu, chk)


def parse_chunk_states(path: Path, g: OcssdGeometry) -> list[ChunkStateLine]:
    lines = []
    for where, fields in field_lines(path, ("grp", "pu", "chk", "state", "type", "wp", "wi")):
        chunk = _chunk(where, fields, g)
        state = field_choice(where, fields, "state", STATES)
        chunk_type = field_choice(where, fields, "type", TYPES)
        wp = field_number(where, fields, "wp", 1 << 64)
        wli = field_number(where, fields, "wi", 256)
        refused = chunk_state_refusal(fields["state"], fields["type"], wp, g.num_sec)
        if refused is not None:
            raise FaultFileError(f"{where}: {refused[1]}")
        lines.append(ChunkStateLine(chunk, state, chunk_type, wp, wli))
    return lines


def parse_write_fail(path: Path, g: OcssdGeometry) -> dict[tuple[int, int], int]:
    failures = {}
    for where, fields in field_lines(path, ("grp", "pu", "chk", "sec", "writefail_prob")):
        sector = (_chunk(where, fields, g), field_number(where, fields, "sec", g.num_sec))
        failures[sector] = field_number(where, fields, "writefail_prob", 101)
    return failures


def parse_reset_fail(path: Path, g: OcssdGeometry) -> dict[int, int]:
    failures = {}
    for where, fields in field_lines(path, ("grp", "pu", "chk", "resetfail_prob")):
        failures[_chunk(where, fields, g)] = field_number(where, fields, "resetfail_prob", 101)
    return failures


def chunk_state_refusal(state: str, chunk_type: str, wp: int, clba: int
                        ) -> tuple[str, str] | None:
    """Why a chunk cannot be put in this state (the argument to blame, the reason), or
    None: the descriptor rules (an OFFLINE chunk's wp is ignored: it gets 0xFFFF) and
    qemu-nvme's own restriction on W_RAN chunks."""
    for problem in chunk_problems(STATES[state], TYPES[chunk_type], wp, clba, clba):
        if problem is Problem.WP_BEYOND_CNLB:
            return "wp", f"wp={wp} exceeds the chunk's {clba} sectors"
        if problem is Problem.FREE_WITH_WP:
            return "wp", f"a FREE chunk has wp=0, not {wp}"
        if problem is Problem.FULL_BUT_OPEN:
            return "wp", f"an OPEN chunk has wp < {clba}"
    if chunk_type == "W_RAN" and state != "OPEN":
        return "type", "a W_RAN chunk must be OPEN"
    return None


def ocssd20_space(g: OcssdGeometry) -> AddressSpace:
    sector = (AddressField("sec", g.num_sec, "sector within the chunk (default: any)"),)
    return AddressSpace(
        "chunk",
        (AddressField("grp", g.num_grp, "group"), AddressField("pu", g.num_pu, "PU in the group"),
         AddressField("chk", g.num_chk, "chunk in the PU")),
        {"write": sector, "read": sector, "reset": ()},
        state_rules=lambda state, chunk_type, wp: chunk_state_refusal(
            state, chunk_type, wp, g.num_sec),
        notifications=tuple(NotificationState.__members__))


def faults_from_files_20(g: OcssdGeometry, write_fail: Path | None = None,
                         reset_fail: Path | None = None) -> list[Fault]:
    """The 2.0 start-up files' lines as faults (their parser checks the lines)."""
    faults = []
    if write_fail is not None:
        for (chunk, sec), probability in parse_write_fail(write_fail, g).items():
            faults.append(Fault("write", g.chunk_position(chunk), (sec,), probability))
    if reset_fail is not None:
        for chunk, probability in parse_reset_fail(reset_fail, g).items():
            faults.append(Fault("reset", g.chunk_position(chunk), (), probability))
    return faults
