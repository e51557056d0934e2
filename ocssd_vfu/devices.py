"""One record per device kind: what `serve` needs to make a device of an image.

A record says how the kind is recognised (for `--mode auto`) or insisted on
(`--mode`), its PCI identity and controller model, which kind-specific serve
options it takes, and how it opens its image into namespaces. app.py builds the
controller configuration from the record and the options in one place, so an
option that applies to every kind (--no-sgl, --no-shadow-doorbells, --poll) reaches
every kind, and an option a kind does not take is refused with one line
(`refuse_options`) before any image is opened.

A new kind (the device-side FTL, say) is a new record in DEVICE_KINDS, with its
own `open`; a new kind-specific option is a ServeOptions field (app.py), a line
in OPTION_USE, and its name in the records that take it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from ocssd_vfu.ftl.capacity import DEFAULT_OP_PERCENT
from ocssd_vfu.ftl.core import FtlOptions
from ocssd_vfu.ftl.flash import Flash
from ocssd_vfu.ftl.gc import GcPolicy
from ocssd_vfu.ftl.media import Ocssd20Flash
from ocssd_vfu.ftlns import image as ftl_image
from ocssd_vfu.ftlns.timed import FtlTiming
from ocssd_vfu.imagetool.report20 import inspect
from ocssd_vfu.media.ocssd12_image import SPEC_12, Ocssd12Image, spec_version
from ocssd_vfu.media.ocssd_image import OcssdImage, is_ocssd_image
from ocssd_vfu.media.raw import ImageError, RawImage
from ocssd_vfu.nvme.kind import Namespace
from ocssd_vfu.nvme.polling import DEFAULT_IDLE_US, MAX_IDLE_US
from ocssd_vfu.ocssd.faults import faults_from_files_20, ocssd20_space, parse_chunk_states
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd.wear import NotificationLog
from ocssd_vfu.ocssd12 import bad_blocks
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import AddressSpace, Fault, FaultBook, FaultFileError
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.pci import PciIdentity
from ocssd_vfu.timing.geometries import model_12, model_20, override_12, override_20
from ocssd_vfu.timing.model import FlashModel
from ocssd_vfu.timing.parameters import DEFAULT_CHANNEL_MBPS, TimingError

log = logging.getLogger("ocssd_vfu.serve")

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
    poll: bool = False             # poll the shadow doorbells (every kind; nvme/polling.py)
    poll_idle_us: int = DEFAULT_IDLE_US
    op_percent: int | None = None  # --mode ftl; None: DEFAULT_OP_PERCENT when formatting
    gc_threshold: int | None = None  # --mode ftl; None: the plan's default
    gc_policy: str = "greedy"      # --mode ftl: greedy | cost-benefit
    reformat: bool = False         # erase what the image holds to serve it in another mode
    # The flash timing model (README "Timing model"); the times are in ns, None: the image's.
    timing: bool = False
    channel_mbps: int = DEFAULT_CHANNEL_MBPS
    write_buffer_sectors: int | None = None  # per PU; None: derived from the geometry
    timing_lead_us: int = 0
    trdt: int | None = None
    twrt: int | None = None    # OCSSD 2.0
    tcrst: int | None = None   # OCSSD 2.0
    tprt: int | None = None    # OCSSD 1.2
    tbet: int | None = None    # OCSSD 1.2
    control: Path | None = None     # the QMP control socket (every kind)
    pe_cycles: int | None = None    # endurance in program/erase cycles (OCSSD)


# Each kind-specific ServeOptions field, and the line that refuses it where a kind does
# not take it (given = not its default value).
OPTION_USE: dict[str, str] = {
    "sec_size": "--sec-size is for plain namespaces: an OCSSD image's geometry sets its "
                "sector size",
    "md_size": "--md-size and --extended-lba are for plain namespaces: an OCSSD image's "
               "geometry sets its metadata size",
    "extended_lba": "--md-size and --extended-lba are for plain namespaces: an OCSSD "
                    "image's geometry sets its metadata size",
    "fast_path": "--no-fast-path is for plain and OCSSD 2.0 namespaces (no other kind has a "
                 "fast path)",
    "volatile": "--volatile is for OCSSD images",
    "early_reset": "--no-early-reset is for OCSSD 2.0 images (MCCAP bit 2; OCSSD 1.2 has "
                   "no such capability)",
    "chunk_state": "--chunk-state is for OCSSD 2.0 images (a 1.2 image's bad blocks are set "
                   "at creation with --bbt, or by the host with Set Bad Block Table)",
    "write_fail": "--write-fail needs an OCSSD image",
    "reset_fail": "--reset-fail needs an OCSSD image",
    "read_fail": "--read-fail is for OCSSD 1.2 images",
    "fault_seed": "--fault-seed needs an OCSSD image (it seeds the injected failures)",
    "op_percent": "--op-percent is for --mode ftl",
    "gc_threshold": "--gc-threshold is for --mode ftl",
    "gc_policy": "--gc-policy is for --mode ftl",
    "reformat": "--reformat is for OCSSD images (--mode ftl or ocssd)",
    "timing": "--timing is for OCSSD images (plain namespaces complete at once)",
    "channel_mbps": "--channel-mbps is for OCSSD images with --timing",
    "write_buffer_sectors": "--write-buffer-sectors is for OCSSD images with --timing",
    "timing_lead_us": "--timing-lead-us is for OCSSD images with --timing",
    "trdt": "--trdt is for OCSSD images",
    "twrt": "--twrt and --tcrst are for OCSSD 2.0 images (1.2: --tprt and --tbet)",
    "tcrst": "--twrt and --tcrst are for OCSSD 2.0 images (1.2: --tprt and --tbet)",
    "tprt": "--tprt and --tbet are for OCSSD 1.2 images (2.0: --twrt and --tcrst)",
    "tbet": "--tprt and --tbet are for OCSSD 1.2 images (2.0: --twrt and --tcrst)",
    "pe_cycles": "--pe-cycles needs an OCSSD image (chunks and blocks wear out)",
}
TIMING_OPTIONS = frozenset({"timing", "channel_mbps", "write_buffer_sectors", "timing_lead_us",
                            "trdt"})


@dataclass
class OpenedImage:
    """An image opened as namespaces, with how to make it durable and to close it."""

    namespaces: dict[int, Namespace]
    sync: Callable[[], None]
    close: Callable[[], None]
    description: str   # for the start-up line
    # Idle-time work (the FTL's background GC): one step, True while more is left.
    # The server calls it when no client message came for a moment.
    idle: Callable[[], bool] | None = None


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
    # --mode auto serves an image as this kind only if this says so too (None: recognizes)
    auto: Callable[[Path], bool] | None = None


def refuse_options(kind: DeviceKind, options: ServeOptions) -> None:
    """ImageError, one line, for the first given option the kind does not take (or that
    another given option rules out)."""
    defaults = {field.name: field.default for field in fields(ServeOptions)}
    refuse_poll(options)
    for name, use in OPTION_USE.items():
        if name not in kind.options and getattr(options, name) != defaults[name]:
            raise ImageError(use)


def refuse_poll(options: ServeOptions) -> None:
    """--poll takes every kind (each has shadow doorbells); only options rule it out."""
    if options.poll and not options.shadow_doorbells:
        raise ImageError("--poll polls the shadow doorbells: it cannot go with "
                         "--no-shadow-doorbells")
    if options.poll_idle_us != DEFAULT_IDLE_US and not options.poll:
        raise ImageError("--poll-idle-us is for --poll")
    if not 1 <= options.poll_idle_us <= MAX_IDLE_US:
        raise ImageError(f"--poll-idle-us must be 1 to {MAX_IDLE_US} (µs), "
                         f"not {options.poll_idle_us}")


def _faults(options: ServeOptions, space: AddressSpace, faults: list[Fault]) -> FaultBook:
    """One book for the device: the start-up files' faults, then what the control
    socket injects."""
    book = FaultBook(space, random.Random(options.fault_seed))
    for fault in faults:
        book.add(fault)
    return book


def _check_times(options: ServeOptions) -> None:
    for name in ("trdt", "twrt", "tcrst", "tprt", "tbet"):
        value = getattr(options, name)
        if value is not None and not 0 <= value < 1 << 32:
            raise ImageError(f"--{name} must be 0 to 2^32-1 ns, not {value}")


def _timed(options: ServeOptions, build: Callable[[], FlashModel]) -> FlashModel | None:
    """The namespace's timing model with --timing (ImageError for impossible parameters);
    without it the time overrides only change the reported geometry."""
    if not options.timing:
        if any(getattr(options, name) is not None
               for name in ("trdt", "twrt", "tcrst", "tprt", "tbet")):
            log.info("timing overrides without --timing: commands still complete at once "
                     "(an Open-Channel geometry reports them; --mode ftl ignores them)")
        return None
    if options.channel_mbps < 1:
        raise ImageError(f"--channel-mbps must be at least 1, not {options.channel_mbps}")
    try:
        return build()
    except TimingError as exc:
        raise ImageError(f"timing: {exc}") from None


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
    if not options.reformat:
        ftl_image.refuse_for_ocssd(options.image, spec_12=False)
    _check_times(options)
    geometry = override_20(report.description.geometry, options.trdt, options.twrt,
                           options.tcrst)
    faults = _faults(options, ocssd20_space(geometry),
                     faults_from_files_20(geometry, options.write_fail, options.reset_fail))
    notifications = NotificationLog()
    states = parse_chunk_states(options.chunk_state, geometry) if options.chunk_state else []
    timings = [_timed(options, lambda: model_20(geometry, options.channel_mbps,
                                                options.write_buffer_sectors))
               for _ in report.description.layouts()]
    image = OcssdImage(options.image, volatile=options.volatile)
    if options.reformat:
        ftl_image.erase_ftls(image)
    namespaces: dict[int, Namespace] = {}
    for layout, timing in zip(image.description.layouts(), timings, strict=True):
        chunk_log, data, oob = image.namespace_views(layout)
        ns = OcssdNamespace(layout.index + 1, geometry, chunk_log, data, oob,
                            early_reset=options.early_reset, faults=faults, timing=timing,
                            pe_cycles=options.pe_cycles, notifications=notifications,
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
    _check_times(options)
    if not options.reformat:
        ftl_image.refuse_for_ocssd(options.image, spec_12=True)
    image = Ocssd12Image(options.image, volatile=options.volatile)
    if options.reformat:
        ftl_image.erase_ftls(image)
    try:
        geometry = override_12(image.description.geometry, options.trdt, options.tprt,
                               options.tbet)
        faults = _faults(options, bad_blocks.ocssd12_space(geometry),
                         bad_blocks.faults_from_files_12(geometry, options.write_fail,
                                                         options.reset_fail, options.read_fail))
        namespaces: dict[int, Namespace] = {}
        for layout in image.description.layouts():
            timing = _timed(options, lambda: model_12(geometry, options.channel_mbps,
                                                      options.write_buffer_sectors))
            ns = Ocssd12Namespace(layout.index + 1, geometry, *image.namespace_views(layout),
                                  faults=faults, timing=timing, pe_cycles=options.pe_cycles,
                                  reserve=image.sector_reserver(layout))
            namespaces[ns.nsid] = ns
    except (FaultFileError, ImageError):
        image.close()
        raise
    g = geometry
    volatile = "volatile (RAM) " if options.volatile else ""
    return OpenedImage(namespaces, image.sync, image.close,
                       f"{volatile}OCSSD 1.2, {len(namespaces)} namespace(s) of {g.num_ch} "
                       f"channels x {g.num_lun} LUNs x {g.num_blk} blocks x {g.num_pg} pages x "
                       f"{g.num_pln} planes x {g.sec_per_pg} sectors of "
                       f"{g.sec_size}+{g.md_size} bytes")


def _ftl_options(options: ServeOptions) -> FtlOptions:
    try:
        policy = GcPolicy(options.gc_policy)
    except ValueError:
        raise ImageError(f"--gc-policy must be greedy or cost-benefit, not "
                         f"{options.gc_policy}") from None
    if options.gc_threshold is not None and options.gc_threshold < 1:
        raise ImageError(f"--gc-threshold must be at least 1, not {options.gc_threshold}")
    return FtlOptions(op_percent=DEFAULT_OP_PERCENT if options.op_percent is None
                      else options.op_percent,
                      gc_threshold=options.gc_threshold, gc_policy=policy)


def _open_ftl(options: ServeOptions, spec_12: bool) -> OpenedImage:
    """An OCSSD image as FTL namespaces (ocssd_vfu/ftlns/image.py has the rules)."""
    ftl_options = _ftl_options(options)
    _check_times(options)
    if not spec_12:
        report = inspect(options.image)
        if report.problems:
            raise ImageError(f"{options.image}: {report.problems[0]}")
    ftl_image.check_for_ftl(options.image, spec_12, ftl_options,
                            op_given=options.op_percent is not None,
                            chunk_states_given=options.chunk_state is not None,
                            reformat=options.reformat)
    image: OcssdImage | Ocssd12Image = (Ocssd12Image if spec_12 else OcssdImage)(
        options.image, volatile=options.volatile)
    try:
        before_format = None
        if isinstance(image, Ocssd12Image):
            geometry12 = image.description.geometry
            faults = _faults(options, bad_blocks.ocssd12_space(geometry12),
                             bad_blocks.faults_from_files_12(geometry12, options.write_fail,
                                                             options.reset_fail, None))
        else:
            geometry20 = image.description.geometry
            faults = _faults(options, ocssd20_space(geometry20),
                             faults_from_files_20(geometry20, options.write_fail,
                                                  options.reset_fail))
            if options.chunk_state:
                states = parse_chunk_states(options.chunk_state, geometry20)

                def before_format(nsid: int, flash: Flash) -> None:
                    assert isinstance(flash, Ocssd20Flash)
                    ftl_image.erase(flash)
                    for line in states:
                        flash.table.set(line.chunk, line.state, line.chunk_type, line.wp,
                                        line.wli)
        namespaces, formatted = ftl_image.open_namespaces(image, faults, ftl_options,
                                                          options.reformat, before_format)
        for ns in namespaces.values():
            model = _timed(options, lambda: _ftl_model(image, options))
            if model is not None:
                ns.timing = FtlTiming(model, ns.ftl.layout, time.monotonic_ns)
    except (ImageError, FaultFileError):
        image.close()
        raise
    ftls = list(namespaces.values())

    def idle() -> bool:
        return any([ns.background_step() for ns in ftls])

    def close() -> None:
        for ns in ftls:
            ns.shutdown()
        image.close()

    spec = "1.2" if spec_12 else "2.0"
    what = "formatted" if formatted else "recovered"
    return OpenedImage(dict(namespaces), image.sync, close,
                       f"FTL ({what}) over OCSSD {spec}, {len(ftls)} namespace(s) of "
                       f"{ftl_image.summary(ftls)}", idle=idle)


def _ftl_model(image: OcssdImage | Ocssd12Image, options: ServeOptions) -> FlashModel:
    """The timing model of one FTL namespace: the image's times, or the overrides."""
    if isinstance(image, Ocssd12Image):
        return model_12(override_12(image.description.geometry, options.trdt, options.tprt,
                                    options.tbet),
                        options.channel_mbps, options.write_buffer_sectors)
    return model_20(override_20(image.description.geometry, options.trdt, options.twrt,
                                options.tcrst),
                    options.channel_mbps, options.write_buffer_sectors)


