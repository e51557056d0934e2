"""NVM I/O commands on a plain namespace, from one opcode table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ocssd_vfu.nvme.command import DEFERRED, OK, Command, Result, SyncRequest, fail
from ocssd_vfu.nvme.prp import PrpError
from ocssd_vfu.nvme.queues import SubmissionQueue
from ocssd_vfu.spec.nvme import IoOpcode
from ocssd_vfu.spec.status import Status

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller


def _read_write(ctrl: Controller, cmd: Command, write: bool) -> Result:
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        return fail(Status.INVALID_NAMESPACE)
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1
    length = nlb * ns.lba_size
    if length > ctrl.page_size << ctrl.config.mdts:
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


def read(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    return _read_write(ctrl, cmd, write=False)


def write(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    return _read_write(ctrl, cmd, write=True)


def flush(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    if cmd.nsid != 0xFFFFFFFF and cmd.nsid not in ctrl.namespaces:
        return fail(Status.INVALID_NAMESPACE)
    ctrl.sync_requests.append(SyncRequest(ctrl.epoch, sq.qid, cmd.cid))
    return (DEFERRED, 0)


IO_COMMANDS: dict[int, Callable[[Controller, SubmissionQueue, Command], Result]] = {
    IoOpcode.FLUSH: flush,
    IoOpcode.WRITE: write,
    IoOpcode.READ: read,
}


def dispatch(ctrl: Controller, sq: SubmissionQueue, cmd: Command) -> Result:
    handler = IO_COMMANDS.get(cmd.opc)
    if handler is None:
        return fail(Status.INVALID_OPCODE)
    if cmd.fuse or cmd.psdt:
        return fail(Status.INVALID_FIELD)
    return handler(ctrl, sq, cmd)
