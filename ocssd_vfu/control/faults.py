"""`inject-fault`'s arguments, checked against the kind's AddressSpace
(openchannel/faults.py holds the fault model the kinds ask)."""

from __future__ import annotations

from typing import Any

from ocssd_vfu.control.arguments import Arg, ArgumentError, check_arguments
from ocssd_vfu.openchannel.faults import AddressSpace, Fault


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
