"""Run-time media faults, the same for every kind that has chunks or blocks.

A fault says "the next `op` commands on this chunk (or block), or on one sector (page)
of it, fail with `probability` percent, `count` times at most". `inject-fault` adds one
while a guest runs; the start-up files (--write-fail, --reset-fail, --read-fail) load as
the same faults, so both behave alike. Kinds ask `FaultBook.fires(op, unit, detail)` per
command; with no fault for that op the answer costs one dict lookup.

Addresses come from the kind's `AddressSpace`:
- OCSSD 2.0: a chunk is grp, pu, chk; writes and reads may name a sector `sec`.
- OCSSD 1.2: a block is ch, lun, blk; writes and reads may name `pln` and `pg`
  (absent: any plane, any page); a reset is an erase of all planes. Reads may say
  which status the failure returns (`ECC`, the default, or `HIGH_ECC`).
Injecting a fault on an address that already has one for that op replaces it, as a
later line of a fault file does.

Draws: a listed fault with probability > 0 draws one number from the seeded generator
per check (a probability of 100 too), as the start-up files always did, so a given
--fault-seed replays the same failures.

The parsing of qemu-nvme's `key=value` test files, whose 2.0 and 1.2 forms differ
only in their keys (ocssd/faults.py, ocssd12/bad_blocks.py).

A malformed line is refused with file:line and the reason (FaultFileError).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPS = ("write", "read", "reset")


@dataclass(frozen=True)
class AddressField:
    name: str
    count: int
    help: str = ""


@dataclass(frozen=True)
class AddressSpace:
    """How a kind names the things that fail, and which operations it has."""

    unit: str                                          # "chunk" or "block"
    unit_fields: tuple[AddressField, ...]
    detail_fields: dict[str, tuple[AddressField, ...]]  # per op it offers (optional fields)
    statuses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # first = default
    # Whether a unit's state may be imposed at run time (set-chunk-state): the kind's
    # rules, given state and type names and a write pointer, answer (argument, why) or None.
    state_rules: Callable[[str, str, int], tuple[str, str] | None] | None = None
    # The media-feedback events a unit may report (notify-chunk's states), if any.
    notifications: tuple[str, ...] = ()

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op in OPS if op in self.detail_fields)

    def all_detail_fields(self) -> tuple[AddressField, ...]:
        seen: dict[str, AddressField] = {}
        for op in self.ops:
            for f in self.detail_fields[op]:
                seen.setdefault(f.name, f)
        return tuple(seen.values())


@dataclass
class Fault:
    op: str
    unit: tuple[int, ...]
    detail: tuple[int | None, ...]  # the op's detail fields, None = any
    probability: int = 100
    count: int | None = None        # failures left; None = no limit
    status: str | None = None

    @property
    def key(self) -> tuple[str, tuple[int, ...], tuple[int | None, ...]]:
        return self.op, self.unit, self.detail

    def describe(self, space: AddressSpace) -> dict[str, Any]:
        """The fault as `inject-fault` arguments (and `query-faults` lists it)."""
        described: dict[str, Any] = {"op": self.op}
        described.update(zip((f.name for f in space.unit_fields), self.unit, strict=True))
        described.update((f.name, value) for f, value in
                         zip(space.detail_fields[self.op], self.detail, strict=True)
                         if value is not None)
        described["probability"] = self.probability
        if self.count is not None:
            described["count"] = self.count
        if self.status is not None:
            described["status"] = self.status
        return described


class FaultBook:
    """The faults in force; `fires` is asked per command by the kinds."""

    def __init__(self, space: AddressSpace, rng: random.Random | None = None) -> None:
        self.space = space
        self.rng = rng if rng is not None else random.Random(0)
        self._by_unit: dict[tuple[str, tuple[int, ...]], list[Fault]] = {}
        self._ops: dict[str, int] = {}  # faults per op: the hot path's "any at all?"

    def add(self, fault: Fault) -> None:
        faults = self._by_unit.setdefault((fault.op, fault.unit), [])
        for i, old in enumerate(faults):
            if old.key == fault.key:
                faults[i] = fault
                return
        faults.append(fault)
        # Most specific first: a sector's fault is asked before the whole chunk's.
        faults.sort(key=lambda f: sum(value is None for value in f.detail))
        self._ops[fault.op] = self._ops.get(fault.op, 0) + 1

    def has(self, op: str) -> bool:
        return bool(self._ops.get(op))

    def faults(self) -> list[Fault]:
        return [fault for faults in self._by_unit.values() for fault in faults]

    def clear(self, op: str | None = None) -> int:
        """Remove every fault (of `op`); how many went."""
        gone = 0
        for key in [key for key in self._by_unit if op is None or key[0] == op]:
            gone += len(self._by_unit.pop(key))
            self._ops.pop(key[0], None)
        return gone

    def fires(self, op: str, unit: tuple[int, ...], detail: tuple[int, ...] = ()
              ) -> Fault | None:
        """The fault that makes this command fail, or None (a spent one is removed)."""
        if not self._ops.get(op):
            return None
        faults = self._by_unit.get((op, unit))
        if not faults:
            return None
        for fault in faults:
            if not all(want is None or want == got
                       for want, got in zip(fault.detail, detail, strict=False)):
                continue
            if fault.probability > 0 and self.rng.randrange(100) < fault.probability:
                self._spend(fault)
                return fault
        return None

    def _spend(self, fault: Fault) -> None:
        if fault.count is None:
            return
        fault.count -= 1
        if fault.count == 0:
            self._by_unit[(fault.op, fault.unit)].remove(fault)
            self._ops[fault.op] -= 1


class FaultFileError(ValueError):
    """A line of a test file that cannot be applied; the message says where and why."""


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
