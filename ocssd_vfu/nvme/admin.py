"""Admin commands: one table maps each opcode to its handler and its Commands
Supported and Effects bits (an opcode missing from it, or not offered by this
controller, is Invalid Opcode; log page 05h and OACS come from the same table,
`offered=` included). The namespace kinds of this controller add their own admin
commands and log pages (nvme/kind.py): OCSSD Geometry, bad-block tables, Format
NVM, Chunk Information. Handlers return (status, result) and never raise for
guest input; features are in features.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ocssd_vfu.dma import dptr
from ocssd_vfu.dma.memory import DmaError
from ocssd_vfu.nvme import features, health, io
from ocssd_vfu.nvme.capabilities import MQES, VERSION
from ocssd_vfu.nvme.command import DEFERRED, FUSE, OK, PSDT, Command, Result, fail_no_retry
from ocssd_vfu.nvme.doorbells import EVENTIDX_NEVER, ShadowDoorbells
from ocssd_vfu.nvme.kind import to_host
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.nvme.state import ControllerState
from ocssd_vfu.spec.commands import (
    CreateIoCqCdw11,
    CreateIoSqCdw11,
    GetLogPageCdw10,
    GetLogPageCdw11,
    IdentifyCdw10,
    QueueCdw10,
)
from ocssd_vfu.spec.nvme import (
    CQE_SIZE,
    IDENTIFY_SIZE,
    SQE_SIZE,
    AdminOpcode,
    CommandEffects,
    CommandsSupportedAndEffectsLog,
    FirmwareSlotLog,
    IdentifyCns,
    IdentifyController,
    IoOpcode,
    LogPageId,
    NamespaceDescriptorHeader,
    Oacs,
    Oncs,
    blank,
)
from ocssd_vfu.spec.status import DNR, Status

NIDT_UUID = 3


log = logging.getLogger("ocssd_vfu.nvme")

AER_LIMIT = 4           # AERL + 1



# -- Identify -----------------------------------------------------------------------------
# Optional commands are advertised exactly when the dispatch tables hold them.
OACS_BITS: dict[int, int] = {
    AdminOpcode.FORMAT_NVM: Oacs.FORMAT_NVM,
    AdminOpcode.DOORBELL_BUFFER_CONFIG: Oacs.DOORBELL_BUFFER_CONFIG,
}
ONCS_BITS: dict[int, int] = {
    IoOpcode.COMPARE: Oncs.COMPARE,
    IoOpcode.WRITE_UNCORRECTABLE: Oncs.WRITE_UNCORRECTABLE,
    IoOpcode.DATASET_MANAGEMENT: Oncs.DATASET_MANAGEMENT,
    IoOpcode.WRITE_ZEROES: Oncs.WRITE_ZEROES,
}
LPA_EFFECTS_LOG = 1 << 1
LPA_EXTENDED_DATA = 1 << 2


def _bits(table: Mapping[int, int], opcodes: Mapping[int, int]) -> int:
    return sum(bit for opc, bit in table.items() if opc in opcodes)


def identify_controller(ctrl: ControllerState) -> bytes:
    cfg = ctrl.config
    ident = blank(IdentifyController)
    ident.update(dict(
        vid=cfg.vid, ssvid=cfg.ssvid, sn=cfg.serial.encode().ljust(20)[:20],
        mn=cfg.model.encode().ljust(40)[:40], fr=cfg.firmware.encode().ljust(8)[:8],
        rab=6, ieee=b"\x00\x54\x52", mdts=cfg.mdts, ver=VERSION, cntrltype=1,
        oacs=_bits(OACS_BITS, admin_commands(ctrl)),
        oncs=Oncs.SAVE_AND_SELECT | _bits(ONCS_BITS, io.io_commands(ctrl)),
        acl=3, aerl=AER_LIMIT - 1, frmw=0x3, lpa=LPA_EFFECTS_LOG | LPA_EXTENDED_DATA,
        wctemp=health.WARNING_TEMPERATURE, cctemp=health.CRITICAL_TEMPERATURE,
        sqes=0x66, cqes=0x44, nn=max(ctrl.namespaces, default=0), vwc=1,
        sgls=dptr.SGLS if cfg.sgl else 0,
        subnqn=f"nqn.2026-11.io.ocssd-vfu:{cfg.serial}".encode().ljust(256, b"\0")))
    ident.psd[0].mp = 2500  # power state 0: 25 W
    return IdentifyController.build(ident)


def namespace_uuid(ctrl: ControllerState, nsid: int) -> bytes:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ocssd-vfu:{ctrl.config.serial}:{nsid}").bytes


def identify(ctrl: ControllerState, cmd: Command) -> Result:
    cns = IdentifyCdw10.get(cmd.cdw10, "cns")
    if cns == IdentifyCns.CONTROLLER:
        return to_host(ctrl, cmd, identify_controller(ctrl))
    if cns == IdentifyCns.NAMESPACE:
        ns = ctrl.namespaces.get(cmd.nsid)
        if ns is None:
            return fail_no_retry(Status.INVALID_NAMESPACE)
        return to_host(ctrl, cmd, ns.identify())
    if cns == IdentifyCns.ACTIVE_NAMESPACES:
        if cmd.nsid >= 0xFFFFFFFE:
            return fail_no_retry(Status.INVALID_NAMESPACE)
        ids = sorted(n for n in ctrl.namespaces if n > cmd.nsid)[:1024]
        data = b"".join(n.to_bytes(4, "little") for n in ids)
        return to_host(ctrl, cmd, data.ljust(IDENTIFY_SIZE, b"\0"))
    if cns == IdentifyCns.NAMESPACE_DESCRIPTORS:
        if cmd.nsid not in ctrl.namespaces:
            return fail_no_retry(Status.INVALID_NAMESPACE)
        descriptor = NamespaceDescriptorHeader.build(dict(nidt=NIDT_UUID, nidl=16)) \
            + namespace_uuid(ctrl, cmd.nsid)
        return to_host(ctrl, cmd, descriptor.ljust(IDENTIFY_SIZE, b"\0"))
    return fail_no_retry(Status.INVALID_FIELD)


# -- Queues -------------------------------------------------------------------------------
def _new_queue(ctrl: ControllerState, cmd: Command, existing: Mapping[int, object],
               entry_size: int) -> tuple[int, int, int]:
    """Create I/O CQ/SQ's common part: (status, qid, size) from CDW10, with the
    queue id free, the size within MQES, and the ring (PRP1, physically
    contiguous: CDW11.PC) page aligned and mapped in one guest region."""
    queue = QueueCdw10.parse(cmd.cdw10)
    qid, size, base = queue.qid, queue.qsize + 1, cmd.prp1
    if qid == 0 or qid > ctrl.config.io_queue_pairs or qid in existing:
        return (Status.INVALID_QID | DNR, qid, size)
    if size < 2 or size > MQES + 1:
        return (Status.INVALID_QUEUE_SIZE | DNR, qid, size)
    if not CreateIoCqCdw11.get(cmd.cdw11, "pc"):  # PC: bit 0 in both Create commands
        return (Status.INVALID_FIELD | DNR, qid, size)
    if base == 0 or base & (ctrl.page_size - 1):
        return (Status.INVALID_PRP_OFFSET | DNR, qid, size)
    try:
        ctrl.memory.view(base, size * entry_size)
    except DmaError:
        return (Status.INVALID_FIELD | DNR, qid, size)
    return (Status.SUCCESS, qid, size)


def create_io_cq(ctrl: ControllerState, cmd: Command) -> Result:
    status, qid, size = _new_queue(ctrl, cmd, ctrl.cqs, CQE_SIZE)
    if status:
        return (status, 0)
    fields = CreateIoCqCdw11.parse(cmd.cdw11)
    ien, vector = bool(fields.ien), fields.iv
    if vector >= ctrl.config.msix_vectors:
        return fail_no_retry(Status.INVALID_INTERRUPT_VECTOR)
    ctrl.cqs[qid] = CompletionQueue(qid, cmd.prp1, size, vector, ien)
    ctrl.io_queues_created = True
    queue_created(ctrl, qid, cq=True)
    return OK


def create_io_sq(ctrl: ControllerState, cmd: Command) -> Result:
    cqid = CreateIoSqCdw11.get(cmd.cdw11, "cqid")
    cq = ctrl.cqs.get(cqid)
    if cqid == 0 or cq is None:
        return fail_no_retry(Status.INVALID_CQ)
    status, qid, size = _new_queue(ctrl, cmd, ctrl.sqs, SQE_SIZE)
    if status:
        return (status, 0)
    ctrl.sqs[qid] = SubmissionQueue.bound_to(cq, qid, cmd.prp1, size)
    ctrl.io_queues_created = True
    queue_created(ctrl, qid, cq=False)
    return OK


def delete_io_sq(ctrl: ControllerState, cmd: Command) -> Result:
    qid = QueueCdw10.get(cmd.cdw10, "qid")
    sq = ctrl.sqs.get(qid)
    if qid == 0 or sq is None:
        return fail_no_retry(Status.INVALID_QID)
    del ctrl.sqs[qid]
    ctrl.pending.discard(qid)
    sq.cq.reserved -= sq.held  # its held completions are dropped (controller._post_held)
    sq.unbind()
    return OK


def delete_io_cq(ctrl: ControllerState, cmd: Command) -> Result:
    qid = QueueCdw10.get(cmd.cdw10, "qid")
    cq = ctrl.cqs.get(qid)
    if qid == 0 or cq is None:
        return fail_no_retry(Status.INVALID_QID)
    if cq.sqs:
        return fail_no_retry(Status.INVALID_QUEUE_DELETION)
    del ctrl.cqs[qid]
    return OK


# -- Doorbell Buffer Config (doorbells.py has the rules) -------------------------------
def doorbell_buffer_config(ctrl: ControllerState, cmd: Command) -> Result:
    mask = ctrl.page_size - 1
    if not cmd.prp1 or not cmd.prp2 or cmd.prp1 & mask or cmd.prp2 & mask:
        return fail_no_retry(Status.INVALID_FIELD)
    shadow = ShadowDoorbells(cmd.prp1, cmd.prp2, 8 * (ctrl.config.io_queue_pairs + 1))
    try:
        shadow.pages(ctrl.memory)
        for qid, sq in ctrl.sqs.items():
            if qid:
                shadow.write(ctrl.memory, qid, False, sq.tail)
                shadow.arm(ctrl.memory, qid, False, sq.tail)
        for qid, cq in ctrl.cqs.items():
            if qid:
                shadow.write(ctrl.memory, qid, True, cq.head)
                shadow.arm(ctrl.memory, qid, True, EVENTIDX_NEVER)
    except DmaError:
        return (Status.DATA_TRANSFER_ERROR, 0)
    ctrl.shadow = shadow
    return OK


def queue_created(ctrl: ControllerState, qid: int, cq: bool) -> None:
    if ctrl.shadow is not None:
        try:
            ctrl.shadow.write(ctrl.memory, qid, cq, 0)
            ctrl.shadow.arm(ctrl.memory, qid, cq, 0)
        except DmaError:
            ctrl.lose_shadow_doorbells()


# -- Log pages ----------------------------------------------------------------------------
def smart_log(ctrl: ControllerState) -> bytes:
    return ctrl.health.log(ctrl.features.temperature_over, ctrl.features.temperature_under)


def firmware_slot_log(ctrl: ControllerState) -> bytes:
    """One slot, active, holding this controller's firmware revision."""
    page = blank(FirmwareSlotLog)
    page.afi = 1
    page.frs[0] = ctrl.config.firmware.encode().ljust(8)[:8]
    return FirmwareSlotLog.build(page)


