"""`ocssd-vfu image info` and `image chunks` of a 1.2 image: its identity, blocks
and bad-block tables, checked and printed (one line per block, all planes)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.media.ocssd12_image import Description12, describe
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.ocssd12.block_states import UNUSABLE
from ocssd_vfu.ocssd12.blocks import VALUES
from ocssd_vfu.spec.ocssd12 import BLOCK_RECORD_FORMAT, BLOCK_RECORD_SIZE, BlockValue

VALUE_NAMES = {int(value): value.name for value in BlockValue}
STATE_NAMES = ("FREE", "OPEN", "CLOSED", "OFFLINE")


@dataclass(frozen=True)
class Block:
    nsid: int
    index: int
    ch: int
    lun: int
    blk: int
    values: tuple[int, ...]   # per plane
    pages: tuple[int, ...]
    erases: tuple[int, ...]
    num_pg: int

    @property
    def state_name(self) -> str:
        """As Linux's chunk scan sees the block (nvm_bb_to_chunk, nvm_bb_chunk_scan)."""
        if self.values[0] or any(value & UNUSABLE for value in self.values):
            return "OFFLINE"
        if not any(self.pages):
            return "FREE"
        return "CLOSED" if all(p == self.num_pg for p in self.pages) else "OPEN"

    def line(self) -> str:
        bbt = "/".join(VALUE_NAMES.get(value, f"{value:#x}") for value in self.values)
        return (f" [{self.index:5d}] {{ ch: {self.ch:3d}, lun: {self.lun:3d}, "
                f"blk: {self.blk:5d}, State: {self.state_name:<8s}, "
                f"Pages: {'/'.join(map(str, self.pages))}, BBT: {bbt}, "
                f"Erases: {'/'.join(map(str, self.erases))} }}")

    def problems(self) -> list[str]:
        where = f"namespace {self.nsid} block {self.index} (ch {self.ch} lun {self.lun} " \
                f"blk {self.blk})"
        found = [f"{where} plane {pl}: {pages} pages programmed, a block has {self.num_pg}"
                 for pl, pages in enumerate(self.pages) if pages > self.num_pg]
        found += [f"{where} plane {pl}: bad-block value {value:#x} is none of "
                  f"{', '.join(f'{v:#x}' for v in sorted(VALUES))}"
                  for pl, value in enumerate(self.values) if value not in VALUES]
        return found


@dataclass
class Report12:
    description: Description12
    blocks: list[Block]
    problems: list[str]


def inspect(path: Path) -> Report12:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ImageError(f"cannot open image {path}: {exc.strerror}") from exc
    try:
        description = describe(fd, path)
        g = description.geometry
        blocks: list[Block] = []
        for layout in description.layouts():
            bbt = os.pread(fd, g.plane_blocks, layout.bbt_offset)
            records = list(BLOCK_RECORD_FORMAT.iter_unpack(
                os.pread(fd, g.plane_blocks * BLOCK_RECORD_SIZE, layout.records_offset)))
            for index in range(g.blocks):
                planes = range(index * g.num_pln, (index + 1) * g.num_pln)
                blocks.append(Block(layout.index + 1, index, *g.block_position(index),
                                    tuple(bbt[p] for p in planes),
                                    tuple(records[p][0] for p in planes),
                                    tuple(records[p][1] for p in planes), g.num_pg))
        return Report12(description, blocks, [p for b in blocks for p in b.problems()])
    finally:
        os.close(fd)


def info_lines(path: Path, report: Report12) -> list[str]:
    d = report.description
    g = d.geometry
    f = g.ppaf
    fields = ", ".join(f"{name} {f[f'{name}_offset']}/{f[f'{name}_len']}"
                       for name in ("sec", "pln", "pg", "blk", "lun", "ch"))
    lines = [
        f"image      : {path}",
        f"format     : qemu-nvme ocssd v1 container, {d.num_ns} namespace(s), OCSSD 1.2 "
        "identity",
        f"file size  : {d.file_size} bytes (layout needs {d.full_size})",
        f"geometry   : num_ch {g.num_ch}, num_lun {g.num_lun}, num_pln {g.num_pln}, "
        f"num_blk {g.num_blk}, num_pg {g.num_pg}",
        f"pages      : fpg_sz {g.fpg_sz} ({g.sec_per_pg} sectors), {g.clba} sectors per block "
        f"of all planes, mpos {g.mpos:#x}",
        f"sectors    : {g.sec_size} bytes + {g.md_size} OOB, {g.sectors} per namespace "
        f"({g.sectors * g.sec_size // (1 << 20)} MiB)",
        f"ppaf       : {fields} (offset/bits)",
        f"media      : mtype {g.mtype}, fmtype {g.fmtype}, mccap {g.mccap:#x}, cpar {g.cpar}",
    ]
    counts = Counter(block.state_name for block in report.blocks)
    lines.append("blocks     : " + ", ".join(f"{name} {counts.get(name, 0)}"
                                             for name in STATE_NAMES))
    values = Counter(value for block in report.blocks for value in block.values)
    lines.append("bad blocks : " + ", ".join(
        f"{value.name} {values.get(value, 0)}" for value in BlockValue
        if value != BlockValue.GOOD) + " (blocks of one plane)")
    wear = [erases for block in report.blocks for erases in block.erases]
    lines.append(f"wear       : erases min {min(wear)}, max {max(wear)}, "
                 f"mean {sum(wear) / len(wear):.2f}")
    programmed = sum(min(p, g.num_pg) for block in report.blocks for p in block.pages)
    lines.append(f"written    : {programmed} pages programmed "
                 f"({programmed * g.sec_per_pg} sectors)")
    verdict = f"{len(report.problems)} problem(s)" if report.problems else "OK"
    lines.append(f"check      : {verdict}")
    return lines
