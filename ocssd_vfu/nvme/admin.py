"""Admin commands: one table maps each opcode to its handler and its Commands
Supported and Effects bits (an opcode missing from it, or not offered by this
controller, is Invalid Opcode; log page 05h and OACS come from the same table).
Features are a table too. Handlers return (status, result) and never raise for
guest input.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ocssd_vfu.nvme import health, io
from ocssd_vfu.nvme.capabilities import MQES, VERSION
from ocssd_vfu.nvme.command import DEFERRED, FUSE_PSDT, OK, Command, Result, fail
from ocssd_vfu.nvme.memory import DmaError
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.prp import PrpError, transfer
from ocssd_vfu.nvme.queues import CompletionQueue, SubmissionQueue
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.nvme import (
    CQE_SIZE,
    IDENTIFY_SIZE,
    SQE_SIZE,
    AdminOpcode,
    CommandEffects,
    CommandsSupportedAndEffectsLog,
    FeatureId,
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
        transfer(ctrl.memory, cmd.prp1, cmd.prp2, ctrl.page_size, [memoryview(data)],
                 to_guest=True)
    except PrpError as err:
        return (err.status, 0)
    return OK


# -- Identify -----------------------------------------------------------------------------
# Optional commands are advertised exactly when the dispatch tables hold them.
OACS_BITS: dict[int, int] = {AdminOpcode.FORMAT_NVM: Oacs.FORMAT_NVM,
             AdminOpcode.DOORBELL_BUFFER_CONFIG: Oacs.DOORBELL_BUFFER_CONFIG}
ONCS_BITS: dict[int, int] = {IoOpcode.COMPARE: Oncs.COMPARE,
             IoOpcode.WRITE_UNCORRECTABLE: Oncs.WRITE_UNCORRECTABLE,
             IoOpcode.DATASET_MANAGEMENT: Oncs.DATASET_MANAGEMENT,
             IoOpcode.WRITE_ZEROES: Oncs.WRITE_ZEROES}
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
# Current values live in ctrl.features; a fresh Features() holds the defaults, which are
# also the saved values (no feature is saveable). Each table entry reads the value CDW11
# selects from one of those (None: CDW11 selects nothing valid) and applies a Set Features.
NUMBER_OF_POWER_STATES = 1        # NPSS + 1
WORKLOAD_HINTS = 3                # Power Management WH: none, extended idle, heavy sequential
TMPSEL_COMPOSITE, TMPSEL_ALL = 0x0, 0xF
THSEL_OVER, THSEL_UNDER = 0, 1
SEL_CURRENT, SEL_DEFAULT, SEL_SAVED, SEL_CAPABILITIES = range(4)
CAPABILITY_NAMESPACE_SPECIFIC, CAPABILITY_CHANGEABLE = 1 << 1, 1 << 2


@dataclass
class Features:
    arbitration: int = 0
    power_management: int = 0
    temperature_over: int = health.WARNING_TEMPERATURE
    temperature_under: int = 0
    error_recovery: int = 0
    volatile_write_cache: int = 1
    async_event_config: int = 0


Getter = Callable[["Controller", Features, int], "int | None"]
Setter = Callable[["Controller", int], Result]


class Feature(NamedTuple):
    """get: the value CDW11 selects from a Features; set: a Set Features."""

    get: Getter
    set: Setter
    namespace_specific: bool = False


def _field(name: str) -> Getter:
    """The get of a feature that is one field of Features."""
    return lambda ctrl, values, cdw11: int(getattr(values, name))


def _set_field(name: str, mask: int) -> Setter:
    """The set of a feature that is one field of Features: CDW11's bits in `mask`."""
    def set_field(ctrl: Controller, cdw11: int) -> Result:
        setattr(ctrl.features, name, cdw11 & mask)
        return OK
    return set_field


def _temperature_field(cdw11: int, setting: bool) -> str | None:
    """The Features field TMPSEL/THSEL select: only the composite temperature exists
    (TMPSEL Fh, all sensors, is that one too, for Set Features)."""
    tmpsel, thsel = (cdw11 >> 16) & 0xF, (cdw11 >> 20) & 0x3
    if tmpsel != TMPSEL_COMPOSITE and not (setting and tmpsel == TMPSEL_ALL):
        return None
    return {THSEL_OVER: "temperature_over", THSEL_UNDER: "temperature_under"}.get(thsel)


def get_temperature_threshold(ctrl: Controller, values: Features, cdw11: int) -> int | None:
    name = _temperature_field(cdw11, setting=False)
    return None if name is None else int(getattr(values, name))


def set_temperature_threshold(ctrl: Controller, cdw11: int) -> Result:
    name = _temperature_field(cdw11, setting=True)
    if name is None:
        return fail(Status.INVALID_FIELD)
    setattr(ctrl.features, name, cdw11 & 0xFFFF)
    return OK


def set_power_management(ctrl: Controller, cdw11: int) -> Result:
    if cdw11 & 0x1F >= NUMBER_OF_POWER_STATES or (cdw11 >> 5) & 0x7 >= WORKLOAD_HINTS:
        return fail(Status.INVALID_FIELD)
    ctrl.features.power_management = cdw11 & 0xFF
    return OK


