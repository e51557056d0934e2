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
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocssd_vfu.control.arguments import Arg, ArgumentError, check_arguments
from ocssd_vfu.ocssd.faults import parse_reset_fail, parse_write_fail
from ocssd_vfu.ocssd.geometry import OcssdGeometry
from ocssd_vfu.ocssd12 import bad_blocks
from ocssd_vfu.ocssd12.geometry import Ocssd12Geometry

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

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op in OPS if op in self.detail_fields)

    def all_detail_fields(self) -> tuple[AddressField, ...]:
        seen: dict[str, AddressField] = {}
        for op in self.ops:
            for f in self.detail_fields[op]:
                seen.setdefault(f.name, f)
        return tuple(seen.values())


def ocssd20_space(g: OcssdGeometry) -> AddressSpace:
    sector = (AddressField("sec", g.num_sec, "sector within the chunk (default: any)"),)
    return AddressSpace(
        "chunk",
        (AddressField("grp", g.num_grp, "group"), AddressField("pu", g.num_pu, "PU in the group"),
         AddressField("chk", g.num_chk, "chunk in the PU")),
        {"write": sector, "read": sector, "reset": ()})


def ocssd12_space(g: Ocssd12Geometry) -> AddressSpace:
    page = (AddressField("pln", g.num_pln, "plane (default: any)"),
            AddressField("pg", g.num_pg, "page (default: any)"))
    return AddressSpace(
        "block",
        (AddressField("ch", g.num_ch, "channel"), AddressField("lun", g.num_lun, "LUN"),
         AddressField("blk", g.num_blk, "block in the LUN")),
        {"write": page, "read": page, "reset": ()},
        {"read": ("ECC", "HIGH_ECC")})


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


def fault_arguments(space: AddressSpace) -> tuple[Arg, ...]:
    """`inject-fault`'s declared arguments for this kind."""
    args = [Arg("op", str, choices=space.ops, help="the operation that fails")]
    args += [Arg(f.name, int, low=0, high=f.count - 1, help=f.help) for f in space.unit_fields]
    args += [Arg(f.name, int, optional=True, low=0, high=f.count - 1, help=f.help)
             for f in space.all_detail_fields()]
    args += [Arg("probability", int, optional=True, default=100, low=0, high=100,
                 help="percent of the matching commands that fail"),
             Arg("count", int, optional=True, low=1,
                 help="failures before the fault is spent (default: no limit)")]
    statuses = sorted({s for choices in space.statuses.values() for s in choices})
    if statuses:
        args.append(Arg("status", str, optional=True, choices=tuple(statuses),
                        help="the status of a failed read (default: "
                        + ", ".join(f"{op} {c[0]}" for op, c in space.statuses.items()) + ")"))
    return tuple(args)


def fault_from_arguments(space: AddressSpace, given: dict[str, Any]) -> Fault:
    """A fault from `inject-fault`'s arguments, or an ArgumentError naming the bad one."""
    if not space.ops:
        raise ArgumentError("op", "Parameter 'op': this device has no media operations "
                            "to fail")
    args = check_arguments(fault_arguments(space), given)
    op = args["op"]
    detail_names = [f.name for f in space.detail_fields[op]]
    for f in space.all_detail_fields():
        if f.name in args and f.name not in detail_names:
            raise ArgumentError(f.name, f"Parameter '{f.name}' is unexpected for op '{op}'")
    status = args.get("status")
    if status is not None and status not in space.statuses.get(op, ()):
        raise ArgumentError("status", f"Parameter 'status' is unexpected for op '{op}'")
    if status is None and op in space.statuses:
        status = space.statuses[op][0]
    return Fault(op, tuple(args[f.name] for f in space.unit_fields),
                 tuple(args.get(name) for name in detail_names),
                 args["probability"], args.get("count"), status)


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


READ_STATUS_NAMES = {status: name for name, status in bad_blocks.READ_STATUSES.items()}


def faults_from_files_12(g: Ocssd12Geometry, write_fail: Path | None = None,
                         reset_fail: Path | None = None, read_fail: Path | None = None
                         ) -> list[Fault]:
    """The 1.2 start-up files' lines as faults."""
    def page(plane_block: int, pg: int) -> tuple[tuple[int, ...], tuple[int, int]]:
        block, pln = divmod(plane_block, g.num_pln)
        return g.block_position(block), (pln, pg)

    faults = []
    if write_fail is not None:
        for (plane_block, pg), probability in bad_blocks.parse_write_fail(write_fail, g).items():
            faults.append(Fault("write", *page(plane_block, pg), probability))
    if reset_fail is not None:
        for block, probability in bad_blocks.parse_reset_fail(reset_fail, g).items():
            faults.append(Fault("reset", g.block_position(block), (), probability))
    if read_fail is not None:
        for (plane_block, pg), (status, probability) in bad_blocks.parse_read_fail(
                read_fail, g).items():
            faults.append(Fault("read", *page(plane_block, pg), probability,
                                status=READ_STATUS_NAMES[status]))
    return faults
