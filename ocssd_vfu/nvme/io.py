"""NVM I/O commands: one opcode table per namespace kind.

Flush concerns the whole controller (NSID FFFFFFFFh allowed); every other
command is looked up in its namespace's table, so an opcode a namespace kind
does not know is Invalid Opcode there (vector commands on a plain namespace).
Each entry carries its Commands Supported and Effects bits (log page 05h) and
whether it counts as a host read or write in the SMART / Health log, so a
command cannot be dispatched without being advertised, nor the reverse.

Plain namespaces: Read, Write and Compare move data through `move_data` and
metadata through MPTR (separate buffer) or within the data (extended LBA);
Write Zeroes (DEAC deallocates), Dataset Management (deallocate) and Write
Uncorrectable carry no data. Every check runs before any byte moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ocssd_vfu.nvme import dptr
from ocssd_vfu.nvme.command import DEFERRED, FUSE, OK, PSDT, Command, Result, SyncRequest, fail
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE, NOT_COUNTED
from ocssd_vfu.nvme.memory import TransferError
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.ocssd import commands as ocssd
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12 import commands as ocssd12
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.nvme import DSM_RANGE_FORMAT, CommandEffects, IoOpcode
from ocssd_vfu.spec.status import DNR, Status

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

Handler = Callable[["Controller", Any, Command], Result]

DULBE = 1 << 16                   # Error Recovery feature (05h), CDW11
WRITE_ZEROES_DEAC = 1 << 25       # CDW12
DSM_DEALLOCATE = 1 << 2           # CDW11 attribute AD

READS = CommandEffects.CSUPP
CHANGES = CommandEffects.CSUPP | CommandEffects.LBCC


class IoCommand(NamedTuple):
    handler: Handler
    effects: int
    counted: int = NOT_COUNTED    # HOST_READ / HOST_WRITE in the SMART / Health log


def move_data(ctrl: Controller, cmd: Command, device: list[memoryview], to_guest: bool) -> int:
    """The one place a plain I/O command's data pointer is walked: a status."""
    try:
        dptr.transfer(ctrl.memory, cmd, ctrl.page_size, device, to_guest)
    except TransferError as err:
        return err.status
    return Status.SUCCESS


def _decode(cmd: Command) -> tuple[int, int]:
    """SLBA (CDW10-11) and NLB (CDW12, 0-based)."""
    return cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1


def _check_transfer(ctrl: Controller, ns: PlainNamespace, slba: int, nlb: int) -> int:
    """A data transfer's range: within MDTS (metadata included in an extended format),
    within the namespace."""
    if nlb * ns.host_block_size > ctrl.max_transfer:
        return Status.INVALID_FIELD | DNR
    if slba + nlb > ns.nlbas:
        return Status.LBA_OUT_OF_RANGE | DNR
    return Status.SUCCESS


def _check_read(ctrl: Controller, ns: PlainNamespace, slba: int, nlb: int) -> int:
    status = _check_transfer(ctrl, ns, slba, nlb)
    dulbe = ctrl.features.error_recovery & DULBE
    if not status and (ns.uncorrectable or dulbe):
        status = ns.check_readable(slba, nlb, bool(dulbe))
    return status


def _move_blocks(ctrl: Controller, ns: PlainNamespace, cmd: Command, slba: int, nlb: int,
                 to_guest: bool) -> int:
    """Data and metadata of a checked range between the host's buffers and the blocks
    (an MPTR of 0 is no metadata buffer: reads deliver none, writes keep the stored one)."""
    if not ns.md_size or (not ns.extended and not cmd.mptr):
        return move_data(ctrl, cmd, [ns.data(slba, nlb)], to_guest)
    if ns.extended:
        return move_data(ctrl, cmd, ns.host_segments(slba, nlb), to_guest)
    status, metadata = dptr.move(ctrl.memory, cmd, ctrl.page_size, [ns.data(slba, nlb)],
                                 nlb * ns.md_size, to_guest)
    if status:
        return status
    assert metadata is not None  # MPTR is not 0
    if to_guest:
        metadata.view[:] = ns.metadata(slba, nlb)
        metadata.commit()
    else:
        ns.metadata(slba, nlb)[:] = metadata.view
    return Status.SUCCESS


