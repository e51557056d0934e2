"""An OCSSD image opened as FTL namespaces, and the mode-switch rules.

Each namespace of the image carries its own FTL (they share a geometry). What a
namespace's media holds decides what `serve` may do with it (ftl.recovery.contents):

| holds                     | --mode ftl                  | --mode ocssd            |
|---------------------------|-----------------------------|-------------------------|
| nothing (every chunk free)| formatted                   | served                  |
| an FTL                    | opened (recovered)          | refused                 |
| pblk / Open-Channel data  | refused                     | served                  |

A refusal is one line naming what the image holds; `--reformat` overrides it by
erasing the media first (for --mode ftl: a new FTL; for --mode ocssd: every chunk of
a namespace holding an FTL reset, so pblk finds a blank device; other data is kept).
A different --op-percent on an FTL image is refused the same way: the capacity is
fixed when the FTL is formatted.

The rules are checked on a read-only mapping (`probe`), before the image is opened
for writing, so a refused start leaves the file as it was.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ocssd_vfu.dma import native
from ocssd_vfu.ftl import stats
from ocssd_vfu.ftl.capacity import CapacityError
from ocssd_vfu.ftl.core import Ftl, FtlOptions
from ocssd_vfu.ftl.flash import Flash
from ocssd_vfu.ftl.media import Ocssd12Flash, Ocssd20Flash
from ocssd_vfu.ftl.recovery import Contents, NotFormatted, contents, find_superblock, open_ftl
from ocssd_vfu.ftlns.namespace import FTL_LBA_SIZE, FtlNamespace
from ocssd_vfu.media.ocssd12_image import Ocssd12Image
from ocssd_vfu.media.ocssd_image import OcssdImage
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.openchannel.faults import FaultBook
from ocssd_vfu.spec.ocssd import ChunkState


class _ReadOnly:
    """The file as it is, copy-on-write: never extended, loaded or written (a recovery
    run on it to report the figures programs staged sectors in private pages only).
    MAP_NORESERVE: a private writable mapping is otherwise charged in full against the
    commit limit, and an image larger than RAM (a sparse 64 GiB one) could not be probed,
    so could not be served; only the few pages a recovery writes take memory."""

    fd: int

    def _map(self, size: int, file_size: int) -> mmap.mmap:
        return mmap.mmap(self.fd, min(size, file_size),
                         mmap.MAP_PRIVATE | native.lib.MAP_NORESERVE,
                         mmap.PROT_READ | mmap.PROT_WRITE)


class _ProbeImage20(_ReadOnly, OcssdImage):
    pass


class _ProbeImage12(_ReadOnly, Ocssd12Image):
    pass


Image = OcssdImage | Ocssd12Image


def flashes(image: Image, faults: FaultBook | None = None) -> list[Flash]:
    """The Flash of each namespace of the image, in NSID order."""
    if isinstance(image, Ocssd12Image):
        return [Ocssd12Flash(layout.geometry, *image.namespace_views(layout), faults)
                for layout in image.description.layouts()]
    return [Ocssd20Flash(layout.geometry, *image.namespace_views(layout), faults)
            for layout in image.description.layouts()]


def written_chunks(flash: Flash) -> int:
    return sum(flash.chunk_info(chunk).state not in (ChunkState.FREE, ChunkState.OFFLINE)
               for chunk in range(flash.layout.chunks))


class Held(NamedTuple):
    contents: Contents
    phrase: str                 # names it in a refusal
    op_percent: int | None      # an FTL's


def describe_contents(flash: Flash) -> Held:
    """What the media holds."""
    held = contents(flash)
    if held == Contents.FTL:
        found = find_superblock(flash)
        assert found is not None
        superblock = found[1]
        return Held(held, f"an FTL (--mode ftl, op {superblock.op_percent} %, "
                          f"{superblock.logical_blocks} blocks of {FTL_LBA_SIZE} bytes)",
                    superblock.op_percent)
    if held == Contents.EMPTY:
        return Held(held, held.value, None)
    return Held(held, f"{held.value} ({written_chunks(flash)} chunks written)", None)


def probe(path: Any, spec_12: bool) -> list[Held]:
    """What each namespace of the image holds, read without opening it for writing."""
    image = _ProbeImage12(path, volatile=True) if spec_12 else _ProbeImage20(path, volatile=True)
    try:
        return [describe_contents(flash) for flash in flashes(image)]
    finally:
        image.close()


def report_lines(path: Any, spec_12: bool) -> tuple[list[str], list[str]]:
    """`image info`'s lines about the FTL of each namespace (none if the image holds no
    FTL) and its problems: the FTL recovered on a private copy of the mapping, as
    `serve --mode ftl` would (counters as of the newest checkpoint)."""
    image = _ProbeImage12(path, volatile=True) if spec_12 else _ProbeImage20(path, volatile=True)
    lines: list[str] = []
    problems: list[str] = []
    try:
        for nsid, flash in enumerate(flashes(image), start=1):
            if contents(flash) != Contents.FTL:
                continue
            try:
                ftl = open_ftl(flash)
            except NotFormatted as exc:
                problems.append(f"namespace {nsid}: FTL: {exc}")
                continue
            lines += _figures(nsid, ftl)
    finally:
        image.close()
    return lines, problems


def _figures(nsid: int, ftl: Ftl) -> list[str]:
    s = stats.collect(ftl)
    histogram = ", ".join(f"{label} {count}" for label, count in zip(
        ["0"] + [f"<={tenth * 10}%" for tenth in range(1, 11)], s.valid_histogram,
        strict=True))
    return [
        f"FTL ns {nsid}   : op {ftl.plan.op_percent} %, {s.logical_blocks} logical blocks of "
        f"{FTL_LBA_SIZE} bytes ({s.logical_blocks * FTL_LBA_SIZE // (1 << 20)} MiB), "
        f"{s.mapped_blocks} mapped",
        f"  written  : host {s.host_sectors} sectors, media {s.media_sectors} (GC "
        f"{s.gc_sectors}, padding {s.pad_sectors}, metadata {s.meta_sectors}), "
        f"WAF {s.waf:.2f}",
        f"  GC       : {s.gc_runs} runs, {s.chunks_erased} chunks erased",
        f"  chunks   : free {s.free_chunks}, data {s.data_chunks}, retired "
        f"{s.retired_chunks}, offline {s.offline_chunks}",
        f"  valid    : data chunks by valid sectors: {histogram}",
        f"  wear     : min {s.wear_min}, max {s.wear_max}, mean {s.wear_mean:.2f}",
    ]


def holds_ftl(path: Any, spec_12: bool) -> bool:
    return any(held.contents == Contents.FTL for held in probe(path, spec_12))


def refuse_for_ocssd(path: Any, spec_12: bool) -> None:
    """--mode ocssd (or auto as Open-Channel) on an FTL image: ImageError, one line."""
    for held in probe(path, spec_12):
        if held.contents == Contents.FTL:
            raise ImageError(f"{path} holds {held.phrase}: serve it with --mode ftl, or pass "
                             "--reformat to erase it for --mode ocssd")


def check_for_ftl(path: Any, spec_12: bool, options: FtlOptions, op_given: bool,
                  chunk_states_given: bool, reformat: bool) -> None:
    """--mode ftl's refusals (one line), before anything is written."""
    if reformat:
        return
    for held in probe(path, spec_12):
        if held.contents in (Contents.PBLK, Contents.OTHER):
            raise ImageError(f"{path} holds {held.phrase}: --mode ftl would erase it; pass "
                             "--reformat to do so")
        if held.contents == Contents.FTL and chunk_states_given:
            raise ImageError(f"{path} already holds {held.phrase}: --chunk-state applies "
                             "only when an FTL is formatted (--reformat erases it)")
        if held.contents == Contents.FTL and op_given \
                and held.op_percent != options.op_percent:
            raise ImageError(f"{path} holds {held.phrase}: its capacity is fixed; pass "
                             "--reformat to format it with --op-percent "
                             f"{options.op_percent}")


