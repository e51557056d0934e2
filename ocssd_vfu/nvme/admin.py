"""Admin commands: one table maps each opcode to its handler and its Commands
Supported and Effects bits (an opcode missing from it, or not offered by this
controller, is Invalid Opcode; log page 05h and OACS come from the same table).
Handlers return (status, result) and never raise for guest input; features are
in features.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from ocssd_vfu.nvme import doorbells, dptr, features, health, io
from ocssd_vfu.nvme.capabilities import MQES, VERSION
from ocssd_vfu.nvme.command import DEFERRED, FUSE, OK, PSDT, Command, Result, fail
from ocssd_vfu.nvme.memory import DmaError, TransferError
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.ocssd.commands import vector_lbas
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.nvme import (
    CQE_SIZE,
    IDENTIFY_SIZE,
    SQE_SIZE,
    AdminOpcode,
    CommandEffects,
    CommandsSupportedAndEffectsLog,
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

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

log = logging.getLogger("ocssd_vfu.nvme")

AER_LIMIT = 4           # AERL + 1

def to_host(ctrl: Controller, cmd: Command, data: bytes) -> Result:
    """Copy `data` to the command's PRPs (its whole length: the host sized the buffer)."""
    try:
        dptr.transfer(ctrl.memory, cmd, ctrl.page_size, [memoryview(data)], to_guest=True)
    except TransferError as err:
        return (err.status, 0)
    return OK


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


def identify_controller(ctrl: Controller) -> bytes:
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


def namespace_uuid(ctrl: Controller, nsid: int) -> bytes:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ocssd-vfu:{ctrl.config.serial}:{nsid}").bytes


def identify(ctrl: Controller, cmd: Command) -> Result:
    cns = cmd.cdw10 & 0xFF
    if cns == IdentifyCns.CONTROLLER:
        return to_host(ctrl, cmd, identify_controller(ctrl))
    if cns == IdentifyCns.NAMESPACE:
        ns = ctrl.namespaces.get(cmd.nsid)
        if ns is None:
            return fail(Status.INVALID_NAMESPACE)
        return to_host(ctrl, cmd, ns.identify())
    if cns == IdentifyCns.ACTIVE_NAMESPACES:
        if cmd.nsid >= 0xFFFFFFFE:
            return fail(Status.INVALID_NAMESPACE)
        ids = sorted(n for n in ctrl.namespaces if n > cmd.nsid)[:1024]
        data = b"".join(n.to_bytes(4, "little") for n in ids)
        return to_host(ctrl, cmd, data.ljust(IDENTIFY_SIZE, b"\0"))
    if cns == IdentifyCns.NAMESPACE_DESCRIPTORS:
        if cmd.nsid not in ctrl.namespaces:
            return fail(Status.INVALID_NAMESPACE)
        descriptor = NamespaceDescriptorHeader.build(dict(nidt=NIDT_UUID, nidl=16)) \
            + namespace_uuid(ctrl, cmd.nsid)
        return to_host(ctrl, cmd, descriptor.ljust(IDENTIFY_SIZE, b"\0"))
    return fail(Status.INVALID_FIELD)


# -- Queues -------------------------------------------------------------------------------
def _new_queue(ctrl: Controller, cmd: Command, existing: Mapping[int, object],
               entry_size: int) -> tuple[int, int, int]:
    """Create I/O CQ/SQ's common part: (status, qid, size) from CDW10, with the
    queue id free, the size within MQES, and the ring (PRP1, physically
    contiguous: CDW11.PC) page aligned and mapped in one guest region."""
    qid, size, base = cmd.cdw10 & 0xFFFF, (cmd.cdw10 >> 16) + 1, cmd.prp1
    if qid == 0 or qid > ctrl.config.io_queue_pairs or qid in existing:
        return (Status.INVALID_QID | DNR, qid, size)
    if size < 2 or size > MQES + 1:
        return (Status.INVALID_QUEUE_SIZE | DNR, qid, size)
    if not cmd.cdw11 & 1:
        return (Status.INVALID_FIELD | DNR, qid, size)
    if base == 0 or base & (ctrl.page_size - 1):
        return (Status.INVALID_PRP_OFFSET | DNR, qid, size)
    try:
        ctrl.memory.view(base, size * entry_size)
    except DmaError:
        return (Status.INVALID_FIELD | DNR, qid, size)
    return (Status.SUCCESS, qid, size)