def open_ftl20(options: ServeOptions) -> OpenedImage:
    return _open_ftl(options, spec_12=False)


def open_ftl12(options: ServeOptions) -> OpenedImage:
    return _open_ftl(options, spec_12=True)


def _is_12(path: Path) -> bool:
    return is_ocssd_image(path) and spec_version(path) == SPEC_12


def _is_20(path: Path) -> bool:
    return is_ocssd_image(path) and spec_version(path) != SPEC_12


NOT_OCSSD = "is not an OCSSD image (no LNVM header): create one with `ocssd-vfu image create`"

OCSSD12 = DeviceKind(
    name="OCSSD 1.2", mode="ocssd",
    recognizes=lambda path: is_ocssd_image(path) and spec_version(path) == SPEC_12,
    unrecognized=NOT_OCSSD, identity=OCSSD_ID, model="ocssd_vfu OCSSD 1.2 Ctrl",
    firmware="1.2",
    options=frozenset({"volatile", "write_fail", "reset_fail", "read_fail", "fault_seed",
                       "reformat", "tprt", "tbet", "pe_cycles"}) | TIMING_OPTIONS,
    open=open_ocssd12)
OCSSD20 = DeviceKind(
    name="OCSSD 2.0", mode="ocssd", recognizes=is_ocssd_image, unrecognized=NOT_OCSSD,
    identity=OCSSD_ID, model="ocssd_vfu OCSSD 2.0 Ctrl", firmware="2.0",
    options=frozenset({"volatile", "early_reset", "chunk_state", "write_fail", "reset_fail",
                       "fault_seed", "reformat", "twrt", "tcrst", "pe_cycles", "fast_path"})
                      | TIMING_OPTIONS,
    open=open_ocssd20)
