"""The plain NVM namespace's commands: its kind (nvme/kind.py) registered here.

I/O: Read, Write and Compare move data through `dptr` and metadata through MPTR
(separate buffer) or within the data (extended LBA); Write Zeroes (DEAC
deallocates), Dataset Management (deallocate) and Write Uncorrectable carry no
data. Every check runs before any byte moves. Each table entry carries its
Commands Supported and Effects bits (`offered` by the core from this table: log
05h and ONCS cannot disagree with dispatch) and whether it counts as a host read
or write in the SMART / Health log. Admin: Format NVM (offered while the
controller has a plain namespace).
"""

from __future__ import annotations

import logging

from ocssd_vfu.dma import dptr
from ocssd_vfu.nvme.command import OK, Command, Result, fail_no_retry
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.kind import (
    AdminCommand,
    CommandContext,
    IoCommand,
    NamespaceKind,
    check_transfer,
    deallocation_ranges,
)
from ocssd_vfu.plain.fastpath import FastPath
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.commands import (
    WRITE_ZEROES_DEAC,
    FormatNvmCdw10,
    lba_range,
)
from ocssd_vfu.spec.nvme import AdminOpcode, CommandEffects, IoOpcode
from ocssd_vfu.spec.status import Status

log = logging.getLogger("ocssd_vfu.nvme")

READS = CommandEffects.CSUPP
CHANGES = CommandEffects.CSUPP | CommandEffects.LBCC

Range = tuple[int, int]  # SLBA, NLB (1-based): what the block commands decode


def decode_range(ctx: CommandContext, ns: PlainNamespace, cmd: Command) -> Range:
    return lba_range(cmd.cdw10, cmd.cdw11, cmd.cdw12)


def _check_transfer(ctx: CommandContext, ns: PlainNamespace, slba: int, nlb: int) -> int:
    """A data transfer's range: within MDTS (metadata included in an extended format),
    within the namespace."""
    return check_transfer(ctx, ns.host_block_size, ns.nlbas, slba, nlb)


def _check_read(ctx: CommandContext, ns: PlainNamespace, slba: int, nlb: int) -> int:
    status = _check_transfer(ctx, ns, slba, nlb)
    dulbe = ctx.features.dulbe
    if not status and (ns.uncorrectable or dulbe):
        status = ns.check_readable(slba, nlb, dulbe)
    return status


def _move_blocks(ctx: CommandContext, ns: PlainNamespace, cmd: Command, slba: int, nlb: int,
                 to_guest: bool) -> int:
    """Data and metadata of a checked range between the host's buffers and the blocks
    (an MPTR of 0 is no metadata buffer: reads deliver none, writes keep the stored one)."""
    if not ns.md_size or (not ns.extended and not cmd.mptr):
        return dptr.move_data(ctx.memory, cmd, ctx.page_size, [ns.data(slba, nlb)], to_guest)
    if ns.extended:
        return dptr.move_data(ctx.memory, cmd, ctx.page_size, ns.host_segments(slba, nlb),
                              to_guest)
    status, metadata = dptr.move(ctx.memory, cmd, ctx.page_size, [ns.data(slba, nlb)],
                                 nlb * ns.md_size, to_guest)
    if status:
        return status
    assert metadata is not None  # MPTR is not 0
    if to_guest:
        metadata.view[:] = ns.metadata(slba, nlb)
        metadata.commit()
    else:
        ns.metadata(slba, nlb)[:] = metadata.view
    return Status.SUCCESS


def read(ctx: CommandContext, ns: PlainNamespace, cmd: Command, blocks: Range) -> Result:
    slba, nlb = blocks
    status = _check_read(ctx, ns, slba, nlb)
    if status:
        return (status, 0)
    return (_move_blocks(ctx, ns, cmd, slba, nlb, to_guest=True), 0)


def write(ctx: CommandContext, ns: PlainNamespace, cmd: Command, blocks: Range) -> Result:
    slba, nlb = blocks
    status = _check_transfer(ctx, ns, slba, nlb) or ns.reserve(slba, nlb) or \
        _move_blocks(ctx, ns, cmd, slba, nlb, to_guest=False)
    if not status and ns.uncorrectable:
        ns.written(slba, nlb)
    return (status, 0)


def compare(ctx: CommandContext, ns: PlainNamespace, cmd: Command, blocks: Range) -> Result:
    """The host's buffer (and separate metadata, unless MPTR is 0) against the blocks:
    Compare Failure if any byte differs."""
    slba, nlb = blocks
    status = _check_read(ctx, ns, slba, nlb)
    if status:
        return (status, 0)
    host = bytearray(nlb * ns.host_block_size)
    separate_metadata = 0 if ns.extended else nlb * ns.md_size
    status, metadata = dptr.move(ctx.memory, cmd, ctx.page_size, [memoryview(host)],
                                 separate_metadata, to_guest=False)
    if status:
        return (status, 0)
    if host != b"".join(ns.host_segments(slba, nlb)) or (
            metadata is not None and metadata.view != ns.metadata(slba, nlb)):
        return fail_no_retry(Status.COMPARE_FAILURE)
    return OK


