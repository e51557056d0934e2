"""The OCSSD 2.0 namespace's commands: its kind (nvme/kind.py), registered here.

I/O: the vector commands (90h-92h) and the scalar Read, Write and Dataset
Management the raw block device still receives (ocssd-spec §2.4, §2.9). Chunks
are written at their write pointer only: Write Zeroes and Write Uncorrectable
(in-place writes) have no meaning there, and OCSSD 2.0 lists no Compare.
Vector command dwords: CDW4-5 MPTR (the OOB, 0 = none: contiguous, or an SGL
with PSDT 10b), DPTR the data PRPs or SGL, CDW10-11 and CDW12 the address list
(openchannel/vector.py). Admin: Geometry (E2h); log pages Chunk Information (CAh)
and Chunk Notification (D0h): a reset that takes a chunk OFFLINE on the device's own
account (worn out, an injected failure) posts a D0h entry and an AER naming D0h.
"""

from __future__ import annotations

from ocssd_vfu.dma import dptr
from ocssd_vfu.nvme.command import Command, Result, fail_no_retry
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.kind import (
    AdminCommand,
    CommandContext,
    CommandError,
    IoCommand,
    NamespaceKind,
    to_host,
)
from ocssd_vfu.ocssd import timed
from ocssd_vfu.ocssd.fastpath import FastPath
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd.wear import CHUNK_NOTIFICATION_AEN
from ocssd_vfu.openchannel.vector import decode_vector
from ocssd_vfu.spec.commands import DSM_DEALLOCATE, dsm_ranges, lba_range
from ocssd_vfu.spec.nvme import AdminOpcode, CommandEffects, IoOpcode, LogPageId
from ocssd_vfu.spec.ocssd import CHUNK_NOTIFICATION_LID
from ocssd_vfu.spec.status import DNR, Status

READS = CommandEffects.CSUPP
CHANGES = CommandEffects.CSUPP | CommandEffects.LBCC


def announce(ctx: CommandContext, ns: OcssdNamespace) -> None:
    """Post the AER for Chunk Notification entries the namespace posted, if any."""
    if ns.take_announcement():
        ctx.post_async_event(CHUNK_NOTIFICATION_AEN)


def vector_reset(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                 lbas: list[int]) -> Result:
    status, failed = ns.reset(ctx.memory, lbas, cmd.mptr)
    timed.reset(ctx, ns, lbas, status, failed)
    announce(ctx, ns)
    return status, failed


def vector_write(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                 lbas: list[int]) -> Result:
    status, failed = ns.write(ctx.memory, ctx.page_size, lbas, cmd)
    timed.write(ctx, ns, lbas, status, failed)
    return status, failed


def vector_read(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                lbas: list[int]) -> Result:
    status, failed = ns.read(ctx.memory, ctx.page_size, lbas, cmd, ctx.features.dulbe)
    timed.read(ctx, ns, lbas, status)
    return status, failed


def decode_scalar(ctx: CommandContext, ns: OcssdNamespace, cmd: Command) -> tuple[int, int]:
    """SLBA and the number of blocks; more than MDTS is refused here."""
    slba, nlb = lba_range(cmd.cdw10, cmd.cdw11, cmd.cdw12)
    if nlb * ns.lba_size > ctx.max_transfer:
        raise CommandError(Status.INVALID_FIELD | DNR)
    return slba, nlb


def scalar_write(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                 blocks: tuple[int, int]) -> Result:
    slba, nlb = blocks
    lbas = list(range(slba, slba + nlb))
    status, failed = ns.write(ctx.memory, ctx.page_size, lbas, cmd)
    timed.write(ctx, ns, lbas, status, failed)
    return (status, 0)  # DW0 of a scalar command is not a per-LBA bitmap


def scalar_read(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                blocks: tuple[int, int]) -> Result:
    slba, nlb = blocks
    lbas = list(range(slba, slba + nlb))
    status, _ = ns.read(ctx.memory, ctx.page_size, lbas, cmd, ctx.features.dulbe)
    timed.read(ctx, ns, lbas, status)
    return (status, 0)


def decode_nothing(ctx: CommandContext, ns: OcssdNamespace, cmd: Command) -> None:
    """Dataset Management's ranges are in its data: read when it runs."""


