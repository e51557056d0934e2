"""Admin commands: one table maps each opcode to its handler (an opcode missing
from it is Invalid Opcode). Handlers return (status, result) and never raise
for guest input.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocssd_vfu.nvme.capabilities import MQES, VERSION
from ocssd_vfu.nvme.command import DEFERRED, FUSE_PSDT, OK, Command, Result, fail
from ocssd_vfu.nvme.memory import DmaError
from ocssd_vfu.nvme.prp import PrpError, transfer
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.nvme import (
    CQE_SIZE,
    IDENTIFY_SIZE,
    SQE_SIZE,
    AdminOpcode,
    FeatureId,
    IdentifyCns,
    IdentifyController,
    LogPageId,
    NamespaceDescriptorHeader,
    blank,
)
from ocssd_vfu.spec.status import DNR, Status

NIDT_UUID = 3

if TYPE_CHECKING:
    from ocssd_vfu.nvme.controller import Controller

AER_LIMIT = 4           # AERL + 1


@dataclass
class Features:
    arbitration: int = 0
    volatile_write_cache: int = 1
    async_event_config: int = 0
    error_recovery: int = 0


def to_host(ctrl: Controller, cmd: Command, data: bytes) -> Result:
    """Copy `data` to the command's PRPs (its whole length: the host sized the buffer)."""
    try:
        transfer(ctrl.memory, cmd.prp1, cmd.prp2, ctrl.page_size, [memoryview(data)],
                 to_guest=True)
    except PrpError as err:
        return (err.status, 0)
    return OK


