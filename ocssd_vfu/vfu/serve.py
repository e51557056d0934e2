"""Assembling a server from the command line: image, namespaces, controller, device, loop."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import trio

from ocssd_vfu import preflight
from ocssd_vfu.media.ocssd12_image import SPEC_12, Ocssd12Image, spec_version
from ocssd_vfu.media.ocssd_image import OcssdImage, is_ocssd_image
from ocssd_vfu.media.raw import ImageError, RawImage
from ocssd_vfu.nvme.controller import Controller, ControllerConfig, Namespace
from ocssd_vfu.nvme.memory import GuestMemory
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.ocssd.faults import (
    FaultFileError,
    Faults,
    parse_chunk_states,
    parse_reset_fail,
    parse_write_fail,
)
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd.report import inspect
from ocssd_vfu.ocssd12 import bad_blocks
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.vfu.device import PciIdentity, VfuDevice
from ocssd_vfu.vfu.server import STOP_SIGNALS, ServeError, Server, claim_socket_path

log = logging.getLogger("ocssd_vfu.serve")

MAX_MD_SIZE = 256   # bytes of metadata per block a plain namespace offers at most

PLAIN_NVME_ID = PciIdentity(0x1B36, 0x0010, 0x1AF4, 0x1100)  # QEMU's emulated-NVMe IDs
OCSSD_ID = PciIdentity(0x1D1D, 0x1F1F, 0x1D1D, 0x1F1F)       # Linux's LightNVM quirk entry


@dataclass
class ServeOptions:
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


@dataclass
class Assembled:
    namespaces: dict[int, Namespace]
    config: ControllerConfig
    identity: PciIdentity
    sync: Callable[[], None]
    close: Callable[[], None]
    description: str


def default_serial(image: Path) -> str:
    """One serial per image, so that two servers attached to one guest are two NVMe
    subsystems (Linux rejects a second controller with the same NQN and controller ID)."""
    return "ocssd-vfu-" + hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:8]


def _plain(options: ServeOptions) -> Assembled:
    if options.volatile:
        raise ImageError("--volatile is for OCSSD images")
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
    config = ControllerConfig(serial=_serial(options), sgl=options.sgl,
                              shadow_doorbells=options.shadow_doorbells,
                              fast_path=options.fast_path)
    return Assembled({1: namespace}, config, PLAIN_NVME_ID,
                     image.sync, image.close,
                     f"{namespace.nlbas} x {options.sec_size}-byte blocks{metadata}, plain NVMe")


def _ocssd(options: ServeOptions) -> Assembled:
    if options.read_fail:
        raise ImageError("--read-fail is for OCSSD 1.2 images")
    # Everything is checked before the image is opened for writing (serving extends a
    # qemu-img file): a refused start leaves it as it was.
    report = inspect(options.image)
    if report.problems:
        more = len(report.problems) - 1
        raise ImageError(f"{options.image}: {report.problems[0]}"
                         + (f" (and {more} more; see `ocssd-vfu image info`)" if more else ""))
    geometry = report.description.geometry
    faults = Faults(rng=random.Random(options.fault_seed))
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
    config = ControllerConfig(vid=OCSSD_ID.vendor, ssvid=OCSSD_ID.subsystem_vendor,
                              serial=_serial(options), model="ocssd_vfu OCSSD 2.0 Ctrl",
                              firmware="2.0", sgl=options.sgl,
                              shadow_doorbells=options.shadow_doorbells)
    g = geometry
    kind = "volatile (RAM) " if options.volatile else ""
    return Assembled(namespaces, config, OCSSD_ID, image.sync, image.close,
                     f"{kind}OCSSD 2.0, {len(namespaces)} namespace(s) of {g.num_grp} groups x "
                     f"{g.num_pu} PUs x {g.num_chk} chunks x {g.num_sec} sectors of "
                     f"{g.sec_size}+{g.md_size} bytes")


def _ocssd12(options: ServeOptions) -> Assembled:
    if options.chunk_state:
        raise ImageError("--chunk-state is for OCSSD 2.0 images (a 1.2 image's bad blocks "
                         "are set at creation with --bbt, or by the host with Set Bad Block "
                         "Table)")
    image = Ocssd12Image(options.image, volatile=options.volatile)
    try:
        geometry = image.description.geometry
        faults = Faults(rng=random.Random(options.fault_seed))
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
    config = ControllerConfig(vid=OCSSD_ID.vendor, ssvid=OCSSD_ID.subsystem_vendor,
                              serial=_serial(options), model="ocssd_vfu OCSSD 1.2 Ctrl",
                              firmware="1.2")
    g = geometry
    kind = "volatile (RAM) " if options.volatile else ""
    return Assembled(namespaces, config, OCSSD_ID, image.sync, image.close,
                     f"{kind}OCSSD 1.2, {len(namespaces)} namespace(s) of {g.num_ch} channels x "
                     f"{g.num_lun} LUNs x {g.num_blk} blocks x {g.num_pg} pages x "
                     f"{g.num_pln} planes x {g.sec_per_pg} sectors of "
                     f"{g.sec_size}+{g.md_size} bytes")


def _serial(options: ServeOptions) -> str:
    return options.serial or default_serial(options.image)


def assemble(options: ServeOptions) -> Assembled:
    ocssd = is_ocssd_image(options.image)
    if options.mode == "ocssd" and not ocssd:
        raise ImageError(f"{options.image} is not an OCSSD image (no LNVM header): create "
                         "one with `ocssd-vfu image create`")
    if options.mode != "nvme" and ocssd:
        if options.md_size or options.extended_lba:
            raise ImageError("--md-size and --extended-lba are for plain namespaces: an OCSSD "
                             "image's geometry sets its metadata size")
        return _ocssd12(options) if spec_version(options.image) == SPEC_12 else _ocssd(options)
    if options.chunk_state or options.write_fail or options.reset_fail or options.read_fail:
        raise ImageError("--chunk-state, --write-fail, --reset-fail and --read-fail need an "
                         "OCSSD image")
    return _plain(options)


def serve(options: ServeOptions) -> int:
    # Until the socket exists nothing needs cleaning up: SIGINT ends a start-up like SIGTERM
    # does (at once, no KeyboardInterrupt traceback from wherever it was).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        preflight.check_serve(options)     # nothing opened, changed or waited for before
        claim_socket_path(options.socket)  # before the image is opened (and maybe extended)
        assembled = assemble(options)
    except (ImageError, FaultFileError, ServeError, preflight.PreflightError) as exc:
        log.error("%s", exc)
        return 1
    # Held from here until the server's handler is in place: a SIGTERM right after the
    # socket appears must still sync the image and remove the socket. (Until here they
    # end the process at once: nothing was listening yet.)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    memory = GuestMemory()
    device: VfuDevice | None = None
    # No interrupt line until the device exists (VfuDevice wires it in).
    controller = Controller(memory, assembled.namespaces, interrupt=lambda vector: None,
                            config=assembled.config)
    trace_file: TextIO | None = None
    try:
        if options.trace is not None:
            trace_file = sys.stderr if options.trace == "-" else open(options.trace, "a")  # noqa: SIM115
            controller.tracer = make_tracer(controller, trace_file, options.trace_format)
        device = VfuDevice(str(options.socket), controller, assembled.identity)
        log.info("serving %s (%s) on %s", options.image, assembled.description, options.socket)
        trio.run(Server(device, controller, assembled.sync, options.once,
                        options.sync_interval).serve)
    except (ServeError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        if device is not None:
            device.destroy()
            with contextlib.suppress(FileNotFoundError):
                options.socket.unlink()
        assembled.close()
        if trace_file not in (None, sys.stderr):
            with contextlib.suppress(OSError):  # what a full disk left in its buffer
                trace_file.close()
    return 0