def effects_log(ctrl: ControllerState) -> bytes:
    page = blank(CommandsSupportedAndEffectsLog)
    for opc, effects in admin_commands(ctrl).items():
        page.acs[opc] = effects
    for opc, effects in io.io_commands(ctrl).items():
        page.iocs[opc] = effects
    return CommandsSupportedAndEffectsLog.build(page)


LOG_PAGES: dict[int, Callable[[ControllerState], bytes]] = {
    LogPageId.ERROR_INFORMATION: lambda ctrl: bytes(64),
    LogPageId.SMART_HEALTH: smart_log,
    LogPageId.FIRMWARE_SLOT: firmware_slot_log,
    LogPageId.COMMANDS_SUPPORTED_EFFECTS: effects_log,
}
CONTROLLER_LOGS = {LogPageId.SMART_HEALTH}  # no per-namespace SMART (LPA bit 0 clear)


def get_log_page(ctrl: ControllerState, cmd: Command) -> Result:
    lid = GetLogPageCdw10.get(cmd.cdw10, "lid")
    numd = (GetLogPageCdw10.get(cmd.cdw10, "numdl")
            | GetLogPageCdw11.get(cmd.cdw11, "numdu") << 16) + 1
    offset = cmd.cdw12 | cmd.cdw13 << 32  # LPOL, LPOU
    if numd * 4 > ctrl.max_transfer:  # MDTS; NUMD reaches 16 GiB, never allocated
        return fail_no_retry(Status.INVALID_FIELD)
    kind_page = ctrl.kind_log_pages.get(lid)
    if kind_page is not None:
        return kind_page(ctrl, cmd, offset, numd * 4)
    page = LOG_PAGES.get(lid)
    if page is None:
        return fail_no_retry(Status.INVALID_LOG_PAGE)
    if lid in CONTROLLER_LOGS and cmd.nsid not in (0, 0xFFFFFFFF):
        return fail_no_retry(Status.INVALID_FIELD)
    data = page(ctrl)
    if offset & 0x3 or offset > len(data):
        return fail_no_retry(Status.INVALID_FIELD)
    return to_host(ctrl, cmd, data[offset:offset + numd * 4].ljust(numd * 4, b"\0"))


