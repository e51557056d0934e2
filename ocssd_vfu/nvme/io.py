"""NVM I/O command dispatch: each opcode is looked up in the table of the
namespace's kind (nvme/kind.py), so an opcode a kind does not list is Invalid
Opcode there (vector commands on a plain namespace).

Flush concerns the whole controller (NSID FFFFFFFFh allowed): every namespace
flushes its write cache, then the shell makes the image durable (a deferred
completion, posted no earlier than timed media's write buffers are programmed).
Every other command is decoded, then run, by its kind; the SMART /
Health counters add what the entry says it counts. The Effects log and ONCS are
derived from the same tables (`io_commands`), so a command cannot be dispatched
without being advertised, nor the reverse.
"""

from __future__ import annotations

from ocssd_vfu.nvme.command import DEFERRED, FUSE, PSDT, Command, Result, SyncRequest, fail_no_retry
from ocssd_vfu.nvme.kind import CommandError
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.nvme.state import ControllerState
from ocssd_vfu.spec.commands import block_count
from ocssd_vfu.spec.nvme import CommandEffects, IoOpcode
from ocssd_vfu.spec.status import DNR, Status

FLUSH_EFFECTS = CommandEffects.CSUPP


def flush(ctrl: ControllerState, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.nsid != 0xFFFFFFFF and cmd.nsid not in ctrl.namespaces:
        return fail_no_retry(Status.INVALID_NAMESPACE)
    for ns in ctrl.namespaces.values():
        ns.flush_write_cache()
    programmed = ctrl.buffers_programmed_ns(ctrl.now_ns)
    ctrl.sync_requests.append(SyncRequest(ctrl.epoch, sq.qid, cmd.cid, not_before_ns=programmed))
    return (DEFERRED, 0)


def io_commands(ctrl: ControllerState) -> dict[int, int]:
    """Opcode -> effects of every I/O command this controller's namespaces take."""
    effects: dict[int, int] = {IoOpcode.FLUSH: FLUSH_EFFECTS}
    for kind in ctrl.kinds:
        effects.update((opc, entry.effects) for opc, entry in kind.io_commands.items())
    return effects


def media_error(cmd: Command) -> int:
    """Every I/O command's status once the image is gone (ControllerState.fail_media): a
    write fault for commands that write (opcode bit 0, NVMe 1.4 6.1), else a read error."""
    return (Status.WRITE_FAULT if cmd.opc & 1 else Status.UNRECOVERED_READ) | DNR


def dispatch(ctrl: ControllerState, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.opc not in ctrl.io_opcodes:
        return fail_no_retry(Status.INVALID_OPCODE)
    psdt = cmd.flags & PSDT
    if cmd.flags & FUSE or psdt == PSDT or (psdt and not ctrl.config.sgl):  # PSDT 11b: reserved
        return fail_no_retry(Status.INVALID_FIELD)
    if cmd.opc == IoOpcode.FLUSH:
        return flush(ctrl, sq, cmd)
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        return fail_no_retry(Status.INVALID_NAMESPACE)
    entry = ns.kind.io_commands.get(cmd.opc)
    if entry is None:
        return fail_no_retry(Status.INVALID_OPCODE)
    try:
        decoded = entry.decode(ctrl, ns, cmd)
    except CommandError as err:
        return (err.status, err.result)
    ctrl.decoded = decoded  # for the tracer: what ran, as the kind decoded it
    status, result = entry.run(ctrl, ns, cmd, decoded)
    if entry.counted and not status:
        health = ctrl.health
        health.commands[entry.counted] += 1
        health.transferred[entry.counted] += block_count(cmd.cdw12) * ns.lba_size
    return (status, result)
