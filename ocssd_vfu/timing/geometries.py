"""The model in force for an OCSSD geometry, and the geometry that reports it.

`serve --trdt/--twrt/--tcrst` (2.0) and `--trdt/--tprt/--tbet` (1.2) replace the image's
typical times for one run; each maximum is raised to at least its typical time, so the
geometry the guest reads (Geometry E2h, 1.2 Identity) stays self-consistent and always
equals the model. The image is never rewritten.

Which unit a time applies to (README "Timing model"):
- 2.0: TRDT reads one ws_opt unit of one PU, TWRT programs one ws_opt unit, TCRST resets
  one chunk. PU = grp * num_pu + pu; a chunk is a FlashPage block, sec // ws_opt its page.
- 1.2: tRDT reads one page of one plane (a multi-plane read senses all planes at once),
  tPRT programs one page (multi-plane: that page of every plane), tBET erases one block
  (multi-plane: of every plane). PU = ch * num_lun + lun.
"""

from __future__ import annotations

import dataclasses

from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.timing.model import FlashModel
from ocssd_vfu.timing.parameters import (
    DEFAULT_CHANNEL_MBPS,
    Layout,
    TimingParameters,
    default_buffer_sectors,
    ocssd12_cache_units,
)


def override_20(geometry: OcssdGeometry, trdt: int | None = None, twrt: int | None = None,
                tcrst: int | None = None) -> OcssdGeometry:
    g = geometry
    trdt = g.trdt if trdt is None else trdt
    twrt = g.twrt if twrt is None else twrt
    tcrst = g.tcrst if tcrst is None else tcrst
    return dataclasses.replace(g, trdt=trdt, trdm=max(g.trdm, trdt), twrt=twrt,
                               twrm=max(g.twrm, twrt), tcrst=tcrst, tcrsm=max(g.tcrsm, tcrst))


def override_12(geometry: Ocssd12Geometry, trdt: int | None = None, tprt: int | None = None,
                tbet: int | None = None) -> Ocssd12Geometry:
    g = geometry
    trdt = g.trdt if trdt is None else trdt
    tprt = g.tprt if tprt is None else tprt
    tbet = g.tbet if tbet is None else tbet
    return dataclasses.replace(g, trdt=trdt, trdm=max(g.trdm, trdt), tprt=tprt,
                               tprm=max(g.tprm, tprt), tbet=tbet, tbem=max(g.tbem, tbet))


def parameters_20(geometry: OcssdGeometry, channel_mbps: int = DEFAULT_CHANNEL_MBPS,
                  buffer_sectors: int | None = None) -> TimingParameters:
    """Buffer per PU: `buffer_sectors`, or MW_CUNITS + one ws_opt unit."""
    g = geometry
    if buffer_sectors is None:
        buffer_sectors = default_buffer_sectors(g.mw_cunits, g.ws_opt)
    return TimingParameters(read_ns=g.trdt, program_ns=g.twrt, erase_ns=g.tcrst,
                            sector_bytes=g.sec_size, page_sectors=g.ws_opt,
                            buffer_sectors_per_pu=buffer_sectors, channel_mbps=channel_mbps)


def parameters_12(geometry: Ocssd12Geometry, channel_mbps: int = DEFAULT_CHANNEL_MBPS,
                  buffer_sectors: int | None = None) -> TimingParameters:
    """Buffer per LUN: `buffer_sectors`, or Linux's MW_CUNITS (8 pages' sectors) + one
    multi-plane page."""
    g = geometry
    spp = g.sec_per_pg
    if buffer_sectors is None:
        buffer_sectors = default_buffer_sectors(ocssd12_cache_units(spp), spp * g.num_pln)
    return TimingParameters(read_ns=g.trdt, program_ns=g.tprt, erase_ns=g.tbet,
                            sector_bytes=g.sec_size, page_sectors=spp, planes=g.num_pln,
                            buffer_sectors_per_pu=buffer_sectors, channel_mbps=channel_mbps)


def model_20(geometry: OcssdGeometry, channel_mbps: int = DEFAULT_CHANNEL_MBPS,
             buffer_sectors: int | None = None) -> FlashModel:
    return FlashModel(parameters_20(geometry, channel_mbps, buffer_sectors),
                      Layout(geometry.num_grp, geometry.num_pu))


def model_12(geometry: Ocssd12Geometry, channel_mbps: int = DEFAULT_CHANNEL_MBPS,
             buffer_sectors: int | None = None) -> FlashModel:
    return FlashModel(parameters_12(geometry, channel_mbps, buffer_sectors),
                      Layout(geometry.num_ch, geometry.num_lun))