def set_error_recovery(ctrl: Controller, cdw11: int) -> Result:
    dulbe_capable = any(ns.supports_dulbe for ns in ctrl.namespaces.values())
    if cdw11 & (1 << 16) and not dulbe_capable:  # DULBE needs NSFEAT bit 2
        return fail(Status.INVALID_FIELD)
    ctrl.features.error_recovery = cdw11 & 0x1FFFF
    return OK


def _queue_limit(ctrl: Controller) -> int:
    limit = ctrl.config.io_queue_pairs - 1
    return limit | limit << 16


def set_number_of_queues(ctrl: Controller, cdw11: int) -> Result:
    nsqr, ncqr = cdw11 & 0xFFFF, cdw11 >> 16
    if nsqr == 0xFFFF or ncqr == 0xFFFF:
        return fail(Status.INVALID_FIELD)
    limit = ctrl.config.io_queue_pairs - 1
    return (Status.SUCCESS, min(nsqr, limit) | min(ncqr, limit) << 16)


FEATURES: dict[int, Feature] = {
    FeatureId.ARBITRATION: Feature(_field("arbitration"),
                                   _set_field("arbitration", 0xFFFFFF07)),
    FeatureId.POWER_MANAGEMENT: Feature(_field("power_management"), set_power_management),
    FeatureId.TEMPERATURE_THRESHOLD: Feature(get_temperature_threshold,
                                             set_temperature_threshold),
    # One value for every namespace of the controller.
    FeatureId.ERROR_RECOVERY: Feature(_field("error_recovery"), set_error_recovery,
                                      namespace_specific=True),
    FeatureId.VOLATILE_WRITE_CACHE: Feature(_field("volatile_write_cache"),
                                            _set_field("volatile_write_cache", 0x1)),
    FeatureId.NUMBER_OF_QUEUES: Feature(lambda ctrl, values, cdw11: _queue_limit(ctrl),
                                        set_number_of_queues),
    FeatureId.ASYNC_EVENT_CONFIGURATION: Feature(_field("async_event_config"),
                                                 _set_field("async_event_config", 0x3FF)),
}


def set_features(ctrl: Controller, cmd: Command) -> Result:
    feature = FEATURES.get(cmd.cdw10 & 0xFF)
    if feature is None:
        return fail(Status.INVALID_FIELD)
    if cmd.cdw10 >> 31:
        return fail(Status.FEATURE_NOT_SAVEABLE)
    return feature.set(ctrl, cmd.cdw11)


def get_features(ctrl: Controller, cmd: Command) -> Result:
    feature, select = FEATURES.get(cmd.cdw10 & 0xFF), (cmd.cdw10 >> 8) & 0x7
    if feature is None or select > SEL_CAPABILITIES:
        return fail(Status.INVALID_FIELD)
    if select == SEL_CAPABILITIES:
        return (Status.SUCCESS, CAPABILITY_CHANGEABLE
                | (CAPABILITY_NAMESPACE_SPECIFIC if feature.namespace_specific else 0))
    value = feature.get(ctrl, ctrl.features if select == SEL_CURRENT else Features(), cmd.cdw11)
    if value is None:
        return fail(Status.INVALID_FIELD)
    return (Status.SUCCESS, value)


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


def geometry(ctrl: Controller, cmd: Command) -> Result:
    """OCSSD admin E2h: the namespace's Geometry page."""
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


def _always(ctrl: Controller) -> bool:
    return True


def _with(kind: type) -> Callable[[Controller], bool]:
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
    AdminOpcode.SET_FEATURES: AdminCommand(set_features, ADMIN),
    AdminOpcode.GET_FEATURES: AdminCommand(get_features, ADMIN),
    AdminOpcode.ASYNC_EVENT_REQUEST: AdminCommand(async_event_request, ADMIN),
    AdminOpcode.FORMAT_NVM: AdminCommand(
        format_nvm, ADMIN | CommandEffects.LBCC | CommandEffects.NCC
        | CommandEffects.CSE_ALL_NAMESPACES, offered=_with(PlainNamespace)),
    AdminOpcode.OCSSD_GEOMETRY: AdminCommand(geometry, ADMIN, offered=_with(OcssdNamespace)),
}


def admin_commands(ctrl: Controller) -> dict[int, int]:
    """Opcode -> effects of every admin command this controller takes."""
    return {opc: entry.effects for opc, entry in ADMIN_COMMANDS.items() if entry.offered(ctrl)}


def dispatch(ctrl: Controller, cmd: Command) -> Result:
    entry = ADMIN_COMMANDS.get(cmd.opc)
    if entry is None or not entry.offered(ctrl):
        return fail(Status.INVALID_OPCODE)
    if cmd.flags & FUSE_PSDT:
        return fail(Status.INVALID_FIELD)  # no fused commands, no SGLs (SGLS = 0)
    return entry.handler(ctrl, cmd)
