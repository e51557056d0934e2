"""qemu-nvme's test files (ocssd-spec §5.1), same syntax, one item per line:

    --chunk-state:  grp=G pu=P chk=C state=FREE|OPEN|CLOSED|OFFLINE type=W_SEQ|W_RAN wp=N wi=N
    --write-fail:   grp=G pu=P chk=C sec=S writefail_prob=0..100
    --reset-fail:   grp=G pu=P chk=C resetfail_prob=0..100

Every key is required; blank lines and lines starting with # are skipped. A
malformed line is refused with file:line and the reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ocssd_vfu.ocssd.chunks import (
    CLOSED,
    FREE,
    OFFLINE,
    OPEN,
    RANDOM,
    SEQUENTIAL,
    Problem,
    chunk_problems,
)
from ocssd_vfu.ocssd.geometry import OcssdGeometry


class FaultFileError(ValueError):
    """A line of a test file that cannot be applied; the message says where and why."""


@dataclass
class Faults:
    """Injected media failures (--write-fail, --reset-fail): probability in percent."""

    # 2.0: (chunk, sector) and chunk; 1.2: (plane block, page) and block
    write_fail: dict[tuple[int, int], int] = field(default_factory=dict)
    reset_fail: dict[int, int] = field(default_factory=dict)
    # OCSSD 1.2 (--read-fail): (plane block, page) -> (status, probability)
    read_fail: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def write_fails(self, chunk: int, sec: int) -> bool:
        return self._hit(self.write_fail.get((chunk, sec), 0))

    def reset_fails(self, chunk: int) -> bool:
        return self._hit(self.reset_fail.get(chunk, 0))

    def read_fails(self, unit: int, page: int) -> int:
        """The status of an injected read failure of that page, or 0."""
        status, probability = self.read_fail.get((unit, page), (0, 0))
        return status if self._hit(probability) else 0

    def _hit(self, probability: int) -> bool:
        # No draw for sectors without a failure: the sequence depends only on listed ones.
        return probability > 0 and self.rng.randrange(100) < probability


STATES = {"FREE": FREE, "OPEN": OPEN, "CLOSED": CLOSED, "OFFLINE": OFFLINE}
TYPES = {"W_SEQ": SEQUENTIAL, "W_RAN": RANDOM}


@dataclass(frozen=True)
class ChunkStateLine:
    chunk: int
    state: int
    chunk_type: int
    wp: int
    wli: int


def field_lines(path: Path, keys: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """The `key=value` lines of a test file (2.0 and 1.2 formats alike), each with where it
    is ("path:line") for error messages; every key in `keys` must be there."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FaultFileError(f"{path}: cannot read: {exc}") from exc
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields: dict[str, str] = {}
        for word in line.split():
            key, sep, value = word.partition("=")
            if not sep or not value:
                raise FaultFileError(f"{where}: {word!r} is not key=value")
            if key not in keys:
                raise FaultFileError(f"{where}: unknown key {key!r} (expected {', '.join(keys)})")
            if key in fields:
                raise FaultFileError(f"{where}: {key} given twice")
            fields[key] = value
        missing = [key for key in keys if key not in fields]
        if missing:
            raise FaultFileError(f"{where}: missing {', '.join(missing)}")
        parsed.append((where, fields))
    return parsed


def field_number(where: str, fields: dict[str, str], key: str, limit: int) -> int:
    """Field `key` as a number below `limit`, or a FaultFileError naming the line."""
    try:
        value = int(fields[key], 0)
    except ValueError:
        raise FaultFileError(f"{where}: {key}={fields[key]!r} is not a number") from None
    if not 0 <= value < limit:
        raise FaultFileError(f"{where}: {key}={value} out of range (0..{limit - 1})")
    return value


def _chunk(where: str, fields: dict[str, str], g: OcssdGeometry) -> int:
    grp = field_number(where, fields, "grp", g.num_grp)
    pu = field_number(where, fields, "pu", g.num_pu)
    chk = field_number(where, fields, "chk", g.num_chk)
    return g.chunk_index(grp, pu, chk)


def field_choice(where: str, fields: dict[str, str], key: str, choices: dict[str, int]) -> int:
    """Field `key` as one of `choices`' names, or a FaultFileError listing them."""
    value = fields[key]
    if value not in choices:
        raise FaultFileError(f"{where}: {key}={value!r}: expected one of {', '.join(choices)}")
    return choices[value]


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
