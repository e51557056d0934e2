"""I/O commands of an OCSSD 2.0 namespace: the vector commands (90h-92h) and the
scalar Read, Write and Dataset Management the raw block device still receives
(ocssd-spec §2.4, §2.9).

Vector command dwords: CDW4-5 MPTR (the OOB, 0 = none: contiguous, or an SGL
with PSDT 10b), DPTR the data PRPs or SGL, CDW10-11 the LBA itself when NLB = 0,
else the address of an array of NLB + 1 u64 LBAs (plain contiguous DMA, whatever
PSDT says), CDW12[15:0] NLB (0-based, at most 63).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ocssd_vfu.dma import dptr
from ocssd_vfu.dma.memory import DmaError, TransferError
from ocssd_vfu.nvme.command import Command, Result, fail
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.ocssd import MAX_VECTOR_LBAS
from ocssd_vfu.spec.status import DNR, Status

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

DULBE = 1 << 16           # Error Recovery feature: deallocated or unwritten block error
DSM_DEALLOCATE = 1 << 2   # CDW11 attribute AD
DSM_RANGE = struct.Struct("<IIQ")  # context attributes, length in LBAs (1-based), SLBA


def vector_lbas(ctrl: Controller, cmd: Command) -> list[int] | int:
    """A vector command's LBAs, or an error status."""
    nlb = (cmd.cdw12 & 0xFFFF) + 1
    if nlb > MAX_VECTOR_LBAS:
        return Status.INVALID_FIELD | DNR
    lbal = cmd.cdw10 | cmd.cdw11 << 32
    if nlb == 1:
        return [lbal]
    try:
        return list(struct.unpack(f"<{nlb}Q", ctrl.memory.read(lbal, nlb * 8)))
    except DmaError:
        return Status.DATA_TRANSFER_ERROR


def _scalar_lbas(ctrl: Controller, cmd: Command, ns: OcssdNamespace) -> list[int] | int:
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1
    if nlb * ns.lba_size > ctrl.max_transfer:
        return Status.INVALID_FIELD | DNR
    return list(range(slba, slba + nlb))


def _dulbe(ctrl: Controller) -> bool:
    return bool(ctrl.features.error_recovery & DULBE)


def vector_reset(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    lbas = vector_lbas(ctrl, cmd)
    if isinstance(lbas, int):
        return (lbas, 0)
    return ns.reset(ctrl.memory, lbas, cmd.mptr)


def vector_write(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    lbas = vector_lbas(ctrl, cmd)
    if isinstance(lbas, int):
        return (lbas, 0)
    return ns.write(ctrl.memory, ctrl.page_size, lbas, cmd)


def vector_read(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    lbas = vector_lbas(ctrl, cmd)
    if isinstance(lbas, int):
        return (lbas, 0)
    return ns.read(ctrl.memory, ctrl.page_size, lbas, cmd, _dulbe(ctrl))


def scalar_write(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    lbas = _scalar_lbas(ctrl, cmd, ns)
    if isinstance(lbas, int):
        return (lbas, 0)
    status, _ = ns.write(ctrl.memory, ctrl.page_size, lbas, cmd)
    return (status, 0)  # DW0 of a scalar command is not a per-LBA bitmap


def scalar_read(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    lbas = _scalar_lbas(ctrl, cmd, ns)
    if isinstance(lbas, int):
        return (lbas, 0)
    status, _ = ns.read(ctrl.memory, ctrl.page_size, lbas, cmd, _dulbe(ctrl))
    return (status, 0)


def dataset_management(ctrl: Controller, ns: OcssdNamespace, cmd: Command) -> Result:
    """Deallocate of whole chunks resets them (as qemu-nvme); other hints are ignored."""
    if not cmd.cdw11 & DSM_DEALLOCATE:
        return (Status.SUCCESS, 0)
    count = (cmd.cdw10 & 0xFF) + 1
    raw = bytearray(count * DSM_RANGE.size)
    try:
        dptr.transfer(ctrl.memory, cmd, ctrl.page_size, [memoryview(raw)], to_guest=False)
    except TransferError as err:
        return (err.status, 0)
    starts = []
    for _, length, slba in DSM_RANGE.iter_unpack(raw):
        where = ns.address.locate(slba)
        if where is None or where[1] != 0 or length != ns.chunks.cnlb[where[0]]:
            return fail(Status.INVALID_FIELD)  # only whole chunks can be deallocated
        starts.append(slba)
    status, _ = ns.reset(ctrl.memory, starts, 0)
    return (status, 0)