def write_zeroes(ctx: CommandContext, ns: PlainNamespace, cmd: Command, blocks: Range) -> Result:
    slba, nlb = blocks
    status = ns.check_range(slba, nlb)
    if status:
        return (status, 0)
    if cmd.cdw12 & WRITE_ZEROES_DEAC:
        ns.deallocate(slba, nlb)
    else:
        status = ns.reserve(slba, nlb)
        if status:
            return (status, 0)
        ns.zero(slba, nlb)
    return OK


def write_uncorrectable(ctx: CommandContext, ns: PlainNamespace, cmd: Command,
                        blocks: Range) -> Result:
    slba, nlb = blocks
    status = ns.check_range(slba, nlb)
    if status:
        return (status, 0)
    ns.make_uncorrectable(slba, nlb)
    return OK


def decode_nothing(ctx: CommandContext, ns: PlainNamespace, cmd: Command) -> None:
    """Dataset Management's ranges are in its data: read when it runs."""


def dataset_management(ctx: CommandContext, ns: PlainNamespace, cmd: Command,
                       decoded: None) -> Result:
    """Deallocate every range (all checked first); other attributes are hints, ignored."""
    status, ranges = deallocation_ranges(ctx, cmd, ns.nlbas)
    if status:
        return (status, 0)
    for slba, length in ranges:
        ns.deallocate(slba, length)
    return OK


# -- Format NVM ---------------------------------------------------------------------------
SES_NONE, SES_USER_DATA_ERASE = 0, 1


def format_nvm(ctx: CommandContext, cmd: Command) -> Result:
    """LBAF and MSET per namespace (or all: NSID FFFFFFFFh); no protection information;
    SES 1 erases the whole file, cryptographic erase (2) is not offered (FNA bit 2)."""
    fields = FormatNvmCdw10.parse(cmd.cdw10)
    if cmd.nsid == 0xFFFFFFFF:
        targets = list(ctx.namespaces.values())
    elif cmd.nsid in ctx.namespaces:
        targets = [ctx.namespaces[cmd.nsid]]
    else:
        return fail_no_retry(Status.INVALID_NAMESPACE)
    if fields.ses > SES_USER_DATA_ERASE:
        return fail_no_retry(Status.INVALID_FIELD)
    plain = [ns for ns in targets if isinstance(ns, PlainNamespace)]
    if fields.pi or len(plain) != len(targets) or any(
            fields.lbaf >= len(ns.formats) for ns in plain):
        return fail_no_retry(Status.INVALID_FORMAT)
    for ns in plain:
        if fields.ses == SES_USER_DATA_ERASE:
            ns.erase()
        ns.format(fields.lbaf, bool(fields.mset))
        log.info("namespace %d now has LBA format %d: serve the image again with --sec-size %d "
                 "--md-size %d%s to see the same blocks", ns.nsid, fields.lbaf, ns.lba_size,
                 ns.md_size, " --extended-lba" if fields.mset else "")
    return OK


def describe(ns: PlainNamespace, cmd: Command, decoded: Range | None) -> dict[str, object]:
    if decoded is None or cmd.opc not in (IoOpcode.READ, IoOpcode.WRITE):
        return {}
    return {"slba": decoded[0], "nlb": decoded[1]}


PLAIN = NamespaceKind(
    name="plain NVM",
    io_commands={
        IoOpcode.WRITE: IoCommand(decode_range, write, CHANGES, HOST_WRITE),
        IoOpcode.READ: IoCommand(decode_range, read, READS, HOST_READ),
        IoOpcode.WRITE_UNCORRECTABLE: IoCommand(decode_range, write_uncorrectable, CHANGES),
        IoOpcode.COMPARE: IoCommand(decode_range, compare, READS, HOST_READ),
        IoOpcode.WRITE_ZEROES: IoCommand(decode_range, write_zeroes, CHANGES),
        IoOpcode.DATASET_MANAGEMENT: IoCommand(decode_nothing, dataset_management, CHANGES),
    },
    admin_commands={
        AdminOpcode.FORMAT_NVM: AdminCommand(
            format_nvm, CommandEffects.CSUPP | CommandEffects.LBCC | CommandEffects.NCC
            | CommandEffects.CSE_ALL_NAMESPACES),
    },
    describe=describe,
    fast_path=FastPath,
)
PlainNamespace.kind = PLAIN
