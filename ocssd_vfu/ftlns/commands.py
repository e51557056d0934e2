"""The FTL namespace's commands: its kind (nvme/kind.py) registered here.

I/O: Read and Write move whole 4 KiB blocks between the host's buffer and the FTL
(no metadata: MPTR is ignored); Write Zeroes and Dataset Management (deallocate)
unmap blocks, which then read zeroes. A write the FTL cannot place (the media worn
out: too many chunks gone bad for GC to free one) fails with Write Fault. Read and
Write count in SMART / Health as host reads and writes, so Data Units Written is
what the host wrote, not what the media programmed (that is in log page C0h).

With --timing (ftlns/timed.py) a command's completion is held until its media work,
GC moves and erases included, completes in the timing model; refusals complete at once.

Log page C0h (vendor specific): the FTL's figures, `FtlLogPage` in spec/ftl.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ocssd_vfu.dma import dptr
from ocssd_vfu.ftl.stats import log_page
from ocssd_vfu.ftl.stream import NoSpace
from ocssd_vfu.ftlns.namespace import FtlNamespace
from ocssd_vfu.nvme.command import OK, Command, Result, fail_no_retry
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.kind import (
    CommandContext,
    IoCommand,
    NamespaceKind,
    check_lba_range,
    check_transfer,
    deallocation_ranges,
    to_host,
)
from ocssd_vfu.spec.commands import lba_range
from ocssd_vfu.spec.ftl import FTL_LOG_PAGE_ID
from ocssd_vfu.spec.nvme import CommandEffects, IoOpcode
from ocssd_vfu.spec.status import Status

log = logging.getLogger("ocssd_vfu.ftl")

READS = CommandEffects.CSUPP
CHANGES = CommandEffects.CSUPP | CommandEffects.LBCC

Range = tuple[int, int]  # SLBA, NLB (1-based)


def decode_range(ctx: CommandContext, ns: FtlNamespace, cmd: Command) -> Range:
    ns.start_command()
    return lba_range(cmd.cdw10, cmd.cdw11, cmd.cdw12)


def _check_transfer(ctx: CommandContext, ns: FtlNamespace, slba: int, nlb: int) -> int:
    return check_transfer(ctx, ns.lba_size, ns.nlbas, slba, nlb)


def read(ctx: CommandContext, ns: FtlNamespace, cmd: Command, blocks: Range) -> Result:
    slba, nlb = blocks
    status = _check_transfer(ctx, ns, slba, nlb)
    if status:
        return (status, 0)
    data = bytearray(ns.ftl.read(slba, nlb))
    status = dptr.move_data(ctx.memory, cmd, ctx.page_size, [memoryview(data)], True)
    _hold(ctx, ns)
    return (status, 0)


def _hold(ctx: CommandContext, ns: FtlNamespace) -> None:
    """Hold the completion until the command's media work is done (--timing)."""
    due = ns.end_command(ctx.now_ns)
    if due is not None:
        ctx.hold_until(due)


def write(ctx: CommandContext, ns: FtlNamespace, cmd: Command, blocks: Range) -> Result:
    slba, nlb = blocks
    status = _check_transfer(ctx, ns, slba, nlb)
    if status:
        return (status, 0)
    data = bytearray(nlb * ns.lba_size)
    status = dptr.move_data(ctx.memory, cmd, ctx.page_size, [memoryview(data)], False)
    if status:
        return (status, 0)
    return _changing(ctx, ns, "write", lambda: ns.ftl.write(slba, memoryview(data)))


def _changing(ctx: CommandContext, ns: FtlNamespace, what: str,
              change: Callable[[], None]) -> Result:
    """Run a command's change of the FTL: Write Fault if the media is worn out (no chunk
    can be opened even after GC). Its media work is timed either way (GC ran)."""
    try:
        change()
    except NoSpace as exc:
        log.error("namespace %d: %s failed: %s", ns.nsid, what, exc)
        _hold(ctx, ns)
        return fail_no_retry(Status.WRITE_FAULT)
    _hold(ctx, ns)
    return OK


def write_zeroes(ctx: CommandContext, ns: FtlNamespace, cmd: Command, blocks: Range) -> Result:
    """Unmapped blocks read zeroes, so Write Zeroes deallocates (DEAC or not)."""
    slba, nlb = blocks
    status = check_lba_range(ns.nlbas, slba, nlb)
    if status:
        return (status, 0)
    return _changing(ctx, ns, "write zeroes", lambda: ns.ftl.write_zeroes(slba, nlb))


def decode_nothing(ctx: CommandContext, ns: FtlNamespace, cmd: Command) -> None:
    """Dataset Management's ranges are in its data: read when it runs."""
    ns.start_command()


def dataset_management(ctx: CommandContext, ns: FtlNamespace, cmd: Command,
                       decoded: None) -> Result:
    """Deallocate every range (all checked first); other attributes are hints, ignored."""
    status, ranges = deallocation_ranges(ctx, cmd, ns.nlbas)
    if status:
        return (status, 0)
    if not ranges:
        return OK
    return _changing(ctx, ns, "deallocate", lambda: ns.ftl.deallocate(ranges))


def statistics(ctx: CommandContext, cmd: Command, offset: int, length: int) -> Result:
    """Log page C0h: the FTL's figures for the namespace (FtlLogPage), at any dword
    offset; beyond its 512 bytes, zeroes."""
    ns = ctx.namespaces.get(cmd.nsid)
    if ns is None:
        return fail_no_retry(Status.INVALID_NAMESPACE)
    if not isinstance(ns, FtlNamespace):
        return fail_no_retry(Status.INVALID_LOG_PAGE)
    page = log_page(ns.ftl)
    if offset & 0x3 or offset > len(page):
        return fail_no_retry(Status.INVALID_FIELD)
    return to_host(ctx, cmd, page[offset:offset + length].ljust(length, b"\0"))


def describe(ns: FtlNamespace, cmd: Command, decoded: Range | None) -> dict[str, object]:
    """The block range, and what the command became on the media (GC moves included)."""
    fields: dict[str, object] = {}
    if decoded is not None:
        fields.update(slba=decoded[0], nlb=decoded[1])
    if ns.media_ops:
        fields["media"] = [str(op) for op in ns.media_ops]
    return fields


FTL = NamespaceKind(
    name="FTL",
    io_commands={
        IoOpcode.WRITE: IoCommand(decode_range, write, CHANGES, HOST_WRITE),
        IoOpcode.READ: IoCommand(decode_range, read, READS, HOST_READ),
        IoOpcode.WRITE_ZEROES: IoCommand(decode_range, write_zeroes, CHANGES),
        IoOpcode.DATASET_MANAGEMENT: IoCommand(decode_nothing, dataset_management, CHANGES),
    },
    log_pages={FTL_LOG_PAGE_ID: statistics},
    describe=describe,
)
FtlNamespace.kind = FTL
