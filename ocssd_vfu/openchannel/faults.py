"""Fault injection shared by both Open-Channel kinds: the injected failures a
namespace draws from (--write-fail, --reset-fail, 1.2's --read-fail) and the
parsing of qemu-nvme's `key=value` test files, whose 2.0 and 1.2 forms differ
only in their keys (ocssd/faults.py, ocssd12/bad_blocks.py).

A malformed line is refused with file:line and the reason (FaultFileError).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path


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


def field_choice(where: str, fields: dict[str, str], key: str, choices: dict[str, int]) -> int:
    """Field `key` as one of `choices`' names, or a FaultFileError listing them."""
    value = fields[key]
    if value not in choices:
        raise FaultFileError(f"{where}: {key}={value!r}: expected one of {', '.join(choices)}")
    return choices[value]
