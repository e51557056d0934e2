"""The composition root of `ocssd-vfu serve`: options -> image -> controller -> shell.

`serve` reads top to bottom as the server's life: claim the socket, pick the
device kind (devices.py) and refuse the options it does not take, open the
image, build the controller configuration (once, from the kind's record and the
options, whatever the kind), then hand the controller to the vfio-user shell
(vfu/) and run it until a signal or `--once` ends it.

A cross-cutting option (a timing model, a control socket) is threaded through
here: a ServeOptions field, then one step in `assemble` or `serve` that builds
its object and gives it to the controller or the shell; kinds it does not apply
to leave it out of their record's `options` and it is refused there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import trio

from ocssd_vfu import preflight
from ocssd_vfu.control.device import DeviceEvents
from ocssd_vfu.control.server import ControlServer, listen
from ocssd_vfu.controlled import DeviceControl
from ocssd_vfu.devices import (
    DeviceKind,
    OpenedImage,
    ServeOptions,
    device_kind,
    refuse_options,
)
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.media.raw import ImageError
from ocssd_vfu.nvme.controller import Controller, ControllerConfig, Namespace
from ocssd_vfu.nvme.trace import make_tracer
from ocssd_vfu.openchannel.faults import FaultFileError
from ocssd_vfu.spec.pci import PciIdentity
from ocssd_vfu.timing.scheduler import CompletionScheduler
from ocssd_vfu.vfu.device import VfuDevice
from ocssd_vfu.vfu.server import STOP_SIGNALS, Companions, ServeError, Server, claim_socket_path

log = logging.getLogger("ocssd_vfu.serve")

__all__ = ["Assembled", "ServeOptions", "assemble", "default_serial", "serve"]


@dataclass
class Assembled:
    """A device ready to serve: its namespaces, controller configuration and identity."""

    kind: DeviceKind
    image: OpenedImage
    config: ControllerConfig

    @property
    def namespaces(self) -> dict[int, Namespace]:
        return self.image.namespaces

    @property
    def identity(self) -> PciIdentity:
        return self.kind.identity

    @property
    def sync(self) -> Callable[[], None]:
        return self.image.sync

    @property
    def close(self) -> Callable[[], None]:
        return self.image.close

    @property
    def description(self) -> str:
        return self.image.description


def default_serial(image: Path) -> str:
    """One serial per image, so that two servers attached to one guest are two NVMe
    subsystems (Linux rejects a second controller with the same NQN and controller ID)."""
    return "ocssd-vfu-" + hashlib.sha256(str(image.resolve()).encode()).hexdigest()[:8]


def controller_config(kind: DeviceKind, options: ServeOptions) -> ControllerConfig:
    """The one place a controller configuration is made, for every kind."""
    return ControllerConfig(vid=kind.identity.vendor, ssvid=kind.identity.subsystem_vendor,
                            serial=options.serial or default_serial(options.image),
                            model=kind.model, firmware=kind.firmware, sgl=options.sgl,
                            shadow_doorbells=options.shadow_doorbells,
                            fast_path=options.fast_path, poll_idle_us=options.poll_idle_us)


def assemble(options: ServeOptions) -> Assembled:
    """The device kind, its image opened and the controller configuration; ImageError
    or FaultFileError (one line) before anything is opened for writing."""
    kind = device_kind(options.image, options.mode)
    refuse_options(kind, options)
    return Assembled(kind, kind.open(options), controller_config(kind, options))


def serve(options: ServeOptions) -> int:
    # Until the socket exists nothing needs cleaning up: SIGINT ends a start-up like SIGTERM
    # does (at once, no KeyboardInterrupt traceback from wherever it was).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    control_listener = None
    try:
        preflight.check_serve(options)     # nothing opened, changed or waited for before
        claim_socket_path(options.socket)  # before the image is opened (and maybe extended)
        if options.control is not None:
            control_listener = listen(options.control)
        assembled = assemble(options)
    except (ImageError, FaultFileError, ServeError, preflight.PreflightError, OSError) as exc:
        log.error("%s", exc)
        if control_listener is not None:
            close_control(control_listener, options.control)
        return 1
    # Held from here until the server's handler is in place: a SIGTERM right after the
    # socket appears must still sync the image and remove the socket. (Until here they
    # end the process at once: nothing was listening yet.)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # No interrupt line until the device exists (VfuDevice wires it in).
    controller = Controller(GuestMemory(), assembled.namespaces, interrupt=lambda vector: None,
                            config=assembled.config)
    device: VfuDevice | None = None
    trace_file: TextIO | None = None
    try:
        if options.trace is not None:
            trace_file = sys.stderr if options.trace == "-" else open(options.trace, "a")  # noqa: SIM115
            controller.tracer = make_tracer(controller, trace_file, options.trace_format)
        device = VfuDevice(str(options.socket), controller, assembled.identity)
        log.info("serving %s (%s) on %s", options.image, assembled.description, options.socket)
        scheduler = CompletionScheduler(lead_ns=options.timing_lead_us * 1000,
                                        queue=controller.held)
        try:
            server = Server(device, controller, assembled.sync, options.once,
                            options.sync_interval, scheduler, idle=assembled.image.idle,
                            poll=options.poll)
            if control_listener is not None:
                server.companions = control_companions(assembled, options, controller, server,
                                                       control_listener)
                control_listener = None   # the control server owns it now
            trio.run(server.serve)
        finally:
            scheduler.close()
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
        if control_listener is not None:
            close_control(control_listener, options.control)
    return 0


def control_companions(assembled: Assembled, options: ServeOptions, controller: Controller,
                       server: Server, listening: socket.socket) -> Companions:
    """The control socket (--control) as a task beside the device loop, and the vfio-user
    client's comings and goings as its events."""
    assert options.control is not None
    control = DeviceControl(assembled.kind, options, controller, assembled.sync, server.stop)
    control_server = ControlServer(options.control, control)
    events = DeviceEvents(control_server)
    control.watch(events)

    async def serve_control(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        await control_server.serve(listening, task_status=task_status)

    def vfio_user(name: str) -> Callable[[], None]:
        return lambda: control_server.emit(name, {"client": "vfio-user",
                                                  "socket": str(options.socket)})

    return Companions((serve_control,), vfio_user("CLIENT_ATTACHED"),
                      vfio_user("CLIENT_DETACHED"))


def close_control(listening: socket.socket, path: Path | None) -> None:
    listening.close()
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