# -- Identify -----------------------------------------------------------------------------
def identify_controller(ctrl: Controller) -> bytes:
    cfg = ctrl.config
    ident = blank(IdentifyController)
    ident.update(dict(
        vid=cfg.vid, ssvid=cfg.ssvid, sn=cfg.serial.encode().ljust(20)[:20],
        mn=cfg.model.encode().ljust(40)[:40], fr=cfg.firmware.encode().ljust(8)[:8],
        rab=6, ieee=b"\x00\x54\x52", mdts=cfg.mdts, ver=VERSION, cntrltype=1, oncs=cfg.oncs,
        acl=3, aerl=AER_LIMIT - 1, frmw=0x3, lpa=0x4, wctemp=0x0157, cctemp=0x0175,
        sqes=0x66, cqes=0x44, nn=max(ctrl.namespaces, default=0), vwc=1,
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


# -- Features -----------------------------------------------------------------------------
def set_features(ctrl: Controller, cmd: Command) -> Result:
    fid, value, f = cmd.cdw10 & 0xFF, cmd.cdw11, ctrl.features
    if cmd.cdw10 >> 31:
        return fail(Status.FEATURE_NOT_SAVEABLE)
    if fid == FeatureId.NUMBER_OF_QUEUES:
        nsqr, ncqr = value & 0xFFFF, value >> 16
        if nsqr == 0xFFFF or ncqr == 0xFFFF:
            return fail(Status.INVALID_FIELD)
        limit = ctrl.config.io_queue_pairs - 1
        return (Status.SUCCESS, min(nsqr, limit) | min(ncqr, limit) << 16)
    if fid == FeatureId.ARBITRATION:
        f.arbitration = value
    elif fid == FeatureId.VOLATILE_WRITE_CACHE:
        f.volatile_write_cache = value & 1
    elif fid == FeatureId.ASYNC_EVENT_CONFIGURATION:
        f.async_event_config = value & 0x3FF
    elif fid == FeatureId.ERROR_RECOVERY:
        dulbe_capable = any(ns.supports_dulbe for ns in ctrl.namespaces.values())
        if value & (1 << 16) and not dulbe_capable:  # DULBE needs NSFEAT bit 2
            return fail(Status.INVALID_FIELD)
        f.error_recovery = value & 0x1FFFF
    else:
        return fail(Status.INVALID_FIELD)
    return OK


def get_features(ctrl: Controller, cmd: Command) -> Result:
    fid, f = cmd.cdw10 & 0xFF, ctrl.features
    limit = ctrl.config.io_queue_pairs - 1
    values = {FeatureId.ARBITRATION: f.arbitration,
              FeatureId.VOLATILE_WRITE_CACHE: f.volatile_write_cache,
              FeatureId.ASYNC_EVENT_CONFIGURATION: f.async_event_config,
              FeatureId.ERROR_RECOVERY: f.error_recovery,
              FeatureId.NUMBER_OF_QUEUES: limit | limit << 16}
    if fid not in values:
        return fail(Status.INVALID_FIELD)
    return (Status.SUCCESS, values[FeatureId(fid)])


# -- Log pages ----------------------------------------------------------------------------
def smart_log(ctrl: Controller) -> bytes:
    data = bytearray(512)
    data[1:3] = (273 + 40).to_bytes(2, "little")  # composite temperature, kelvin
    data[3] = 100  # available spare %
    data[4] = 10   # available spare threshold
    return bytes(data)


def firmware_slot_log(ctrl: Controller) -> bytes:
    data = bytearray(512)
    data[0] = 1  # active slot 1
    data[8:16] = ctrl.config.firmware.encode().ljust(8)[:8]
    return bytes(data)


LOG_PAGES: dict[int, Callable[[Controller], bytes]] = {
    LogPageId.ERROR_INFORMATION: lambda ctrl: bytes(64),
    LogPageId.SMART_HEALTH: smart_log,
    LogPageId.FIRMWARE_SLOT: firmware_slot_log,
}


def get_log_page(ctrl: Controller, cmd: Command) -> Result:
    lid = cmd.cdw10 & 0xFF
    numd = ((cmd.cdw10 >> 16) | (cmd.cdw11 & 0xFFFF) << 16) + 1
    offset = cmd.cdw12 | cmd.cdw13 << 32
    if numd * 4 > ctrl.max_transfer:  # MDTS; NUMD reaches 16 GiB, never allocated
        return fail(Status.INVALID_FIELD)
    if lid == LogPageId.OCSSD_CHUNK_INFORMATION:
        return chunk_information(ctrl, cmd, offset, numd * 4)
    page = LOG_PAGES.get(lid)
    if page is None:
        return fail(Status.INVALID_LOG_PAGE)
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


def geometry(ctrl: Controller, cmd: Command) -> Result:
    """OCSSD admin E2h: the namespace's Geometry page (a plain controller lacks it)."""
    if not any(isinstance(ns, OcssdNamespace) for ns in ctrl.namespaces.values()):
        return fail(Status.INVALID_OPCODE)
    ns = ctrl.namespaces.get(cmd.nsid)
    if not isinstance(ns, OcssdNamespace):
        return fail(Status.INVALID_NAMESPACE)
    return to_host(ctrl, cmd, ns.geometry_page())


# -- The rest -----------------------------------------------------------------------------
def async_event_request(ctrl: Controller, cmd: Command) -> Result:
    if len(ctrl.aer_cids) >= AER_LIMIT:
        return fail(Status.ASYNC_EVENT_LIMIT_EXCEEDED)
    ctrl.aer_cids.append(cmd.cid)
    return (DEFERRED, 0)


def abort(ctrl: Controller, cmd: Command) -> Result:
    return (Status.SUCCESS, 1)  # dw0 bit 0: command not aborted (all run to completion)


ADMIN_COMMANDS: dict[int, Callable[[Controller, Command], Result]] = {
    AdminOpcode.DELETE_IO_SQ: delete_io_sq,
    AdminOpcode.CREATE_IO_SQ: create_io_sq,
    AdminOpcode.GET_LOG_PAGE: get_log_page,
    AdminOpcode.DELETE_IO_CQ: delete_io_cq,
    AdminOpcode.CREATE_IO_CQ: create_io_cq,
    AdminOpcode.IDENTIFY: identify,
    AdminOpcode.ABORT: abort,
    AdminOpcode.SET_FEATURES: set_features,
    AdminOpcode.GET_FEATURES: get_features,
    AdminOpcode.ASYNC_EVENT_REQUEST: async_event_request,
    AdminOpcode.OCSSD_GEOMETRY: geometry,
}


def dispatch(ctrl: Controller, cmd: Command) -> Result:
    handler = ADMIN_COMMANDS.get(cmd.opc)
    if handler is None:
        return fail(Status.INVALID_OPCODE)
    if cmd.flags & FUSE_PSDT:
        return fail(Status.INVALID_FIELD)  # no fused commands, no SGLs (SGLS = 0)
    return handler(ctrl, cmd)
