"""The OCSSD 1.2 namespace's commands: its kind (nvme/kind.py), registered here
(ocssd-spec §3.3, §3.4).

I/O: physical page erase 90h, write 91h, read 92h (the 2.0 vector commands'
dwords: the address list of openchannel/vector.py; MPTR the OOB buffer;
CDW12[31:16] the control word, whose bits 1:0 are the plane mode), and NVMe
Read 02h of the raw namespace. Admin: Identity (E2h, the 2.0 Geometry's opcode),
Get Bad Block Table (F2h) and Set Bad Block Table (F1h).
"""

from __future__ import annotations

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
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.vector import decode_vector, vector_addresses
from ocssd_vfu.spec.commands import SetBadBlocksCdw12, lba_range, ocssd12_control
from ocssd_vfu.spec.nvme import AdminOpcode, CommandEffects, IoOpcode
from ocssd_vfu.spec.status import DNR, Status

READS = CommandEffects.CSUPP
CHANGES = CommandEffects.CSUPP | CommandEffects.LBCC


def erase(ctx: CommandContext, ns: Ocssd12Namespace, cmd: Command, ppas: list[int]) -> Result:
    return ns.erase(ppas, ocssd12_control(cmd.cdw12))


def write(ctx: CommandContext, ns: Ocssd12Namespace, cmd: Command, ppas: list[int]) -> Result:
    return ns.write(ctx.memory, ctx.page_size, ppas, cmd, ocssd12_control(cmd.cdw12))


def read(ctx: CommandContext, ns: Ocssd12Namespace, cmd: Command, ppas: list[int]) -> Result:
    return ns.read(ctx.memory, ctx.page_size, ppas, cmd, ocssd12_control(cmd.cdw12))


def decode_scalar(ctx: CommandContext, ns: Ocssd12Namespace, cmd: Command) -> tuple[int, int]:
    """SLBA and the number of sectors; more than MDTS is refused here."""
    slba, nlb = lba_range(cmd.cdw10, cmd.cdw11, cmd.cdw12)
    if nlb * ns.lba_size > ctx.max_transfer:
        raise CommandError(Status.INVALID_FIELD | DNR)
    return slba, nlb


def scalar_read(ctx: CommandContext, ns: Ocssd12Namespace, cmd: Command,
                sectors: tuple[int, int]) -> Result:
    return (ns.read_linear(ctx.memory, ctx.page_size, *sectors, cmd), 0)


# -- admin --------------------------------------------------------------------------------
def identity(ctx: CommandContext, cmd: Command) -> Result:
    """Admin E2h: the namespace's Device Identification."""
    ns = ctx.namespaces.get(cmd.nsid)
    if not isinstance(ns, Ocssd12Namespace):
        return fail_no_retry(Status.INVALID_NAMESPACE)
    return to_host(ctx, cmd, ns.geometry_page())


def get_bad_blocks(ctx: CommandContext, cmd: Command) -> Result:
    """Admin F2h: the bad-block table of the LUN that the PPA in CDW10-11 names."""
    ns = ctx.namespaces.get(cmd.nsid)
    if not isinstance(ns, Ocssd12Namespace):
        return fail_no_retry(Status.INVALID_NAMESPACE)
    table = ns.bad_block_table(cmd.cdw10 | cmd.cdw11 << 32)
    if table is None:
        return fail_no_retry(Status.INVALID_FIELD)
    return to_host(ctx, cmd, table)


def set_bad_blocks(ctx: CommandContext, cmd: Command) -> Result:
    """Admin F1h: a PPA (or list, as in vector commands) and CDW12[23:16] the value."""
    ns = ctx.namespaces.get(cmd.nsid)
    if not isinstance(ns, Ocssd12Namespace):
        return fail_no_retry(Status.INVALID_NAMESPACE)
    try:
        ppas = vector_addresses(ctx, cmd)
    except CommandError as err:
        return (err.status, err.result)
    return ns.set_bad_blocks(ppas, SetBadBlocksCdw12.get(cmd.cdw12, "value"))


def describe(ns: Ocssd12Namespace, cmd: Command, decoded: object) -> dict[str, object]:
    """PPAs as ch/lun/blk/pl/pg/sec; the raw namespace's Read as SLBA and NLB."""
    if isinstance(decoded, list):
        return {"lbas": [ns.address.unpack(ppa)._asdict() for ppa in decoded]}
    if isinstance(decoded, tuple):
        return {"slba": decoded[0], "nlb": decoded[1]}
    return {}


OCSSD12 = NamespaceKind(
    name="OCSSD 1.2",
    io_commands={  # 1.2 physical page erase, write and read share 2.0's opcodes
        IoOpcode.READ: IoCommand(decode_scalar, scalar_read, READS, HOST_READ),
        IoOpcode.VECTOR_CHUNK_RESET: IoCommand(decode_vector, erase, CHANGES),
        IoOpcode.VECTOR_CHUNK_WRITE: IoCommand(decode_vector, write, CHANGES, HOST_WRITE),
        IoOpcode.VECTOR_CHUNK_READ: IoCommand(decode_vector, read, READS, HOST_READ),
    },
    admin_commands={
        AdminOpcode.OCSSD_GEOMETRY: AdminCommand(identity, CommandEffects.CSUPP),
        AdminOpcode.OCSSD_GET_BAD_BLOCKS: AdminCommand(get_bad_blocks, CommandEffects.CSUPP),
        AdminOpcode.OCSSD_SET_BAD_BLOCKS: AdminCommand(set_bad_blocks, CommandEffects.CSUPP),
    },
    describe=describe,
)
Ocssd12Namespace.kind = OCSSD12