def read(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1  # _decode, inlined
    status = _check_read(ctrl, ns, slba, nlb)
    if status:
        return (status, 0)
    return (_move_blocks(ctrl, ns, cmd, slba, nlb, to_guest=True), 0)


def write(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1  # _decode, inlined
    status = _check_transfer(ctrl, ns, slba, nlb) or ns.reserve(slba, nlb) or \
        _move_blocks(ctrl, ns, cmd, slba, nlb, to_guest=False)
    if not status and ns.uncorrectable:
        ns.written(slba, nlb)
    return (status, 0)


def compare(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    """The host's buffer (and separate metadata, unless MPTR is 0) against the blocks:
    Compare Failure if any byte differs."""
    slba, nlb = _decode(cmd)
    status = _check_read(ctrl, ns, slba, nlb)
    if status:
        return (status, 0)
    host = bytearray(nlb * ns.host_block_size)
    separate_metadata = 0 if ns.extended else nlb * ns.md_size
    status, metadata = dptr.move(ctrl.memory, cmd, ctrl.page_size, [memoryview(host)],
                                 separate_metadata, to_guest=False)
    if status:
        return (status, 0)
    if host != b"".join(ns.host_segments(slba, nlb)) or (
            metadata is not None and metadata.view != ns.metadata(slba, nlb)):
        return fail(Status.COMPARE_FAILURE)
    return OK


def write_zeroes(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    slba, nlb = _decode(cmd)
    status = ns.check_range(slba, nlb)
    if status:
        return (status, 0)
    if cmd.cdw12 & WRITE_ZEROES_DEAC:
        ns.deallocate(slba, nlb)
    else:
        status = ns.reserve(slba, nlb)
        if status:
            return (status, 0)
        ns.zero(slba, nlb)
    return OK


def write_uncorrectable(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    slba, nlb = _decode(cmd)
    status = ns.check_range(slba, nlb)
    if status:
        return (status, 0)
    ns.make_uncorrectable(slba, nlb)
    return OK


def dataset_management(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    """Deallocate every range (all checked first); other attributes are hints, ignored."""
    if not cmd.cdw11 & DSM_DEALLOCATE:
        return OK
    raw = bytearray(((cmd.cdw10 & 0xFF) + 1) * DSM_RANGE_FORMAT.size)
    status = move_data(ctrl, cmd, [memoryview(raw)], to_guest=False)
    if status:
        return (status, 0)
    ranges = [(slba, length) for _, length, slba in DSM_RANGE_FORMAT.iter_unpack(raw) if length]
    if any(ns.check_range(slba, length) for slba, length in ranges):
        return fail(Status.LBA_OUT_OF_RANGE)
    for slba, length in ranges:
        ns.deallocate(slba, length)
    return OK


def flush(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.nsid != 0xFFFFFFFF and cmd.nsid not in ctrl.namespaces:
        return fail(Status.INVALID_NAMESPACE)
    for ns in ctrl.namespaces.values():
        ns.settle()
    ctrl.sync_requests.append(SyncRequest(ctrl.epoch, sq.qid, cmd.cid))
    return (DEFERRED, 0)


FLUSH_EFFECTS = CommandEffects.CSUPP

IO_COMMANDS: dict[type, dict[int, IoCommand]] = {
    PlainNamespace: {
        IoOpcode.WRITE: IoCommand(write, CHANGES, HOST_WRITE),
        IoOpcode.READ: IoCommand(read, READS, HOST_READ),
        IoOpcode.WRITE_UNCORRECTABLE: IoCommand(write_uncorrectable, CHANGES),
        IoOpcode.COMPARE: IoCommand(compare, READS, HOST_READ),
        IoOpcode.WRITE_ZEROES: IoCommand(write_zeroes, CHANGES),
        IoOpcode.DATASET_MANAGEMENT: IoCommand(dataset_management, CHANGES),
    },
    # Chunks are written at their write pointer only: Write Zeroes and Write Uncorrectable
    # (in-place writes) have no meaning there, and OCSSD 2.0 lists no Compare.
    OcssdNamespace: {
        IoOpcode.WRITE: IoCommand(ocssd.scalar_write, CHANGES, HOST_WRITE),
        IoOpcode.READ: IoCommand(ocssd.scalar_read, READS, HOST_READ),
        IoOpcode.DATASET_MANAGEMENT: IoCommand(ocssd.dataset_management, CHANGES),
        IoOpcode.VECTOR_CHUNK_RESET: IoCommand(ocssd.vector_reset, CHANGES),
        IoOpcode.VECTOR_CHUNK_WRITE: IoCommand(ocssd.vector_write, CHANGES, HOST_WRITE),
        IoOpcode.VECTOR_CHUNK_READ: IoCommand(ocssd.vector_read, READS, HOST_READ),
    },
    Ocssd12Namespace: {  # 1.2 physical page erase, write and read share 2.0's opcodes
        IoOpcode.READ: IoCommand(ocssd12.scalar_read, READS, HOST_READ),
        IoOpcode.VECTOR_CHUNK_RESET: IoCommand(ocssd12.erase, CHANGES),
        IoOpcode.VECTOR_CHUNK_WRITE: IoCommand(ocssd12.write, CHANGES, HOST_WRITE),
        IoOpcode.VECTOR_CHUNK_READ: IoCommand(ocssd12.read, READS, HOST_READ),
    },
}


KNOWN_OPCODES = {IoOpcode.FLUSH}.union(*IO_COMMANDS.values())


def io_commands(ctrl: Controller) -> dict[int, int]:
    """Opcode -> effects of every I/O command this controller's namespaces take."""
    effects: dict[int, int] = {IoOpcode.FLUSH: FLUSH_EFFECTS}
    for kind in {type(ns) for ns in ctrl.namespaces.values()}:
        effects.update((opc, entry.effects) for opc, entry in IO_COMMANDS[kind].items())
    return effects


def media_error(cmd: Command) -> int:
    """Every I/O command's status once the image is gone (Controller.fail_media): a
    write fault for commands that write (opcode bit 0, NVMe 1.4 6.1), else a read error."""
    return (Status.WRITE_FAULT if cmd.opc & 1 else Status.UNRECOVERED_READ) | DNR


def dispatch(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.opc not in KNOWN_OPCODES:
        return fail(Status.INVALID_OPCODE)
    psdt = cmd.flags & PSDT
    if cmd.flags & FUSE or psdt == PSDT or (psdt and not ctrl.config.sgl):  # PSDT 11b: reserved
        return fail(Status.INVALID_FIELD)
    if cmd.opc == IoOpcode.FLUSH:
        return flush(ctrl, sq, cmd)
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        return fail(Status.INVALID_NAMESPACE)
    entry = IO_COMMANDS[type(ns)].get(cmd.opc)
    if entry is None:
        return fail(Status.INVALID_OPCODE)
    status, result = entry.handler(ctrl, ns, cmd)
    if entry.counted and not status:  # two adds, no call: this runs for every I/O
        health = ctrl.health
        health.commands[entry.counted] += 1
        health.transferred[entry.counted] += ((cmd.cdw12 & 0xFFFF) + 1) * ns.lba_size
    return (status, result)
