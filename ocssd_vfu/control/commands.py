"""The control socket's commands: each declared once with its arguments, then dispatched.

`build_registry(device)` lists what this device offers (a plain NVMe device has no
chunk commands); `Registry.execute` turns any request into exactly one reply: unknown
names are CommandNotFound, bad arguments GenericError naming the argument (QEMU's
texts), a device's refusal its CommandError, and an unexpected exception in a handler
a GenericError that is logged (the server keeps serving).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ocssd_vfu import __version__
from ocssd_vfu.control.arguments import Arg, ArgumentError, check_arguments
from ocssd_vfu.control.device import ChunkStateChange, CommandError, ControlledDevice
from ocssd_vfu.control.faults import fault_arguments, fault_from_arguments
from ocssd_vfu.control.qmp import COMMAND_NOT_FOUND, GENERIC_ERROR, Request
from ocssd_vfu.openchannel.faults import OPS, AddressSpace

log = logging.getLogger("ocssd_vfu.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
CHUNK_STATES = ("FREE", "OPEN", "CLOSED", "OFFLINE")
CHUNK_TYPES = ("W_SEQ", "W_RAN")
TRACE_FORMATS = ("text", "json")


def version() -> tuple[int, int, int]:
    major, minor, micro = (int(part) for part in __version__.split(".")[:3])
    return major, minor, micro


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[Arg, ...]
    handler: Handler
    help: str
    after_reply: Callable[[], None] | None = None   # quit: runs once the reply is out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": [arg.describe() for arg in self.args]}


class Registry:
    def __init__(self, settle: Callable[[], None] = lambda: None) -> None:
        self.commands: dict[str, Command] = {}
        self.settle = settle  # before every command (ControlledDevice.settle)

    def add(self, command: Command) -> None:
        self.commands[command.name] = command

    async def execute(self, request: Request) -> tuple[dict[str, Any], Command | None]:
        """The reply, and the command when it ran (its after_reply is then due)."""
        command = self.commands.get(request.name)
        if command is None:
            return request.error(COMMAND_NOT_FOUND,
                                 f"The command {request.name} has not been found"), None
        try:
            arguments = check_arguments(command.args, request.arguments)
            self.settle()
            result = await command.handler(arguments)
        except ArgumentError as exc:
            return request.error(GENERIC_ERROR, str(exc)), None
        except CommandError as exc:
            return request.error(exc.error_class, str(exc)), None
        except Exception as exc:   # a handler's bug must not end the server
            log.exception("control command %s failed", request.name)
            return request.error(GENERIC_ERROR, f"internal error in {request.name}: {exc}"), None
        return request.reply({} if result is None else result), command


def _sync(function: Callable[[dict[str, Any]], Any]) -> Handler:
    async def handler(arguments: dict[str, Any]) -> Any:
        return function(arguments)
    return handler


def build_registry(device: ControlledDevice) -> Registry:
    registry = Registry(device.settle)

    def add(name: str, help: str, function: Callable[[dict[str, Any]], Any],
            args: tuple[Arg, ...] = (), after_reply: Callable[[], None] | None = None) -> None:
        registry.add(Command(name, args, _sync(function), help, after_reply))

    add("qmp_capabilities", "leave capabilities negotiation (answered by the session)",
        lambda a: {})
    major, minor, micro = version()
    add("query-version", "the server's version",
        lambda a: {"qemu": {"major": major, "minor": minor, "micro": micro},
                   "package": f"ocssd-vfu {__version__}"})
    add("query-commands", "every command with its arguments",
        lambda a: [command.describe() for command in registry.commands.values()])
    add("query-device", "kind, spec version, geometry, image, options and timings",
        lambda a: device.query_device())
    add("query-stats", "SMART, commands per opcode, guest errors, doorbells, per-PU counts",
        lambda a: device.query_stats())
    _add_chunk_commands(add, device)
    _add_fault_commands(add, device)

    def trace_stop(arguments: dict[str, Any]) -> dict[str, Any]:
        if not device.trace_stop():
            raise CommandError("no trace is running")
        return {}

    add("trace-start", "trace every command to a file (appended)",
        lambda a: device.trace_start(a["file"], a["format"]),
        (Arg("file", str, help="path of the trace file"),
         Arg("format", str, optional=True, default="text", choices=TRACE_FORMATS)))
    add("trace-stop", "stop tracing", trace_stop)

    async def sync(arguments: dict[str, Any]) -> None:
        await device.sync()

    registry.add(Command("sync", (), sync, "make the image durable (msync + fsync)"))
    add("quit", "sync and stop the server", lambda a: {}, after_reply=device.quit)
    return registry


AddFunction = Callable[..., None]


def _add_chunk_commands(add: AddFunction, device: ControlledDevice) -> None:
    space = device.address_space
    if space is None:
        return
    nsid = Arg("nsid", int, optional=True, default=1, low=1, high=0xFFFFFFFE,
               help="the namespace (each has its own chunks)")
    filters = tuple(Arg(f.name, int, optional=True, low=0, high=f.count - 1, help=f.help)
                    for f in space.unit_fields[:-1])
    filters += (Arg("state", str, optional=True, choices=CHUNK_STATES), nsid)
    add(f"query-{space.unit}s", f"the {space.unit}s, optionally only some",
        device.query_chunks, filters)
    if space.notifications:
        add("notify-chunk", "post a media-feedback event on a chunk (D0h entry and AER)",
            lambda a: device.notify_chunk(tuple(a[f.name] for f in space.unit_fields),
                                          a["state"], a["nsid"]),
            tuple(Arg(f.name, int, low=0, high=f.count - 1, help=f.help)
                  for f in space.unit_fields)
            + (Arg("state", str, choices=space.notifications,
                   help="what the media reports (Chunk Notification state)"), nsid))
    if space.state_rules is None:
        return
    address = tuple(Arg(f.name, int, low=0, high=f.count - 1, help=f.help)
                    for f in space.unit_fields)
    add("set-chunk-state", "impose a chunk's state (a --chunk-state line, at run time)",
        lambda a: device.set_chunk_state(chunk_state_change(space, a)),
        address + (Arg("state", str, choices=CHUNK_STATES),
                   Arg("type", str, optional=True, default="W_SEQ", choices=CHUNK_TYPES),
                   Arg("wp", int, optional=True, default=0, low=0, high=(1 << 64) - 1),
                   Arg("wi", int, optional=True, default=0, low=0, high=255), nsid))


def chunk_state_change(space: AddressSpace, arguments: dict[str, Any]) -> ChunkStateChange:
    """The kind's --chunk-state rules, the refusal naming its argument."""
    assert space.state_rules is not None
    refused = space.state_rules(arguments["state"], arguments["type"], arguments["wp"])
    if refused is not None:
        argument, reason = refused
        raise ArgumentError(argument, f"Parameter '{argument}': {reason}")
    return ChunkStateChange(**arguments)


def _add_fault_commands(add: AddFunction, device: ControlledDevice) -> None:
    space = device.address_space

    def inject(arguments: dict[str, Any]) -> dict[str, Any]:
        if space is None:
            raise ArgumentError("op", "Parameter 'op': this device has no media operations "
                                "to fail")
        fault = fault_from_arguments(space, arguments)
        device.inject_fault(fault)
        return fault.describe(space)

    def query(arguments: dict[str, Any]) -> list[dict[str, Any]]:
        if space is None:
            return []
        return [fault.describe(space) for fault in device.query_faults()]

    # The declared arguments are checked again with the op's own rules in inject().
    declared = fault_arguments(space) if space is not None else (Arg("op", str, choices=OPS),)
    add("inject-fault", "fail the next commands of an op on a chunk/block or a sector/page",
        inject, declared)
    add("query-faults", "the faults in force", query)
    add("clear-faults", "remove the faults (of one op)",
        lambda a: {"cleared": device.clear_faults(a.get("op"))},
        (Arg("op", str, optional=True, choices=OPS),))
