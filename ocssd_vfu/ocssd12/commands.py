"""Commands of an OCSSD 1.2 namespace (ocssd-spec §3.3, §3.4).

I/O: physical page erase 90h, write 91h, read 92h (the 2.0 vector commands'
dwords: CDW10-11 the PPA itself when NLB = 0, else the address of NLB + 1 u64
PPAs; MPTR the OOB buffer; CDW12[31:16] the control word, whose bits 1:0 are the
plane mode), and NVMe Read 02h of the raw namespace. The bad-block table
commands are admin commands (nvme/admin.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocssd_vfu.nvme.command import Command, Result, fail
from ocssd_vfu.ocssd.commands import vector_lbas
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.status import Status

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller


def _control(cmd: Command) -> int:
    return cmd.cdw12 >> 16


def erase(ctrl: Controller, ns: Ocssd12Namespace, cmd: Command) -> Result:
    ppas = vector_lbas(ctrl, cmd)
    if isinstance(ppas, int):
        return (ppas, 0)
    return ns.erase(ppas, _control(cmd))


def write(ctrl: Controller, ns: Ocssd12Namespace, cmd: Command) -> Result:
    ppas = vector_lbas(ctrl, cmd)
    if isinstance(ppas, int):
        return (ppas, 0)
    return ns.write(ctrl.memory, ctrl.page_size, ppas, cmd, _control(cmd))


def read(ctrl: Controller, ns: Ocssd12Namespace, cmd: Command) -> Result:
    ppas = vector_lbas(ctrl, cmd)
    if isinstance(ppas, int):
        return (ppas, 0)
    return ns.read(ctrl.memory, ctrl.page_size, ppas, cmd, _control(cmd))


def scalar_read(ctrl: Controller, ns: Ocssd12Namespace, cmd: Command) -> Result:
    slba, nlb = cmd.cdw10 | cmd.cdw11 << 32, (cmd.cdw12 & 0xFFFF) + 1
    if nlb * ns.lba_size > ctrl.max_transfer:
        return fail(Status.INVALID_FIELD)
    return (ns.read_linear(ctrl.memory, ctrl.page_size, slba, nlb, cmd), 0)