def dataset_management(ctx: CommandContext, ns: OcssdNamespace, cmd: Command,
                       decoded: None) -> Result:
    """Deallocate of whole chunks resets them (as qemu-nvme); other hints are ignored."""
    if not cmd.cdw11 & DSM_DEALLOCATE:
        return (Status.SUCCESS, 0)
    status, ranges = dptr.read_dsm_ranges(ctx.memory, cmd, ctx.page_size,
                                          dsm_ranges(cmd.cdw10))
    if status:
        return (status, 0)
    starts = []
    for slba, length in ranges:
        where = ns.address.locate(slba)
        if where is None or where[1] != 0 or length != ns.chunks.cnlb[where[0]]:
            return fail_no_retry(Status.INVALID_FIELD)  # only whole chunks can be deallocated
        starts.append(slba)
    status, failed = ns.reset(ctx.memory, starts, 0)
    timed.reset(ctx, ns, starts, status, failed)
    announce(ctx, ns)
    return (status, 0)


# -- admin --------------------------------------------------------------------------------
def geometry(ctx: CommandContext, cmd: Command) -> Result:
    """Admin E2h: the namespace's Geometry page."""
    ns = ctx.namespaces.get(cmd.nsid)
    if not isinstance(ns, OcssdNamespace):
        return fail_no_retry(Status.INVALID_NAMESPACE)
    return to_host(ctx, cmd, ns.geometry_page())


def chunk_information(ctx: CommandContext, cmd: Command, offset: int, length: int) -> Result:
    """Log page CAh: per namespace, read in slices at an offset (Linux) or whole (nvme-cli);
    a slice past the end is refused, as qemu-nvme does."""
    ns = ctx.namespaces.get(cmd.nsid)
    if ns is None:
        return fail_no_retry(Status.INVALID_NAMESPACE)
    if not isinstance(ns, OcssdNamespace):
        return fail_no_retry(Status.INVALID_LOG_PAGE)
    log = ns.chunks.log
    if offset & 0x3 or offset + length > len(log):
        return fail_no_retry(Status.INVALID_FIELD)
    return to_host(ctx, cmd, ns.chunks.host_log(offset, length))


def chunk_notifications(ctx: CommandContext, cmd: Command, offset: int, length: int) -> Result:
    """Log page D0h: the newest Chunk Notification entries (one log for the controller,
    shared by its OCSSD namespaces: each entry names its NSID); zeros past them."""
    log = next(ns.notifications for ns in ctx.namespaces.values()
               if isinstance(ns, OcssdNamespace))
    data = log.page(offset, length) if not offset & 0x3 else None
    if data is None:
        return fail_no_retry(Status.INVALID_FIELD)
    return to_host(ctx, cmd, data)


def describe(ns: OcssdNamespace, cmd: Command, decoded: object) -> dict[str, object]:
    """Vector commands' LBAs as grp/pu/chk/sec; scalar ones as SLBA and NLB."""
    if isinstance(decoded, list):
        return {"lbas": [ns.address.unpack(lba)._asdict() for lba in decoded]}
    if isinstance(decoded, tuple):
        return {"slba": decoded[0], "nlb": decoded[1]}
    return {}


OCSSD20 = NamespaceKind(
    name="OCSSD 2.0",
    io_commands={
        IoOpcode.WRITE: IoCommand(decode_scalar, scalar_write, CHANGES, HOST_WRITE),
        IoOpcode.READ: IoCommand(decode_scalar, scalar_read, READS, HOST_READ),
        IoOpcode.DATASET_MANAGEMENT: IoCommand(decode_nothing, dataset_management, CHANGES),
        IoOpcode.VECTOR_CHUNK_RESET: IoCommand(decode_vector, vector_reset, CHANGES),
        IoOpcode.VECTOR_CHUNK_WRITE: IoCommand(decode_vector, vector_write, CHANGES,
                                               HOST_WRITE),
        IoOpcode.VECTOR_CHUNK_READ: IoCommand(decode_vector, vector_read, READS, HOST_READ),
    },
    admin_commands={AdminOpcode.OCSSD_GEOMETRY: AdminCommand(geometry, CommandEffects.CSUPP)},
    log_pages={LogPageId.OCSSD_CHUNK_INFORMATION: chunk_information,
               CHUNK_NOTIFICATION_LID: chunk_notifications},
    describe=describe,
    fast_path=FastPath,
)
OcssdNamespace.kind = OCSSD20
