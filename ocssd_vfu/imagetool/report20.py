"""`ocssd-vfu image info` and `image chunks`: an image's geometry and chunk log,
checked and printed (chunk lines in `nvme lnvm chunk-log`'s format)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.geometry.ocssd20 import AddressFormat
from ocssd_vfu.media.ocssd_image import ImageDescription, NamespaceLayout, describe
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.ocssd.chunks import SIZE_DEVIATES, Problem, chunk_problems, settled_limit
from ocssd_vfu.spec.ocssd import (
    CHUNK_DESCRIPTOR_SIZE,
    CHUNK_RECORD_FORMAT,
    ChunkState,
    ChunkType,
)

STATE_NAMES: dict[int, str] = {int(state): str(state.name) for state in ChunkState}
# nvme-cli's names of the type nibble; the attribute nibble only has "size deviates".
TYPE_NAMES = {int(ChunkType.SEQUENTIAL_WRITE): "SEQWRITE_REQ",
              int(ChunkType.RANDOM_WRITE): "RANDWRITE_ALLOWED"}


@dataclass(frozen=True)
class Chunk:
    nsid: int
    index: int
    grp: int
    pu: int
    chk: int
    state: int
    type: int
    wli: int
    slba: int
    cnlb: int
    wp: int
    erases: int = 0       # resets so far (ocssd/chunks.py: kept, or the WLI byte)
    erases_kept: bool = False   # the count is in the image's reserved bytes

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "UNKNOWN")

    def nvme_cli_line(self) -> str:
        """As nvme-cli 1.12's `lnvm chunk-log` prints a descriptor."""
        kind = TYPE_NAMES.get(self.type & 0xF, "UNKNOWN")
        attr = "DEVIATED" if self.type & 0xF0 == SIZE_DEVIATES else "NONE"
        return (f" [{self.index:5d}] {{ SLBA: 0x{self.slba:016x}, WP: 0x{self.wp:016x}, "
                f"CNLB: 0x{self.cnlb:016x}, State: {self.state_name:<8s}, Type: {kind:<20s}, "
                f"Attr: {attr:<8s}, WLI: {self.wli:4d} }}")


def chunks_of(log: bytes | memoryview, layout: NamespaceLayout) -> Iterator[Chunk]:
    g = layout.geometry
    for index, (cs, ct, wli, kept, slba, cnlb, wp) in enumerate(
            CHUNK_RECORD_FORMAT.iter_unpack(log)):
        yield Chunk(layout.index + 1, index, *g.chunk_position(index), cs, ct, wli, slba, cnlb,
                    wp, kept or wli, bool(kept))


def problems(chunk: Chunk, address: AddressFormat) -> list[str]:
    """What is inconsistent in one descriptor (empty when it is sound)."""
    where = f"namespace {chunk.nsid} chunk {chunk.index} (grp {chunk.grp} pu {chunk.pu} " \
            f"chk {chunk.chk})"
    found = [f"{where}: {_problem_text(problem, chunk, address.geometry.num_sec)}"
             for problem in chunk_problems(chunk.state, chunk.type, chunk.wp, chunk.cnlb,
                                           address.geometry.num_sec)]
    expected_slba = address.chunk_lba(chunk.index)
    if chunk.slba != expected_slba:
        found.append(f"{where}: slba {chunk.slba:#x}, expected {expected_slba:#x}")
    return found


def _problem_text(problem: Problem, chunk: Chunk, clba: int) -> str:
    match problem:
        case Problem.STATE:
            return f"state {chunk.state:#x} is not exactly one of FREE, CLOSED, OPEN, OFFLINE"
        case Problem.TYPE:
            return f"type {chunk.type:#x} is neither sequential nor random"
        case Problem.CNLB:
            return f"cnlb {chunk.cnlb}, expected {clba}"
        case Problem.FREE_WITH_WP:
            return f"FREE with wp {chunk.wp}"
        case Problem.WP_BEYOND_CNLB:
            return f"wp {chunk.wp} beyond cnlb {chunk.cnlb}"
        case Problem.FULL_BUT_OPEN:
            return f"OPEN with wp {chunk.wp} = cnlb (should be CLOSED)"
        case Problem.OFFLINE_WP:
            return f"OFFLINE with wp {chunk.wp}"


@dataclass
class ImageReport:
    description: ImageDescription
    chunks: list[Chunk]
    problems: list[str]


def inspect(path: Path) -> ImageReport:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ImageError(f"cannot open image {path}: {exc.strerror}") from exc
    try:
        description = describe(fd, path)
        chunks: list[Chunk] = []
        found: list[str] = []
        for layout in description.layouts():
            address = AddressFormat(layout.geometry)
            size = layout.geometry.chunks * CHUNK_DESCRIPTOR_SIZE
            try:
                log = os.pread(fd, size, layout.log_offset)
            except OSError as exc:
                raise ImageError(f"cannot read image {path}: {exc.strerror}") from exc
            for chunk in chunks_of(log, layout):
                chunks.append(chunk)
                found += problems(chunk, address)
        return ImageReport(description, chunks, found)
    finally:
        os.close(fd)


def info_lines(path: Path, report: ImageReport) -> list[str]:
    d = report.description
    g = d.geometry
    lines = [
        f"image      : {path}",
        f"format     : qemu-nvme ocssd v1, {d.num_ns} namespace(s), OCSSD 2.0 geometry",
        f"file size  : {d.file_size} bytes (layout needs {d.full_size})",
        f"geometry   : num_grp {g.num_grp}, num_pu {g.num_pu}, num_chk {g.num_chk}, "
        f"clba {g.num_sec}",
        f"sectors    : {g.sec_size} bytes + {g.md_size} OOB, {g.sectors} per namespace "
        f"({g.sectors * g.sec_size // (1 << 20)} MiB)",
        f"lbaf       : grp_len {g.lens[0]}, pu_len {g.lens[1]}, chk_len {g.lens[2]}, "
        f"lbk_len {g.lens[3]}",
        f"write      : ws_min {g.ws_min}, ws_opt {g.ws_opt}, mw_cunits {g.mw_cunits}, "
        f"maxoc {g.maxoc}, maxocpu {g.maxocpu}, mccap {g.mccap:#x}",
    ]
    counts = Counter(chunk.state_name for chunk in report.chunks)
    lines.append("chunks     : " + ", ".join(
        f"{name} {counts.get(name, 0)}" for name in ("FREE", "OPEN", "CLOSED", "OFFLINE"))
        + (f", UNKNOWN {counts['UNKNOWN']}" if counts.get("UNKNOWN") else ""))
    wear = [chunk.wli for chunk in report.chunks]
    lines.append(f"wear (WLI) : min {min(wear)}, max {max(wear)}, "
                 f"mean {sum(wear) / len(wear):.2f}")
    if any(chunk.erases_kept for chunk in report.chunks):   # served with --pe-cycles
        erases = [chunk.erases for chunk in report.chunks]
        lines.append(f"erases     : min {min(erases)}, max {max(erases)}, "
                     f"mean {sum(erases) / len(erases):.2f} (P/E cycles spent)")
    written = sum(settled_limit(c.state, c.wp, c.cnlb) for c in report.chunks)
    lines.append(f"written    : {written} sectors below write pointers")
    verdict = f"{len(report.problems)} problem(s)" if report.problems else "OK"
    lines.append(f"check      : {verdict}")
    return lines
