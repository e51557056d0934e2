"""`ocssd-vfu image create|info|chunks`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ocssd_vfu.media.ocssd_image import create_image
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.ocssd.geometry import GeometryError, OcssdGeometry
from ocssd_vfu.ocssd.report import STATE_NAMES, ImageReport, info_lines, inspect

DEFAULTS = OcssdGeometry()


def _create(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(OcssdGeometry)}
    try:
        geometry = OcssdGeometry(**values)
        for warning in geometry.pblk_warnings():
            print(f"ocssd-vfu image create: warning: {warning}", file=sys.stderr)
        create_image(args.path, geometry, args.num_ns, overwrite=args.force)
    except (GeometryError, ImageError) as exc:
        print(f"ocssd-vfu image create: {exc}", file=sys.stderr)
        return 1
    g = geometry
    print(f"{args.path}: OCSSD 2.0, {args.num_ns} namespace(s) of {g.num_grp} groups x "
          f"{g.num_pu} PUs x {g.num_chk} chunks x {g.num_sec} sectors "
          f"({g.sectors * g.sec_size / (1 << 30):.2f} GiB each)")
    return 0


def _inspect(args: argparse.Namespace) -> ImageReport | None:
    try:
        return inspect(args.path)
    except ImageError as exc:
        print(f"ocssd-vfu image {args.image_command}: {exc}", file=sys.stderr)
        return None


def _info(args: argparse.Namespace) -> int:
    report = _inspect(args)
    if report is None:
        return 1
    print("\n".join(info_lines(args.path, report)))
    for problem in report.problems[:50]:
        print(f"problem    : {problem}")
    return 1 if report.problems else 0


def _chunks(args: argparse.Namespace) -> int:
    report = _inspect(args)
    if report is None:
        return 1
    for chunk in report.chunks:
        if args.nsid is not None and chunk.nsid != args.nsid:
            continue
        if (args.grp is not None and chunk.grp != args.grp) or \
                (args.pu is not None and chunk.pu != args.pu) or \
                (args.state is not None and chunk.state_name != args.state):
            continue
        print(chunk.nvme_cli_line())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    image = sub.add_parser("image", help="create and inspect OCSSD images",
                           description="OCSSD images in qemu-nvme's `ocssd` format.")
    commands = image.add_subparsers(dest="image_command", required=True)

    create = commands.add_parser(
        "create", help="create an image (sparse)",
        description="Create an OCSSD 2.0 image. With no options the file is byte-identical "
        "to `qemu-img create -f ocssd` with none (qemu-img's defaults).")
    create.add_argument("path", type=Path)
    for f in dataclasses.fields(OcssdGeometry):
        default = getattr(DEFAULTS, f.name)
        create.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=lambda t: int(t, 0),
                            default=default, metavar="N", help=f"(default {default})")
    create.add_argument("--num-ns", type=int, default=1, metavar="N",
                        help="namespaces, each with this geometry (default 1)")
    create.add_argument("--force", action="store_true", help="overwrite an existing file")
    create.set_defaults(func=_create)

    info = commands.add_parser(
        "info", help="geometry, chunk counts, wear; validates the image",
        description="Print an image's geometry, chunk counts per state and wear, and check "
        "every header field and chunk descriptor; exits 1 on any inconsistency.")
    info.add_argument("path", type=Path)
    info.set_defaults(func=_info)

    chunks = commands.add_parser(
        "chunks", help="the chunk log, as `nvme lnvm chunk-log` prints it",
        description="Print chunk descriptors in nvme-cli's chunk-log format.")
    chunks.add_argument("path", type=Path)
    chunks.add_argument("--nsid", type=int, help="only this namespace (1-based)")
    chunks.add_argument("--grp", type=int, help="only this group")
    chunks.add_argument("--pu", type=int, help="only this PU (within its group)")
    chunks.add_argument("--state", choices=sorted(STATE_NAMES.values()),
                        help="only chunks in this state")
    chunks.set_defaults(func=_chunks)
