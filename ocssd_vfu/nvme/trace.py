"""`serve --trace`: one line per command, qemu-ox debug mode style (ocssd-spec §10):
queue, cid, opcode name, the addresses the namespace's kind describes (OCSSD 2.0
LBAs as grp/pu/chk/sec, 1.2 PPAs as ch/lun/blk/pl/pg/sec, a block range as SLBA
and NLB), PRPs and the completion status, then, indented, the media operations the
command became if the kind lists them (`media`: the FTL's programs, reads, GC);
`--trace-format json` gives one JSON object per line.

Only built when asked for; the controller calls it after each command runs. The
addresses are those the command ran with: the kind describes what its `decode`
returned (ControllerState.decoded), guest memory is not read again.

JSON records also carry `arrival_ns` (the command fetched), `modelled_ns` (when the
timing model completes it: serve --timing; the arrival when untimed) and
`completed_ns` (its CQE posted), CLOCK_MONOTONIC: completed - modelled is the
emulation's error for that command (README "Timing model"). A held completion is
traced when it is posted, so records are in completion order.
"""

from __future__ import annotations

import json
import logging
from typing import TextIO

from ocssd_vfu.nvme.command import DEFERRED, Command, Tracer
from ocssd_vfu.nvme.state import ControllerState
from ocssd_vfu.spec.commands import lba_range
from ocssd_vfu.spec.nvme import AdminOpcode, IoOpcode
from ocssd_vfu.spec.status import DNR, Status

SCALAR_OPCODES = {IoOpcode.READ, IoOpcode.WRITE}


log = logging.getLogger("ocssd_vfu.trace")


def opcode_name(admin: bool, opc: int) -> str:
    table: type[AdminOpcode] | type[IoOpcode] = AdminOpcode if admin else IoOpcode
    try:
        return table(opc).name
    except ValueError:
        return f"UNKNOWN_{opc:#04x}"


def status_name(status: int) -> str:
    if status == DEFERRED:
        return "DEFERRED"
    try:
        name = Status(status & ~DNR).name
    except ValueError:
        name = f"STATUS_{status & ~DNR:#06x}"
    return name + ("+DNR" if status & DNR else "")


def make_tracer(ctrl: ControllerState, out: TextIO, fmt: str) -> Tracer:
    def trace(qid: int, cmd: Command, status: int, result: int) -> None:
        record: dict[str, object] = {
            "sq": qid, "cid": cmd.cid, "opcode": opcode_name(qid == 0, cmd.opc),
            "opc": cmd.opc, "nsid": cmd.nsid}
        ns = ctrl.namespaces.get(cmd.nsid)
        if qid and ns is not None and ctrl.decoded is not None:
            record.update(type(ns).kind.describe(ns, cmd, ctrl.decoded))
        if qid and cmd.opc in SCALAR_OPCODES and "slba" not in record:
            # Refused before its kind decoded it: the NVM command set's SLBA and NLB.
            record["slba"], record["nlb"] = lba_range(cmd.cdw10, cmd.cdw11, cmd.cdw12)
        record.update(psdt=(cmd.flags >> 6) & 0x3, prp1=cmd.prp1, prp2=cmd.prp2, mptr=cmd.mptr,
                      status=status_name(status), result=result)
        if fmt == "json":
            record.update(zip(("arrival_ns", "modelled_ns", "completed_ns"), ctrl.trace_times,
                              strict=True))
        try:
            out.write((json.dumps(record) if fmt == "json" else _text(record)) + "\n")
            out.flush()
        except OSError as exc:  # a full disk, a closed pipe: serving goes on untraced
            log.warning("trace: cannot write (%s): tracing off", exc)
            ctrl.tracer = None

    return trace


def _text(record: dict[str, object]) -> str:
    parts = [f"sq {record['sq']} cid {record['cid']} {record['opcode']} nsid {record['nsid']}"]
    lbas = record.get("lbas")
    if isinstance(lbas, list):
        parts.append(f"lbas {len(lbas)} [" + ", ".join(_runs(lbas)) + "]")
    elif "slba" in record:
        parts.append(f"slba {record['slba']:#x} nlb {record['nlb']}")
    if record["psdt"]:  # an SGL: DPTR holds its first descriptor (dptr.py)
        parts.append(f"psdt {record['psdt']}")
    parts.append(f"prp1 {record['prp1']:#x} prp2 {record['prp2']:#x} mptr {record['mptr']:#x}")
    parts.append(f"-> {record['status']}")
    if record["result"]:
        parts.append(f"result {record['result']:#x}")
    media = record.get("media")
    # What a kind's command became on its media: one indented line each.
    ops = media if isinstance(media, list) else []
    return "".join([" ".join(parts), *(f"\n    {op}" for op in ops)])


def _runs(lbas: list[dict[str, int]]) -> list[str]:
    """Address fields joined by "/", with consecutive sectors (the last field) of one
    chunk or page shown as a range."""
    runs: list[list[int]] = []
    for a in lbas:
        key = [*a.values(), list(a.values())[-1]]
        if runs and runs[-1][:-2] == key[:-2] and runs[-1][-1] + 1 == key[-1]:
            runs[-1][-1] = key[-1]
        else:
            runs.append(key)
    return ["/".join(map(str, run[:-1])) + (f"-{run[-1]}" if run[-1] != run[-2] else "")
            for run in runs]
