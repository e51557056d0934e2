"""NVM I/O commands: one opcode table per namespace kind.

Flush concerns the whole controller (NSID FFFFFFFFh allowed); every other
command is looked up in its namespace's table, so an opcode a namespace kind
does not know is Invalid Opcode there (vector commands on a plain namespace).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocssd_vfu.nvme.command import DEFERRED, FUSE_PSDT, OK, Command, Result, SyncRequest, fail
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.prp import PrpError
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.ocssd import commands as ocssd
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12 import commands as ocssd12
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.nvme import IoOpcode
from ocssd_vfu.spec.status import Status

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

Handler = Callable[["Controller", Any, Command], Result]


def _read_write(ctrl: Controller, ns: PlainNamespace, cmd: Command, write: bool) -> Result:
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1
    if nlb * ns.lba_size > ctrl.max_transfer:
        return fail(Status.INVALID_FIELD)
    status = ns.check_range(slba, nlb)
    if status:
        return (status, 0)
    try:
        ns.transfer(ctrl.memory, cmd.prp1, cmd.prp2, ctrl.page_size, slba, nlb,
                    to_guest=not write)
    except PrpError as err:
        return (err.status, 0)
    return OK


def read(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    return _read_write(ctrl, ns, cmd, write=False)


def write(ctrl: Controller, ns: PlainNamespace, cmd: Command) -> Result:
    return _read_write(ctrl, ns, cmd, write=True)


def flush(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.nsid != 0xFFFFFFFF and cmd.nsid not in ctrl.namespaces:
        return fail(Status.INVALID_NAMESPACE)
    for ns in ctrl.namespaces.values():
        ns.settle()
    ctrl.sync_requests.append(SyncRequest(ctrl.epoch, sq.qid, cmd.cid))
    return (DEFERRED, 0)


IO_COMMANDS: dict[type, dict[int, Handler]] = {
    PlainNamespace: {
        IoOpcode.WRITE: write,
        IoOpcode.READ: read,
    },
    OcssdNamespace: {
        IoOpcode.WRITE: ocssd.scalar_write,
        IoOpcode.READ: ocssd.scalar_read,
        IoOpcode.DATASET_MANAGEMENT: ocssd.dataset_management,
        IoOpcode.VECTOR_CHUNK_RESET: ocssd.vector_reset,
        IoOpcode.VECTOR_CHUNK_WRITE: ocssd.vector_write,
        IoOpcode.VECTOR_CHUNK_READ: ocssd.vector_read,
    },
    Ocssd12Namespace: {  # 1.2 physical page erase, write and read share 2.0's opcodes
        IoOpcode.READ: ocssd12.scalar_read,
        IoOpcode.VECTOR_CHUNK_RESET: ocssd12.erase,
        IoOpcode.VECTOR_CHUNK_WRITE: ocssd12.write,
        IoOpcode.VECTOR_CHUNK_READ: ocssd12.read,
    },
}


KNOWN_OPCODES = {IoOpcode.FLUSH}.union(*IO_COMMANDS.values())


def dispatch(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.opc not in KNOWN_OPCODES:
        return fail(Status.INVALID_OPCODE)
    if cmd.flags & FUSE_PSDT:
        return fail(Status.INVALID_FIELD)
    if cmd.opc == IoOpcode.FLUSH:
        return flush(ctrl, sq, cmd)
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        return fail(Status.INVALID_NAMESPACE)
    handler = IO_COMMANDS[type(ns)].get(cmd.opc)
    if handler is None:
        return fail(Status.INVALID_OPCODE)
    return handler(ctrl, ns, cmd)
