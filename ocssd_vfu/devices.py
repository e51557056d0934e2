"""One record per device kind: what `serve` needs to make a device of an image.

A record says how the kind is recognised (for `--mode auto`) or insisted on
(`--mode`), its PCI identity and controller model, which kind-specific serve
options it takes, and how it opens its image into namespaces. app.py builds the
controller configuration from the record and the options in one place, so an
option that applies to every kind (--no-sgl, --no-shadow-doorbells) reaches
every kind, and an option a kind does not take is refused with one line
(`refuse_options`) before any image is opened.

A new kind (the device-side FTL, say) is a new record in DEVICE_KINDS, with its
own `open`; a new kind-specific option is a ServeOptions field (app.py), a line
in OPTION_USE, and its name in the records that take it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from ocssd_vfu.imagetool.report20 import inspect
from ocssd_vfu.media.ocssd12_image import SPEC_12, Ocssd12Image, spec_version
from ocssd_vfu.media.ocssd_image import OcssdImage, is_ocssd_image
from ocssd_vfu.media.raw import ImageError, RawImage
from ocssd_vfu.nvme.kind import Namespace
from ocssd_vfu.ocssd.faults import parse_chunk_states, parse_reset_fail, parse_write_fail
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12 import bad_blocks
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import FaultFileError, Faults
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.pci import PciIdentity

MAX_MD_SIZE = 256   # bytes of metadata per block a plain namespace offers at most

PLAIN_NVME_ID = PciIdentity(0x1B36, 0x0010, 0x1AF4, 0x1100)  # QEMU's emulated-NVMe IDs
OCSSD_ID = PciIdentity(0x1D1D, 0x1F1F, 0x1D1D, 0x1F1F)       # Linux's LightNVM quirk entry

@dataclass
class ServeOptions:
    """`ocssd-vfu serve`'s options (cli.py: each option's dest is the field's name)."""

    socket: Path
    image: Path
    mode: str = "auto"
    sec_size: int = 4096
    md_size: int = 0
    extended_lba: bool = False
    once: bool = False
    serial: str | None = None      # default: derived from the image's path (default_serial)
    volatile: bool = False
    early_reset: bool = True
    chunk_state: Path | None = None
    write_fail: Path | None = None
    reset_fail: Path | None = None
    read_fail: Path | None = None   # OCSSD 1.2 only
    fault_seed: int = 0
    sync_interval: float = 0.0
    trace: str | None = None       # a file, or "-" for stderr
    trace_format: str = "text"
    sgl: bool = True
    shadow_doorbells: bool = True
    fast_path: bool = True


# Each kind-specific ServeOptions field, and the line that refuses it where a kind does
# not take it (given = not its default value).
OPTION_USE: dict[str, str] = {
    "sec_size": "--sec-size is for plain namespaces: an OCSSD image's geometry sets its "
                "sector size",
    "md_size": "--md-size and --extended-lba are for plain namespaces: an OCSSD image's "
               "geometry sets its metadata size",
    "extended_lba": "--md-size and --extended-lba are for plain namespaces: an OCSSD "
                    "image's geometry sets its metadata size",
    "fast_path": "--no-fast-path is for plain namespaces (no other kind has a fast path)",
    "volatile": "--volatile is for OCSSD images",
    "early_reset": "--no-early-reset is for OCSSD 2.0 images (MCCAP bit 2; OCSSD 1.2 has "
                   "no such capability)",
    "chunk_state": "--chunk-state is for OCSSD 2.0 images (a 1.2 image's bad blocks are set "
                   "at creation with --bbt, or by the host with Set Bad Block Table)",
    "write_fail": "--write-fail needs an OCSSD image",
    "reset_fail": "--reset-fail needs an OCSSD image",
    "read_fail": "--read-fail is for OCSSD 1.2 images",
    "fault_seed": "--fault-seed needs an OCSSD image (it seeds the injected failures)",
}


@dataclass
class OpenedImage:
    """An image opened as namespaces, with how to make it durable and to close it."""

    namespaces: dict[int, Namespace]
    sync: Callable[[], None]
    close: Callable[[], None]
    description: str   # for the start-up line


@dataclass(frozen=True)
class DeviceKind:
    name: str                          # in messages and the start-up line
    mode: str                          # the --mode value that insists on this kind
    recognizes: Callable[[Path], bool]  # whether an image is of this kind
    unrecognized: str                  # why not, when --mode insists
    identity: PciIdentity
    model: str                         # Identify Controller MN
    firmware: str                      # Identify Controller FR
    options: frozenset[str]            # the OPTION_USE fields it takes
    open: Callable[[ServeOptions], OpenedImage]


def refuse_options(kind: DeviceKind, options: ServeOptions) -> None:
    """ImageError, one line, for the first given option the kind does not take."""
    defaults = {field.name: field.default for field in fields(ServeOptions)}
    for name, use in OPTION_USE.items():
        if name not in kind.options and getattr(options, name) != defaults[name]:
            raise ImageError(use)


def _faults(options: ServeOptions) -> Faults:
    return Faults(rng=random.Random(options.fault_seed))


def open_plain(options: ServeOptions) -> OpenedImage:
    if not 0 <= options.md_size <= MAX_MD_SIZE:
        raise ImageError(f"--md-size must be 0 to {MAX_MD_SIZE}, not {options.md_size}")
    if options.extended_lba and not options.md_size:
        raise ImageError("--extended-lba needs metadata (--md-size N)")
    image = RawImage(options.image, options.sec_size, options.md_size)
    namespace = PlainNamespace(1, image.view, options.sec_size, options.md_size,
                               options.extended_lba, allocation=image)
    metadata = ""
    if options.md_size:
        where = "extended LBAs" if options.extended_lba else "separate buffer"
        metadata = f" + {options.md_size} bytes of metadata ({where})"
    return OpenedImage({1: namespace}, image.sync, image.close,
                       f"{namespace.nlbas} x {options.sec_size}-byte blocks{metadata}, "
                       "plain NVMe")