def create_io_cq(ctrl: Controller, cmd: Command) -> Result:
    status, qid, size = _new_queue(ctrl, cmd, ctrl.cqs, CQE_SIZE)
    if status:
        return (status, 0)
    ien, vector = bool(cmd.cdw11 & 2), cmd.cdw11 >> 16
    if vector >= ctrl.config.msix_vectors:
        return fail(Status.INVALID_INTERRUPT_VECTOR)
    ctrl.cqs[qid] = CompletionQueue(qid, cmd.prp1, size, vector, ien)
    ctrl.io_queues_created = True
    doorbells.queue_created(ctrl, qid, cq=True)
    return OK


def create_io_sq(ctrl: Controller, cmd: Command) -> Result:
    cqid = cmd.cdw11 >> 16
    cq = ctrl.cqs.get(cqid)
    if cqid == 0 or cq is None:
        return fail(Status.INVALID_CQ)
    status, qid, size = _new_queue(ctrl, cmd, ctrl.sqs, SQE_SIZE)
    if status:
        return (status, 0)
    ctrl.sqs[qid] = SubmissionQueue.bound_to(cq, qid, cmd.prp1, size)
    ctrl.io_queues_created = True
    doorbells.queue_created(ctrl, qid, cq=False)
    return OK


def delete_io_sq(ctrl: Controller, cmd: Command) -> Result:
    qid = cmd.cdw10 & 0xFFFF
    sq = ctrl.sqs.get(qid)
    if qid == 0 or sq is None:
        return fail(Status.INVALID_QID)
    del ctrl.sqs[qid]
    ctrl.pending.discard(qid)
    sq.unbind()
    return OK


def delete_io_cq(ctrl: Controller, cmd: Command) -> Result:
    qid = cmd.cdw10 & 0xFFFF
    cq = ctrl.cqs.get(qid)
    if qid == 0 or cq is None:
        return fail(Status.INVALID_QID)
    if cq.sqs:
        return fail(Status.INVALID_QUEUE_DELETION)
    del ctrl.cqs[qid]
    return OK


# -- Format NVM ---------------------------------------------------------------------------
SES_NONE, SES_USER_DATA_ERASE = 0, 1


def format_nvm(ctrl: Controller, cmd: Command) -> Result:
    """LBAF and MSET per namespace (or all: NSID FFFFFFFFh); no protection information;
    SES 1 erases the whole file, cryptographic erase (2) is not offered (FNA bit 2)."""
    lbaf, extended = cmd.cdw10 & 0xF, bool(cmd.cdw10 & (1 << 4))
    pi, ses = (cmd.cdw10 >> 5) & 0x7, (cmd.cdw10 >> 9) & 0x7
    if cmd.nsid == 0xFFFFFFFF:
        targets = list(ctrl.namespaces.values())
    elif cmd.nsid in ctrl.namespaces:
        targets = [ctrl.namespaces[cmd.nsid]]
    else:
        return fail(Status.INVALID_NAMESPACE)
    if ses > SES_USER_DATA_ERASE:
        return fail(Status.INVALID_FIELD)
    plain = [ns for ns in targets if isinstance(ns, PlainNamespace)]
    if pi or len(plain) != len(targets) or any(lbaf >= len(ns.formats) for ns in plain):
        return fail(Status.INVALID_FORMAT)
    for ns in plain:
        if ses == SES_USER_DATA_ERASE:
            ns.erase()
        ns.format(lbaf, extended)
        log.info("namespace %d now has LBA format %d: serve the image again with --sec-size %d "
                 "--md-size %d%s to see the same blocks", ns.nsid, lbaf, ns.lba_size, ns.md_size,
                 " --extended-lba" if extended else "")
    return OK


