"""Assembling a server from the command line: image, controller, device, loop."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import trio

from ocssd_vfu.media.raw import ImageError, RawImage
from ocssd_vfu.nvme.controller import Controller, ControllerConfig
from ocssd_vfu.nvme.memory import GuestMemory
from ocssd_vfu.nvme.namespace import PlainNamespace
from ocssd_vfu.vfu.device import PciIdentity, VfuDevice
from ocssd_vfu.vfu.server import ServeError, Server, claim_socket_path

log = logging.getLogger("ocssd_vfu.serve")

PLAIN_NVME_ID = PciIdentity(0x1B36, 0x0010, 0x1AF4, 0x1100)  # QEMU's emulated-NVMe IDs
LNVM_MAGIC = b"MVNL"  # 0x4C4E564D little-endian: a qemu-nvme OCSSD image


@dataclass
class ServeOptions:
    socket: Path
    image: Path
    mode: str = "auto"
    sec_size: int = 4096
    once: bool = False
    serial: str = "ocssd-vfu-0"


def _check_mode(options: ServeOptions) -> None:
    if options.mode == "nvme":
        return  # asked for: any file is served as a plain namespace
    with contextlib.suppress(OSError), options.image.open("rb") as f:
        if f.read(4) == LNVM_MAGIC:
            raise ServeError(f"{options.image} is an OCSSD (LNVM) image: OCSSD mode is not "
                             "available in this version of ocssd_vfu")


def serve(options: ServeOptions) -> int:
    try:
        _check_mode(options)
        image = RawImage(options.image, options.sec_size)
    except (ImageError, ServeError) as exc:
        log.error("%s", exc)
        return 1
    memory = GuestMemory()
    device: VfuDevice | None = None
    namespace = PlainNamespace(1, image.view, image.lba_size)
    # No interrupt line until the device exists (VfuDevice wires it in).
    controller = Controller(memory, {1: namespace}, interrupt=lambda vector: None,
                            config=ControllerConfig(serial=options.serial))
    try:
        claim_socket_path(options.socket)
        device = VfuDevice(str(options.socket), controller, PLAIN_NVME_ID)
        os.chmod(options.socket, 0o600)
        log.info("serving %s (%d x %d-byte blocks) on %s", options.image, namespace.nlbas,
                 image.lba_size, options.socket)
        trio.run(Server(device, controller, image.sync, options.once).serve)
    except (ServeError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        if device is not None:
            device.destroy()
            with contextlib.suppress(FileNotFoundError):
                options.socket.unlink()
        image.sync()
        image.close()
    return 0
