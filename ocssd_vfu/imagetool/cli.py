"""`ocssd-vfu image create|info|chunks`, for OCSSD 2.0 and 1.2 images."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ocssd_vfu import preflight
from ocssd_vfu.ftlns import image as ftl_image
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import GeometryError, OcssdGeometry
from ocssd_vfu.imagetool import plot as image_plot
from ocssd_vfu.imagetool import report12
from ocssd_vfu.imagetool import report20 as report
from ocssd_vfu.media import ocssd12_image
from ocssd_vfu.media.ocssd_image import create_image
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.ocssd12 import bad_blocks
from ocssd_vfu.openchannel.faults import FaultFileError

DEFAULTS: dict[str, OcssdGeometry | Ocssd12Geometry] = {"2.0": OcssdGeometry(),
                                                       "1.2": Ocssd12Geometry()}
FIELDS = {spec: {f.name for f in dataclasses.fields(g)} for spec, g in DEFAULTS.items()}
SPEC_ONLY = {"1.2": ("bbt", "bad_block_frequency")}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _create(args: argparse.Namespace) -> int:
    spec = args.spec
    given = {name for name in set().union(*FIELDS.values(), *SPEC_ONLY.values())
             if getattr(args, name) is not None}
    foreign = sorted(given - FIELDS[spec] - set(SPEC_ONLY.get(spec, ())))
    if foreign:
        print(f"ocssd-vfu image create: {', '.join(map(_option, foreign))}: not an OCSSD {spec} "
              "option", file=sys.stderr)
        return 1
    values = {name: getattr(args, name) for name in given & FIELDS[spec]}
    try:
        summary = _create_12(args, values) if spec == "1.2" else _create_20(args, values)
    except (GeometryError, ImageError, FaultFileError) as exc:
        print(f"ocssd-vfu image create: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: {summary}")
    return 0


def _create_20(args: argparse.Namespace, values: dict[str, int]) -> str:
    g = OcssdGeometry(**values)
    _warn(g.pblk_warnings())
    create_image(args.path, g, args.num_ns, overwrite=args.force)
    return (f"OCSSD 2.0, {args.num_ns} namespace(s) of {g.num_grp} groups x {g.num_pu} PUs x "
            f"{g.num_chk} chunks x {g.num_sec} sectors "
            f"({g.sectors * g.sec_size / (1 << 30):.2f} GiB each)")


def _create_12(args: argparse.Namespace, values: dict[str, int]) -> str:
    g = Ocssd12Geometry(**values)
    _warn(g.pblk_warnings())
    table = _bad_block_table(args, g)
    ocssd12_image.create_image(args.path, g, table, args.num_ns, overwrite=args.force)
    return (f"OCSSD 1.2, {args.num_ns} namespace(s) of {g.num_ch} channels x {g.num_lun} LUNs "
            f"x {g.num_blk} blocks x {g.num_pg} pages x {g.num_pln} planes x {g.sec_per_pg} "
            f"sectors ({g.sectors * g.sec_size / (1 << 30):.2f} GiB each), "
            f"{sum(1 for value in table if value)} bad plane blocks")


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"ocssd-vfu image create: warning: {warning}", file=sys.stderr)


def _bad_block_table(args: argparse.Namespace, g: Ocssd12Geometry) -> bytes:
    marked = {}
    if args.bad_block_frequency is not None:
        marked.update(bad_blocks.generated_bad_blocks(g, args.bad_block_frequency))
    if args.bbt is not None:  # the file's lines win over generated ones
        marked.update(bad_blocks.parse_bad_blocks(args.bbt, g))
    return bad_blocks.bad_block_table(g, marked)


def _is_12(path: Path) -> bool:
    return ocssd12_image.spec_version(path) == ocssd12_image.SPEC_12


def _info(args: argparse.Namespace) -> int:
    try:
        preflight.regular_file(args.path, "image")  # a FIFO would block the reads below
        if _is_12(args.path):
            found12 = report12.inspect(args.path)
            lines, problems = report12.info_lines(args.path, found12), found12.problems
        else:
            found = report.inspect(args.path)
            lines, problems = report.info_lines(args.path, found), found.problems
        if not problems:   # an FTL's figures, for an image whose media is consistent
            ftl_lines, ftl_problems = ftl_image.report_lines(args.path, _is_12(args.path))
            lines, problems = lines + ftl_lines, problems + ftl_problems
    except (ImageError, preflight.PreflightError) as exc:
        print(f"ocssd-vfu image info: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    for problem in problems[:50]:
        print(f"problem    : {problem}")
    return 1 if problems else 0


def _chunks(args: argparse.Namespace) -> int:
    try:
        preflight.regular_file(args.path, "image")
    except preflight.PreflightError as exc:
        print(f"ocssd-vfu image chunks: {exc}", file=sys.stderr)
        return 1
    is_12 = _is_12(args.path)
    misplaced = [option for option, name, for_12 in (
        ("--grp", "grp", False), ("--pu", "pu", False), ("--ch", "ch", True),
        ("--lun", "lun", True)) if getattr(args, name) is not None and for_12 != is_12]
    if misplaced:
        print(f"ocssd-vfu image chunks: {', '.join(misplaced)}: not for an OCSSD "
              f"{'1.2' if is_12 else '2.0'} image", file=sys.stderr)
        return 1
    try:
        lines = _chunk_lines_12(args) if is_12 else _chunk_lines(args)
    except ImageError as exc:
        print(f"ocssd-vfu image chunks: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _chunk_lines(args: argparse.Namespace) -> list[str]:
    return [chunk.nvme_cli_line() + (f" erases: {chunk.erases}" if args.erases else "")
            for chunk in report.inspect(args.path).chunks
            if (args.nsid is None or chunk.nsid == args.nsid)
            and (args.grp is None or chunk.grp == args.grp)
            and (args.pu is None or chunk.pu == args.pu)
            and (args.state is None or chunk.state_name == args.state)]


def _chunk_lines_12(args: argparse.Namespace) -> list[str]:
    return [block.line() for block in report12.inspect(args.path).blocks
            if (args.nsid is None or block.nsid == args.nsid)
            and (args.ch is None or block.ch == args.ch)
            and (args.lun is None or block.lun == args.lun)
            and (args.state is None or block.state_name == args.state)]


def _number(text: str) -> int:
    return int(text, 0)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    image = sub.add_parser("image", help="create and inspect OCSSD images",
                           description="OCSSD images in qemu-nvme's `ocssd` format (2.0) "
                           "or its 1.2 variant (docs/image-format.md).")
    commands = image.add_subparsers(dest="image_command", required=True)

    create = commands.add_parser(
        "create", help="create an image (sparse)",
        description="Create an OCSSD image. With no options the file is byte-identical "
        "to `qemu-img create -f ocssd` with none (qemu-img's defaults); --spec 1.2 makes "
        "an OCSSD 1.2 image (qemu-ox's geometry by default).")
    create.add_argument("path", type=Path)
    create.add_argument("--spec", choices=sorted(DEFAULTS), default="2.0",
                        help="OCSSD version (default 2.0)")
    both = FIELDS["2.0"] & FIELDS["1.2"]
    for spec in ("2.0", "1.2"):
        group = create.add_argument_group(f"OCSSD {spec} geometry")
        for f in dataclasses.fields(DEFAULTS[spec]):
            if spec == "1.2" and f.name in both:
                continue  # declared with the 2.0 group
            defaults = [f"{s}: {getattr(DEFAULTS[s], f.name)}" for s in DEFAULTS
                        if f.name in FIELDS[s]]
            group.add_argument(_option(f.name), dest=f.name, type=_number, metavar="N",
                               help=f"(default {', '.join(defaults)})")
    group = create.add_argument_group("OCSSD 1.2 bad blocks")
    group.add_argument("--bbt", type=Path, metavar="FILE",
                       help="initial bad blocks, one per line: ch=C lun=L pln=P blk=B "
                       "state=FACTORY|GROWN|DEVICE|HOST")
    group.add_argument("--bad-block-frequency", type=_number, metavar="N",
                       help="mark every Nth block of a plane factory bad (table order)")
    create.add_argument("--num-ns", type=int, default=1, metavar="N",
                        help="namespaces, each with this geometry (default 1)")
    create.add_argument("--force", action="store_true", help="overwrite an existing file")
    create.set_defaults(func=_create)

    info = commands.add_parser(
        "info", help="geometry, chunk or block counts, wear; validates the image",
        description="Print an image's geometry, chunk (2.0) or block (1.2) counts per state, "
        "bad blocks and wear, and check every header field and descriptor; exits 1 on any "
        "inconsistency.")
    info.add_argument("path", type=Path)
    info.set_defaults(func=_info)

    chunks = commands.add_parser(
        "chunks", help="the chunk log (2.0, as `nvme lnvm chunk-log` prints it) or the "
        "blocks with their bad-block values (1.2)",
        description="Print chunk descriptors in nvme-cli's chunk-log format (2.0), or one "
        "line per block with its state, pages programmed, bad-block value and erase count "
        "per plane (1.2).")
    chunks.add_argument("path", type=Path)
    chunks.add_argument("--nsid", type=int, help="only this namespace (1-based)")
    chunks.add_argument("--grp", type=int, help="2.0: only this group")
    chunks.add_argument("--pu", type=int, help="2.0: only this PU (within its group)")
    chunks.add_argument("--ch", type=int, help="1.2: only this channel")
    chunks.add_argument("--lun", type=int, help="1.2: only this LUN (within its channel)")
    chunks.add_argument("--erases", action="store_true",
                        help="2.0: add each chunk's erase count (P/E cycles spent; the 1.2 "
                        "lines always show it)")
    chunks.add_argument("--state", choices=sorted(report12.STATE_NAMES),
                        help="only chunks or blocks in this state")
    chunks.set_defaults(func=_chunks)
    image_plot.add_parser(commands)
