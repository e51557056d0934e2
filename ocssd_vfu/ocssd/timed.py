"""OCSSD 2.0 commands through the flash timing model (serve --timing; timing/model.py).

A command's outcome is decided first (namespace.py); then, unless it was refused as
invalid, its media work is charged to the namespace's model and its completion held until
then. PU = grp * num_pu + pu; a chunk is the model's block and sec // ws_opt its page, so
TRDT reads one ws_opt unit, TWRT programs one, TCRST resets one chunk (a read of unwritten
sectors is sensed too). Refusals (bad address, wrong state, DULBE, DMA) complete at once.
"""

from __future__ import annotations

from ocssd_vfu.nvme.kind import CommandContext
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.timing.model import FlashPage

WRITE_OUTCOMES = (Status.SUCCESS, Status.WRITE_FAIL_CHUNK_EARLY_CLOSE)  # media went to work
RESET_OUTCOMES = (Status.SUCCESS, Status.OFFLINE_CHUNK)               # an injected failure


def sectors(ns: OcssdNamespace, lbas: list[int], skip: int = 0) -> list[tuple[int, FlashPage]]:
    """(PU, page) of each LBA whose bit in `skip` is clear."""
    locate, num_chk, ws_opt = ns.address.locate, ns.geometry.num_chk, ns.geometry.ws_opt
    found = []
    for i, lba in enumerate(lbas):
        where = locate(lba)
        if where is None or skip >> i & 1:
            continue
        pu, block = divmod(where[0], num_chk)
        found.append((pu, FlashPage(block, where[1] // ws_opt)))
    return found


def read(ctx: CommandContext, ns: OcssdNamespace, lbas: list[int], status: int) -> None:
    if ns.timing is not None and status == Status.SUCCESS:
        ctx.hold_until(ns.timing.read_sectors(ctx.now_ns, sectors(ns, lbas)))


def write(ctx: CommandContext, ns: OcssdNamespace, lbas: list[int], status: int,
          failed: int) -> None:
    """The sectors actually written (an injected failure closes the chunk early)."""
    if ns.timing is not None and status & ~DNR in WRITE_OUTCOMES:
        ctx.hold_until(ns.timing.program_sectors(ctx.now_ns, sectors(ns, lbas, failed)))


def reset(ctx: CommandContext, ns: OcssdNamespace, lbas: list[int], status: int,
          failed: int) -> None:
    """One TCRST per chunk reset; an injected failure (Offline Chunk) was attempted, so it
    takes its TCRST too."""
    if ns.timing is None or status & ~DNR not in RESET_OUTCOMES:
        return
    skip = 0 if status & ~DNR == Status.OFFLINE_CHUNK else failed
    chunks = {(pu, page.block) for pu, page in sectors(ns, lbas, skip)}
    ctx.hold_until(ns.timing.erase_blocks(ctx.now_ns, [pu for pu, _ in sorted(chunks)]))
