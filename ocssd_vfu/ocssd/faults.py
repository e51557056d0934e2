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
    FaultFileError,
    field_choice,
    field_lines,
    field_number,
)

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
        # The descriptor rules (an OFFLINE line's wp is ignored: the chunk gets 0xFFFF).
        for problem in chunk_problems(state, chunk_type, wp, g.num_sec, g.num_sec):
            if problem is Problem.WP_BEYOND_CNLB:
                raise FaultFileError(f"{where}: wp={wp} exceeds the chunk's {g.num_sec} sectors")
            if problem is Problem.FREE_WITH_WP:
                raise FaultFileError(f"{where}: a FREE chunk has wp=0, not {wp}")
            if problem is Problem.FULL_BUT_OPEN:
                raise FaultFileError(f"{where}: an OPEN chunk has wp < {g.num_sec}")
        if chunk_type == RANDOM and state != OPEN:  # qemu-nvme's own restriction
            raise FaultFileError(f"{where}: a W_RAN chunk must be OPEN")
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