def open_ocssd20(options: ServeOptions) -> OpenedImage:
    # Everything is checked before the image is opened for writing (serving extends a
    # qemu-img file): a refused start leaves it as it was.
    report = inspect(options.image)
    if report.problems:
        more = len(report.problems) - 1
        raise ImageError(f"{options.image}: {report.problems[0]}"
                         + (f" (and {more} more; see `ocssd-vfu image info`)" if more else ""))
    geometry = report.description.geometry
    faults = _faults(options)
    if options.write_fail:
        faults.write_fail = parse_write_fail(options.write_fail, geometry)
    if options.reset_fail:
        faults.reset_fail = parse_reset_fail(options.reset_fail, geometry)
    states = parse_chunk_states(options.chunk_state, geometry) if options.chunk_state else []
    image = OcssdImage(options.image, volatile=options.volatile)
    namespaces: dict[int, Namespace] = {}
    for layout in image.description.layouts():
        chunk_log, data, oob = image.namespace_views(layout)
        ns = OcssdNamespace(layout.index + 1, geometry, chunk_log, data, oob,
                            early_reset=options.early_reset, faults=faults,
                            reserve=image.chunk_reserver(layout))
        for line in states:
            ns.chunks.set(line.chunk, line.state, line.chunk_type, line.wp, line.wli)
        namespaces[ns.nsid] = ns
    g = geometry
    volatile = "volatile (RAM) " if options.volatile else ""
    return OpenedImage(namespaces, image.sync, image.close,
                       f"{volatile}OCSSD 2.0, {len(namespaces)} namespace(s) of {g.num_grp} "
                       f"groups x {g.num_pu} PUs x {g.num_chk} chunks x {g.num_sec} sectors "
                       f"of {g.sec_size}+{g.md_size} bytes")


def open_ocssd12(options: ServeOptions) -> OpenedImage:
    image = Ocssd12Image(options.image, volatile=options.volatile)
    try:
        geometry = image.description.geometry
        faults = _faults(options)
        if options.write_fail:
            faults.write_fail = bad_blocks.parse_write_fail(options.write_fail, geometry)
        if options.reset_fail:
            faults.reset_fail = bad_blocks.parse_reset_fail(options.reset_fail, geometry)
        if options.read_fail:
            faults.read_fail = bad_blocks.parse_read_fail(options.read_fail, geometry)
        namespaces: dict[int, Namespace] = {}
        for layout in image.description.layouts():
            ns = Ocssd12Namespace(layout.index + 1, geometry, *image.namespace_views(layout),
                                  faults=faults, reserve=image.sector_reserver(layout))
            namespaces[ns.nsid] = ns
    except FaultFileError:
        image.close()
        raise
    g = geometry
    volatile = "volatile (RAM) " if options.volatile else ""
    return OpenedImage(namespaces, image.sync, image.close,
                       f"{volatile}OCSSD 1.2, {len(namespaces)} namespace(s) of {g.num_ch} "
                       f"channels x {g.num_lun} LUNs x {g.num_blk} blocks x {g.num_pg} pages x "
                       f"{g.num_pln} planes x {g.sec_per_pg} sectors of "
                       f"{g.sec_size}+{g.md_size} bytes")


NOT_OCSSD = "is not an OCSSD image (no LNVM header): create one with `ocssd-vfu image create`"

OCSSD12 = DeviceKind(
    name="OCSSD 1.2", mode="ocssd",
    recognizes=lambda path: is_ocssd_image(path) and spec_version(path) == SPEC_12,
    unrecognized=NOT_OCSSD, identity=OCSSD_ID, model="ocssd_vfu OCSSD 1.2 Ctrl",
    firmware="1.2",
    options=frozenset({"volatile", "write_fail", "reset_fail", "read_fail", "fault_seed"}),
    open=open_ocssd12)
OCSSD20 = DeviceKind(
    name="OCSSD 2.0", mode="ocssd", recognizes=is_ocssd_image, unrecognized=NOT_OCSSD,
    identity=OCSSD_ID, model="ocssd_vfu OCSSD 2.0 Ctrl", firmware="2.0",
    options=frozenset({"volatile", "early_reset", "chunk_state", "write_fail", "reset_fail",
                       "fault_seed"}),
    open=open_ocssd20)
PLAIN = DeviceKind(
    name="plain NVMe", mode="nvme", recognizes=lambda path: True, unrecognized="",
    identity=PLAIN_NVME_ID, model="ocssd_vfu NVMe Ctrl", firmware="0.1",
    options=frozenset({"sec_size", "md_size", "extended_lba", "fast_path"}),
    open=open_plain)

# In the order --mode auto tries them: the first that recognizes the image serves it.
DEVICE_KINDS: tuple[DeviceKind, ...] = (OCSSD12, OCSSD20, PLAIN)
MODES = ("auto", *dict.fromkeys(kind.mode for kind in DEVICE_KINDS))


def device_kind(image: Path, mode: str) -> DeviceKind:
    for kind in DEVICE_KINDS:
        if mode in ("auto", kind.mode) and kind.recognizes(image):
            return kind
    insisted = next(kind for kind in DEVICE_KINDS if kind.mode == mode)
    raise ImageError(f"{image} {insisted.unrecognized}")