# -- Log pages ----------------------------------------------------------------------------
def smart_log(ctrl: Controller) -> bytes:
    return ctrl.health.log(ctrl.features.temperature_over, ctrl.features.temperature_under)


def firmware_slot_log(ctrl: Controller) -> bytes:
    data = bytearray(512)
    data[0] = 1  # active slot 1
    data[8:16] = ctrl.config.firmware.encode().ljust(8)[:8]
    return bytes(data)


def effects_log(ctrl: Controller) -> bytes:
    page = blank(CommandsSupportedAndEffectsLog)
    for opc, effects in admin_commands(ctrl).items():
        page.acs[opc] = effects
    for opc, effects in io.io_commands(ctrl).items():
        page.iocs[opc] = effects
    return CommandsSupportedAndEffectsLog.build(page)


LOG_PAGES: dict[int, Callable[[Controller], bytes]] = {
    LogPageId.ERROR_INFORMATION: lambda ctrl: bytes(64),
    LogPageId.SMART_HEALTH: smart_log,
    LogPageId.FIRMWARE_SLOT: firmware_slot_log,
    LogPageId.COMMANDS_SUPPORTED_EFFECTS: effects_log,
}
CONTROLLER_LOGS = {LogPageId.SMART_HEALTH}  # no per-namespace SMART (LPA bit 0 clear)


def get_log_page(ctrl: Controller, cmd: Command) -> Result:
    lid = cmd.cdw10 & 0xFF
    numd = ((cmd.cdw10 >> 16) | (cmd.cdw11 & 0xFFFF) << 16) + 1
    offset = cmd.cdw12 | cmd.cdw13 << 32
    if numd * 4 > ctrl.max_transfer:  # MDTS; NUMD reaches 16 GiB, never allocated
        return fail(Status.INVALID_FIELD)
    if lid == LogPageId.OCSSD_CHUNK_INFORMATION:
        return chunk_information(ctrl, cmd, offset, numd * 4)
    if numd * 4 > ctrl.max_transfer:  # before anything that size is allocated
        return fail(Status.INVALID_FIELD)
    page = LOG_PAGES.get(lid)
    if page is None:
        return fail(Status.INVALID_LOG_PAGE)
    if lid in CONTROLLER_LOGS and cmd.nsid not in (0, 0xFFFFFFFF):
        return fail(Status.INVALID_FIELD)
    data = page(ctrl)
    if offset & 0x3 or offset > len(data):
        return fail(Status.INVALID_FIELD)
    return to_host(ctrl, cmd, data[offset:offset + numd * 4].ljust(numd * 4, b"\0"))


def chunk_information(ctrl: Controller, cmd: Command, offset: int, length: int) -> Result:
    """Log page CAh: per namespace, read in slices at an offset (Linux) or whole (nvme-cli);
    a slice past the end is refused, as qemu-nvme does."""
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        return fail(Status.INVALID_NAMESPACE)
    if not isinstance(ns, OcssdNamespace):
        return fail(Status.INVALID_LOG_PAGE)
    log = ns.chunks.log
    if offset & 0x3 or offset + length > len(log):
        return fail(Status.INVALID_FIELD)
    return to_host(ctrl, cmd, bytes(log[offset:offset + length]))


OCSSD_NAMESPACES = (OcssdNamespace, Ocssd12Namespace)


def geometry(ctrl: Controller, cmd: Command) -> Result:
    """OCSSD admin E2h: the namespace's Geometry (2.0) or Identity (1.2) page."""
    ns = ctrl.namespaces.get(cmd.nsid)
    if not isinstance(ns, OCSSD_NAMESPACES):
        return fail(Status.INVALID_NAMESPACE)
    return to_host(ctrl, cmd, ns.geometry_page())