def erase_ftls(image: Image) -> None:
    """--reformat for --mode ocssd: every namespace that holds an FTL erased (any other
    data is left alone: --reformat only overrides a refusal)."""
    for flash in flashes(image):
        if contents(flash) == Contents.FTL:
            erase(flash)


def erase(flash: Flash) -> None:
    """Reset every written chunk."""
    for chunk in range(flash.layout.chunks):
        if flash.chunk_info(chunk).state not in (ChunkState.FREE, ChunkState.OFFLINE):
            flash.reset(chunk)


def open_namespaces(image: Image, faults: FaultBook, options: FtlOptions, reformat: bool,
                    before_format: Callable[[int, Flash], None] | None = None
                    ) -> tuple[dict[int, FtlNamespace], bool]:
    """An FtlNamespace per namespace of the image: its FTL recovered, or formatted (an
    empty namespace, or any with `reformat`; `before_format(nsid, flash)` runs first,
    e.g. to impose --chunk-state lines). The namespaces, and whether any was formatted."""
    namespaces: dict[int, FtlNamespace] = {}
    formatted = False
    for nsid, flash in enumerate(flashes(image, faults), start=1):
        if flash.layout.sec_size != FTL_LBA_SIZE:
            raise ImageError(f"--mode ftl serves 4096-byte blocks: this image's sectors are "
                             f"{flash.layout.sec_size} bytes")
        if not reformat and contents(flash) == Contents.FTL:
            try:
                ftl = open_ftl(flash, options)
            except NotFormatted as exc:
                raise ImageError(f"namespace {nsid}: {exc}") from None
        else:
            if before_format is not None:
                before_format(nsid, flash)
            try:
                ftl = Ftl.format(flash, options)
            except CapacityError as exc:
                raise ImageError(f"namespace {nsid}: {exc}") from None
            formatted = True
        namespaces[nsid] = FtlNamespace(nsid, ftl)
    return namespaces, formatted


def summary(namespaces: Sequence[FtlNamespace]) -> str:
    ftl = namespaces[0].ftl
    return (f"{ftl.logical_blocks} x {FTL_LBA_SIZE}-byte blocks (op {ftl.plan.op_percent} %, "
            f"{ftl.mapping.mapped} mapped)")
