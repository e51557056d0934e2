"""OCSSD 1.2 commands through the flash timing model (serve --timing; timing/model.py).

A command's outcome is decided first (namespace.py); then, unless it was refused as
invalid, its media work is charged to the namespace's model and its completion held until
then. PU = ch * num_lun + lun (a LUN); a FlashPage is (block, page, plane). tRDT reads one
page of one plane, or that page of every plane named by a multi-plane read; tPRT programs
one page, or that page of every plane (multi-plane); tBET erases one block of one plane,
or of every plane (multi-plane). A read of an erased page (Empty Page) or one failing ECC
was sensed: it takes its tRDT. Refusals (bad address, plane mode, DMA) complete at once.
"""

from __future__ import annotations

from ocssd_vfu.nvme.kind import CommandContext
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.spec.ocssd12 import MPOS_ERASE_SHIFT, MPOS_PROGRAM_SHIFT, MPOS_READ_SHIFT
from ocssd_vfu.spec.status import DNR, Status
from ocssd_vfu.timing.model import FlashPage

READ_OUTCOMES = (Status.SUCCESS, Status.OCSSD12_EMPTY_PAGE, Status.OCSSD12_HIGH_ECC,
                 Status.UNRECOVERED_READ)
CHANGE_OUTCOMES = (Status.SUCCESS, Status.OCSSD12_WRITE_FAIL)  # a failure took its time too


def sectors(ns: Ocssd12Namespace, ppas: list[int], skip: int = 0
            ) -> list[tuple[int, FlashPage]]:
    """(LUN, page) of each PPA whose bit in `skip` is clear."""
    locate, num_blk = ns.address.locate, ns.geometry.num_blk
    found = []
    for i, ppa in enumerate(ppas):
        where = locate(ppa)
        if where is None or skip >> i & 1:
            continue
        block, pg, pl, _ = where
        lun, blk = divmod(block, num_blk)
        found.append((lun, FlashPage(blk, pg, pl)))
    return found


def read(ctx: CommandContext, ns: Ocssd12Namespace, ppas: list[int], control: int,
         status: int) -> None:
    if ns.timing is not None and status & ~DNR in READ_OUTCOMES:
        multi = (ns.planes(control, MPOS_READ_SHIFT) or 1) > 1
        ctx.hold_until(ns.timing.read_sectors(ctx.now_ns, sectors(ns, ppas), multi))


def write(ctx: CommandContext, ns: Ocssd12Namespace, ppas: list[int], control: int,
          status: int, failed: int) -> None:
    if ns.timing is not None and status & ~DNR in CHANGE_OUTCOMES:
        multi = (ns.planes(control, MPOS_PROGRAM_SHIFT) or 1) > 1
        ctx.hold_until(ns.timing.program_sectors(ctx.now_ns, sectors(ns, ppas), multi))


def erase(ctx: CommandContext, ns: Ocssd12Namespace, ppas: list[int], control: int,
          status: int) -> None:
    """One tBET per block erased: per plane block, or per block in multi-plane mode."""
    if ns.timing is None or status & ~DNR not in CHANGE_OUTCOMES:
        return
    multi = (ns.planes(control, MPOS_ERASE_SHIFT) or 1) > 1
    blocks = {(lun, page.block, 0 if multi else page.plane)
              for lun, page in sectors(ns, ppas)}
    ctx.hold_until(ns.timing.erase_blocks(ctx.now_ns, [lun for lun, _, _ in sorted(blocks)]))


def read_linear(ctx: CommandContext, ns: Ocssd12Namespace, slba: int, nlb: int,
                status: int) -> None:
    """NVMe Read of the raw namespace: sectors in the image's order (namespace.py)."""
    if ns.timing is None or status != Status.SUCCESS:
        return
    g = ns.geometry
    found = []
    for sector in range(slba, slba + nlb):
        unit = sector // g.sec_per_pg
        block, plane = unit // (g.num_pln * g.num_pg), unit % g.num_pln
        lun, blk = divmod(block, g.num_blk)
        found.append((lun, FlashPage(blk, unit // g.num_pln % g.num_pg, plane)))
    ctx.hold_until(ns.timing.read_sectors(ctx.now_ns, found))