def get_bad_blocks(ctrl: Controller, cmd: Command) -> Result:
    """OCSSD 1.2 admin F2h: the bad-block table of the LUN that the PPA in CDW10-11 names."""
    ns = ctrl.namespaces.get(cmd.nsid)
    if not isinstance(ns, Ocssd12Namespace):
        return fail(Status.INVALID_NAMESPACE)
    table = ns.bad_block_table(cmd.cdw10 | cmd.cdw11 << 32)
    if table is None:
        return fail(Status.INVALID_FIELD)
    return to_host(ctrl, cmd, table)


def set_bad_blocks(ctrl: Controller, cmd: Command) -> Result:
    """OCSSD 1.2 admin F1h: a PPA (or list, as in vector commands) and CDW12[23:16] the value."""
    ns = ctrl.namespaces.get(cmd.nsid)
    if not isinstance(ns, Ocssd12Namespace):
        return fail(Status.INVALID_NAMESPACE)
    ppas = vector_lbas(ctrl, cmd)
    if isinstance(ppas, int):
        return (ppas, 0)
    return ns.set_bad_blocks(ppas, (cmd.cdw12 >> 16) & 0xFF)


# -- The rest -----------------------------------------------------------------------------
def async_event_request(ctrl: Controller, cmd: Command) -> Result:
    if len(ctrl.aer_cids) >= AER_LIMIT:
        return fail(Status.ASYNC_EVENT_LIMIT_EXCEEDED)
    ctrl.aer_cids.append(cmd.cid)
    return (DEFERRED, 0)


def abort(ctrl: Controller, cmd: Command) -> Result:
    return (Status.SUCCESS, 1)  # dw0 bit 0: command not aborted (all run to completion)


def _always(ctrl: Controller) -> bool:
    return True


def _with(kind: type | tuple[type, ...]) -> Callable[[Controller], bool]:
    """Offered by a controller with a namespace of `kind`."""
    return lambda ctrl: any(isinstance(ns, kind) for ns in ctrl.namespaces.values())


class AdminCommand(NamedTuple):
    handler: Callable[[Controller, Command], Result]
    effects: int
    offered: Callable[[Controller], bool] = _always   # else Invalid Opcode, and not in 05h


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
    AdminOpcode.FORMAT_NVM: AdminCommand(
        format_nvm, ADMIN | CommandEffects.LBCC | CommandEffects.NCC
        | CommandEffects.CSE_ALL_NAMESPACES, offered=_with(PlainNamespace)),
    AdminOpcode.DOORBELL_BUFFER_CONFIG: AdminCommand(
        doorbells.doorbell_buffer_config, ADMIN,
        offered=lambda ctrl: ctrl.config.shadow_doorbells),
    AdminOpcode.OCSSD_GEOMETRY: AdminCommand(geometry, ADMIN,
                                             offered=_with(OCSSD_NAMESPACES)),
    AdminOpcode.OCSSD_GET_BAD_BLOCKS: AdminCommand(get_bad_blocks, ADMIN,
                                                   offered=_with(Ocssd12Namespace)),
    AdminOpcode.OCSSD_SET_BAD_BLOCKS: AdminCommand(set_bad_blocks, ADMIN,
                                                   offered=_with(Ocssd12Namespace)),
}


def admin_commands(ctrl: Controller) -> dict[int, int]:
    """Opcode -> effects of every admin command this controller takes."""
    return {opc: entry.effects for opc, entry in ADMIN_COMMANDS.items() if entry.offered(ctrl)}


def dispatch(ctrl: Controller, cmd: Command) -> Result:
    entry = ADMIN_COMMANDS.get(cmd.opc)
    if entry is None or not entry.offered(ctrl):
        return fail(Status.INVALID_OPCODE)
    if cmd.flags & (FUSE | PSDT):  # no fused commands; admin over PCIe uses PRPs only
        return fail(Status.INVALID_FIELD)
    return entry.handler(ctrl, cmd)