PLAIN = DeviceKind(
    name="plain NVMe", mode="nvme", recognizes=lambda path: True, unrecognized="",
    identity=PLAIN_NVME_ID, model="ocssd_vfu NVMe Ctrl", firmware="0.1",
    options=frozenset({"sec_size", "md_size", "extended_lba", "fast_path"}),
    open=open_plain)

FTL_OPTIONS = frozenset({"volatile", "write_fail", "reset_fail", "fault_seed", "op_percent",
                         "gc_threshold", "gc_policy", "reformat"}) | TIMING_OPTIONS
FTL12 = DeviceKind(
    name="FTL over OCSSD 1.2", mode="ftl", recognizes=_is_12, unrecognized=NOT_OCSSD,
    identity=PLAIN_NVME_ID, model="ocssd_vfu FTL NVMe Ctrl", firmware="ftl-1.2",
    options=FTL_OPTIONS | {"tprt", "tbet"}, open=open_ftl12,
    auto=lambda path: ftl_image.holds_ftl(path, spec_12=True))
FTL20 = DeviceKind(
    name="FTL over OCSSD 2.0", mode="ftl", recognizes=_is_20, unrecognized=NOT_OCSSD,
    identity=PLAIN_NVME_ID, model="ocssd_vfu FTL NVMe Ctrl", firmware="ftl-2.0",
    options=FTL_OPTIONS | {"chunk_state", "twrt", "tcrst"}, open=open_ftl20,
    auto=lambda path: not inspect(path).problems and ftl_image.holds_ftl(path, spec_12=False))

# In the order --mode auto tries them: the first that recognizes the image serves it.
DEVICE_KINDS: tuple[DeviceKind, ...] = (FTL12, FTL20, OCSSD12, OCSSD20, PLAIN)
MODES = ("auto", *dict.fromkeys(kind.mode for kind in DEVICE_KINDS))


def device_kind(image: Path, mode: str) -> DeviceKind:
    for kind in DEVICE_KINDS:
        if mode in ("auto", kind.mode) and kind.recognizes(image) and (
                mode != "auto" or kind.auto is None or kind.auto(image)):
            return kind
    insisted = next(kind for kind in DEVICE_KINDS if kind.mode == mode)
    raise ImageError(f"{image} {insisted.unrecognized}")
