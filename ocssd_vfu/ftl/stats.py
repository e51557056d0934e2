"""The FTL's figures: counters, write amplification, chunk and wear summaries, and
the vendor log page C0h that carries them (layout in ocssd_vfu.spec.ftl)."""

from __future__ import annotations

from dataclasses import dataclass

from ocssd_vfu.ftl.chunks import Role
from ocssd_vfu.ftl.core import Ftl
from ocssd_vfu.ftl.gc import GcPolicy
from ocssd_vfu.spec.ftl import (
    FTL_LOG_PAGE_SIZE,
    FTL_VERSION,
    VALID_HISTOGRAM_BUCKETS,
    FtlLogPage,
    GcPolicyCode,
)

GC_POLICY_CODES = {GcPolicy.GREEDY: GcPolicyCode.GREEDY,
                   GcPolicy.COST_BENEFIT: GcPolicyCode.COST_BENEFIT}


def write_amplification(host_sectors: int, media_sectors: int) -> float:
    """Sectors programmed per sector the host wrote (0 before the first host write)."""
    return media_sectors / host_sectors if host_sectors else 0.0


def valid_bucket(valid: int, clba: int) -> int:
    """0 for an empty chunk, else 1..10: the tenth of the chunk its valid sectors reach."""
    return -(-valid * (VALID_HISTOGRAM_BUCKETS - 1) // clba)


@dataclass(frozen=True)
class FtlStats:
    logical_blocks: int
    mapped_blocks: int
    host_sectors: int
    media_sectors: int
    gc_sectors: int
    pad_sectors: int
    meta_sectors: int
    gc_runs: int
    chunks_erased: int
    free_chunks: int
    data_chunks: int       # written chunks holding (or able to hold) host data
    retired_chunks: int
    offline_chunks: int
    valid_histogram: tuple[int, ...]
    wear_min: int
    wear_max: int
    wear_mean: float

    @property
    def waf(self) -> float:
        return write_amplification(self.host_sectors, self.media_sectors)


def collect(ftl: Ftl) -> FtlStats:
    book, clba = ftl.chunks, ftl.layout.clba
    data = [chunk for chunk, role in enumerate(book.role) if role in (Role.DATA, Role.OPEN)]
    histogram = [0] * VALID_HISTOGRAM_BUCKETS
    for chunk in data:
        histogram[valid_bucket(ftl.mapping.valid[chunk], clba)] += 1
    wear = [w for chunk, w in enumerate(book.wear) if book.role[chunk] != Role.OFFLINE]
    return FtlStats(
        logical_blocks=ftl.logical_blocks, mapped_blocks=ftl.mapping.mapped,
        **ftl.counters,
        free_chunks=book.free_count, data_chunks=len(data),
        retired_chunks=book.count(Role.RETIRED), offline_chunks=book.count(Role.OFFLINE),
        valid_histogram=tuple(histogram), wear_min=min(wear, default=0),
        wear_max=max(wear, default=0), wear_mean=sum(wear) / len(wear) if wear else 0.0)


def log_page(ftl: Ftl) -> bytes:
    """Get Log Page C0h: the FtlLogPage of `ftl` now."""
    s = collect(ftl)
    page = FtlLogPage.build(dict(
        version=FTL_VERSION, op_percent=ftl.plan.op_percent,
        gc_policy=GC_POLICY_CODES[ftl.options.gc_policy], gc_threshold=ftl.gc_threshold,
        logical_blocks=s.logical_blocks, mapped_blocks=s.mapped_blocks,
        counters=ftl.counters, waf_milli=round(s.waf * 1000), free_chunks=s.free_chunks,
        data_chunks=s.data_chunks, retired_chunks=s.retired_chunks,
        offline_chunks=s.offline_chunks, wear_min=s.wear_min, wear_max=s.wear_max,
        wear_avg_milli=round(s.wear_mean * 1000), valid_histogram=list(s.valid_histogram),
        reserved=bytes(356)))
    assert len(page) == FTL_LOG_PAGE_SIZE
    return page
