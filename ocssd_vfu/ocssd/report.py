"""`ocssd-vfu image info` and `image chunks`: an image's geometry and chunk log,
checked and printed (chunk lines in `nvme lnvm chunk-log`'s format)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.media.ocssd_image import ImageDescription, NamespaceLayout, describe
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.ocssd.chunks import OFFLINE_WP
from ocssd_vfu.ocssd.geometry import AddressFormat
from ocssd_vfu.spec.ocssd import CHUNK_DESCRIPTOR_FORMAT, CHUNK_DESCRIPTOR_SIZE, ChunkState

STATE_NAMES = {ChunkState.FREE: "FREE", ChunkState.CLOSED: "CLOSED", ChunkState.OPEN: "OPEN",
               ChunkState.OFFLINE: "OFFLINE"}
TYPE_NAMES = {1: "SEQWRITE_REQ", 2: "RANDWRITE_ALLOWED"}


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

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "UNKNOWN")  # type: ignore[call-overload]

    def nvme_cli_line(self) -> str:
        """As nvme-cli 1.12's `lnvm chunk-log` prints a descriptor."""
        kind = TYPE_NAMES.get(self.type & 0xF, "UNKNOWN")
        attr = "DEVIATED" if self.type & 0xF0 == 0x10 else "NONE"
        return (f" [{self.index:5d}] {{ SLBA: 0x{self.slba:016x}, WP: 0x{self.wp:016x}, "
                f"CNLB: 0x{self.cnlb:016x}, State: {self.state_name:<8s}, Type: {kind:<20s}, "
                f"Attr: {attr:<8s}, WLI: {self.wli:4d} }}")


def chunks_of(log: bytes | memoryview, layout: NamespaceLayout) -> Iterator[Chunk]:
    g = layout.geometry
    for index, (cs, ct, wli, slba, cnlb, wp) in enumerate(
            CHUNK_DESCRIPTOR_FORMAT.iter_unpack(log)):
        pu_index, chk = divmod(index, g.num_chk)
        grp, pu = divmod(pu_index, g.num_pu)
        yield Chunk(layout.index + 1, index, grp, pu, chk, cs, ct, wli, slba, cnlb, wp)


def problems(chunk: Chunk, layout: NamespaceLayout) -> list[str]:
    """What is inconsistent in one descriptor (empty when it is sound)."""
    g = layout.geometry
    where = f"namespace {chunk.nsid} chunk {chunk.index} (grp {chunk.grp} pu {chunk.pu} " \
            f"chk {chunk.chk})"
    found = []
    if chunk.state not in (1, 2, 4, 8):
        found.append(f"{where}: state {chunk.state:#x} is not exactly one of FREE, CLOSED, "
                     "OPEN, OFFLINE")
    if chunk.type & 0x3 not in (1, 2) or chunk.type & ~0x13:
        found.append(f"{where}: type {chunk.type:#x} is neither sequential nor random")
    expected_slba = AddressFormat(g).chunk_lba(chunk.index)
    if chunk.slba != expected_slba:
        found.append(f"{where}: slba {chunk.slba:#x}, expected {expected_slba:#x}")
    if chunk.cnlb != g.num_sec and not chunk.type & 0x10:
        found.append(f"{where}: cnlb {chunk.cnlb}, expected {g.num_sec}")
    if chunk.state == ChunkState.FREE and chunk.wp:
        found.append(f"{where}: FREE with wp {chunk.wp}")
    if chunk.state in (ChunkState.OPEN, ChunkState.CLOSED) and chunk.wp > chunk.cnlb:
        found.append(f"{where}: wp {chunk.wp} beyond cnlb {chunk.cnlb}")
    if chunk.state == ChunkState.OPEN and chunk.wp >= chunk.cnlb and chunk.type & 1:
        found.append(f"{where}: OPEN with wp {chunk.wp} = cnlb (should be CLOSED)")
    if chunk.state == ChunkState.OFFLINE and chunk.wp not in (OFFLINE_WP, 0) \
            and chunk.wp > chunk.cnlb:
        found.append(f"{where}: OFFLINE with wp {chunk.wp}")
    return found


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
            size = layout.geometry.chunks * CHUNK_DESCRIPTOR_SIZE
            log = os.pread(fd, size, layout.log_offset)
            for chunk in chunks_of(log, layout):
                chunks.append(chunk)
                found += problems(chunk, layout)
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
    written = sum(min(c.wp, c.cnlb) for c in report.chunks
                  if c.state in (ChunkState.OPEN, ChunkState.CLOSED))
    lines.append(f"written    : {written} sectors below write pointers")
    verdict = f"{len(report.problems)} problem(s)" if report.problems else "OK"
    lines.append(f"check      : {verdict}")
    return lines