# -- The rest -----------------------------------------------------------------------------
def async_event_request(ctrl: ControllerState, cmd: Command) -> Result:
    if len(ctrl.aer_cids) >= AER_LIMIT:
        return fail_no_retry(Status.ASYNC_EVENT_LIMIT_EXCEEDED)
    if ctrl.async_events:  # an event waited for this request
        return (Status.SUCCESS, ctrl.async_events.pop(0))
    ctrl.aer_cids.append(cmd.cid)
    return (DEFERRED, 0)


def abort(ctrl: ControllerState, cmd: Command) -> Result:
    return (Status.SUCCESS, 1)  # dw0 bit 0: command not aborted (all run to completion)


def _always(ctrl: ControllerState) -> bool:
    return True


class AdminCommand(NamedTuple):
    handler: Callable[[ControllerState, Command], Result]
    effects: int
    offered: Callable[[ControllerState], bool] = _always   # else Invalid Opcode, and not in 05h


ADMIN = CommandEffects.CSUPP
ADMIN_COMMANDS: dict[int, AdminCommand] = {
    AdminOpcode.DELETE_IO_SQ: AdminCommand(delete_io_sq, ADMIN),
    AdminOpcode.CREATE_IO_SQ: AdminCommand(create_io_sq, ADMIN),
    AdminOpcode.GET_LOG_PAGE: AdminCommand(get_log_page, ADMIN),
    AdminOpcode.DELETE_IO_CQ: AdminCommand(delete_io_cq, ADMIN),
    AdminOpcode.CREATE_IO_CQ: AdminCommand(create_io_cq, ADMIN),
    AdminOpcode.IDENTIFY: AdminCommand(identify, ADMIN),
    AdminOpcode.ABORT: AdminCommand(abort, ADMIN),
    AdminOpcode.SET_FEATURES: AdminCommand(features.set_features, ADMIN),
    AdminOpcode.GET_FEATURES: AdminCommand(features.get_features, ADMIN),
    AdminOpcode.ASYNC_EVENT_REQUEST: AdminCommand(async_event_request, ADMIN),
    AdminOpcode.DOORBELL_BUFFER_CONFIG: AdminCommand(
        doorbell_buffer_config, ADMIN,
        offered=lambda ctrl: ctrl.config.shadow_doorbells),
}


def admin_commands(ctrl: ControllerState) -> dict[int, int]:
    """Opcode -> effects of every admin command this controller takes: its own, then
    those its namespaces' kinds add (in opcode order, as log 05h lists them)."""
    offered = {opc: entry.effects for opc, entry in ADMIN_COMMANDS.items()
               if entry.offered(ctrl)}
    offered.update((opc, entry.effects) for opc, entry in ctrl.kind_admin.items())
    return offered


def dispatch(ctrl: ControllerState, cmd: Command) -> Result:
    entry = ADMIN_COMMANDS.get(cmd.opc)
    added = None if entry is not None else ctrl.kind_admin.get(cmd.opc)
    if added is None and (entry is None or not entry.offered(ctrl)):
        return fail_no_retry(Status.INVALID_OPCODE)
    if cmd.flags & (FUSE | PSDT):  # no fused commands; admin over PCIe uses PRPs only
        return fail_no_retry(Status.INVALID_FIELD)
    if added is not None:
        ns = ctrl.namespaces.get(cmd.nsid)
        own = ns.kind.admin_commands.get(cmd.opc) if ns is not None else None
        return (own or added).handler(ctrl, cmd)
    assert entry is not None
    return entry.handler(ctrl, cmd)
