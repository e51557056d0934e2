"""The address list of a vector command (OCSSD 2.0 §2.4, 1.2 §3.3; the 1.2 bad-block
Set F1h too): CDW12 NLB (0-based, at most 63) counts the addresses; with one,
CDW10-11 is the address itself, else the guest address of NLB + 1 u64 addresses
(plain contiguous DMA, whatever PSDT says)."""

from __future__ import annotations

import struct

from ocssd_vfu.dma.memory import DmaError
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.nvme.kind import CommandContext, CommandError
from ocssd_vfu.spec.commands import vector_count
from ocssd_vfu.spec.ocssd import MAX_VECTOR_LBAS
from ocssd_vfu.spec.status import DNR, Status


def vector_addresses(ctx: CommandContext, cmd: Command) -> list[int]:
    """The command's LBAs (2.0) or PPAs (1.2); CommandError if the list cannot be had."""
    count = vector_count(cmd.cdw12)
    if count > MAX_VECTOR_LBAS:
        raise CommandError(Status.INVALID_FIELD | DNR)
    first = cmd.cdw10 | cmd.cdw11 << 32
    if count == 1:
        return [first]
    try:
        return list(struct.unpack(f"<{count}Q", ctx.memory.read(first, count * 8)))
    except DmaError:
        raise CommandError(Status.DATA_TRANSFER_ERROR) from None


def decode_vector(ctx: CommandContext, ns: object, cmd: Command) -> list[int]:
    """`vector_addresses` as a kind's IoCommand decode."""
    return vector_addresses(ctx, cmd)
