"""What a namespace kind provides to the NVMe core, and what its handlers get.

The core (this package) knows no kind by name: a namespace carries its kind as
the class attribute `kind` (a `NamespaceKind`), and the core finds every command,
log page and trace text of that namespace in it, as QEMU's hw/nvme selects
`ns->iocs` per command set. A kind imports the core; the core never imports a
kind (an import-linter contract in pyproject.toml holds that rule).

How a new kind plugs in (the device-side FTL, say):
1. a package beside ocssd_vfu/plain, ocssd_vfu/ocssd, ocssd_vfu/ocssd12, whose
   namespace class satisfies `Namespace` below: nsid, lba_size, supports_dulbe,
   identify(), flush_write_cache() and the class attribute `kind`, declared
   `kind: ClassVar[NamespaceKind]`;
2. its command table (the package's commands.py): `IoCommand(decode, run,
   effects, counted)` per I/O opcode, plus the admin commands and log pages it
   adds (`AdminCommand`, `LogPage`) and its trace `describe`, gathered in one
   `NamespaceKind` and assigned to the class (`PlainNamespace.kind = PLAIN`:
   ocssd_vfu/plain/commands.py is the smallest); the package's __init__.py
   imports commands.py, so importing the package registers the kind;
3. a layer for the package in pyproject.toml's import-linter contract (beside
   plain | ocssd | ocssd12), and a device record (ocssd_vfu/devices.py) saying how
   its image is recognised and opened and which serve options it takes; nothing
   in nvme/ changes.

Handlers get `ctx` (a CommandContext: the Controller itself), the namespace, the
command (nvme/command.py's Command: the SQE's dwords; their layouts are declared
in spec/commands.py) and what `decode` returned.

What the core derives from the registered tables (so a command is never served
without being advertised, nor the reverse): Invalid Opcode for an opcode the
namespace's kind does not list, the Commands Supported and Effects log (05h),
Identify Controller OACS and ONCS, and the SMART / Health read and write
counters (`counted`).

Time (kind-neutral, for timed media: serve --timing): a handler decides its
command's whole outcome (data moved, tables updated, status) when it runs, at
`ctx.now_ns` (CLOCK_MONOTONIC ns, read once when the command was fetched), and
may then call `ctx.hold_until(due_ns)`: the controller posts the CQE at that
time instead of at once (several calls: the latest wins). A command refused as
invalid completes at once: do not hold it. A namespace whose media is timed has
the attribute `timing` (an object with `flush(now_ns) -> ns`, such as
timing.model.FlashModel): Flush and shutdown wait until then, and the core
never runs the kind's fast path for it.

Handlers return a status (errors are values: `Result`); `decode` may raise
`CommandError` instead, so that a decoded command is always whole. Statuses of
failed transfers arrive as `TransferError` only inside the dma layer:
`dma.dptr.move` and `dma.dptr.move_data` turn them into a status in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from ocssd_vfu.dma import dptr
from ocssd_vfu.nvme.command import Command, Result
from ocssd_vfu.nvme.health import NOT_COUNTED
from ocssd_vfu.spec.commands import DSM_DEALLOCATE, dsm_ranges
from ocssd_vfu.spec.status import DNR, Status

if TYPE_CHECKING:
    from ocssd_vfu.dma.memory import GuestMemory
    from ocssd_vfu.nvme.feature_values import Features
    from ocssd_vfu.nvme.health import Health
    from ocssd_vfu.nvme.queues import SubmissionQueue


class CommandContext(Protocol):
    """What a kind's handler may use of the controller: guest memory, the memory page
    size (CC.MPS), the maximum data transfer in bytes (MDTS) and the current feature
    values (DULBE is `features.dulbe`); admin handlers also find namespaces by NSID.
    The Controller itself satisfies it (no object is built per command)."""

    @property
    def memory(self) -> GuestMemory: ...
    @property
    def page_size(self) -> int: ...
    @property
    def max_transfer(self) -> int: ...
    @property
    def features(self) -> Features: ...
    @property
    def namespaces(self) -> Mapping[int, Namespace]: ...
    @property
    def now_ns(self) -> int:
        """When the command arrived (CLOCK_MONOTONIC ns; a fake clock in tests)."""
    def hold_until(self, due_ns: int) -> None:
        """Post this command's completion at `due_ns`, not at once (module docstring)."""
    def post_async_event(self, dw0: int) -> None:
        """Complete an Asynchronous Event Request with `dw0` (type, info, log page),
        now or when the host sends one: how a kind tells the host something changed."""


class FastPathContext(CommandContext, Protocol):
    """What a kind's fast path also needs: the SMART / Health counters it adds to."""

    @property
    def health(self) -> Health: ...
    @property
    def opcode_counts(self) -> Counter[tuple[bool, int]]:
        """Commands per (admin queue?, opcode), as the Python path counts them."""


class CommandError(Exception):
    """A command refused while it is decoded: its (status, result)."""

    def __init__(self, status: int, result: int = 0) -> None:
        super().__init__(status, result)
        self.status = status
        self.result = result


def to_host(ctx: CommandContext, cmd: Command, data: bytes) -> Result:
    """Copy `data` to the command's PRPs (its whole length: the host sized the buffer):
    how an admin command or log page of any kind answers."""
    return (dptr.move_data(ctx.memory, cmd, ctx.page_size, [memoryview(data)], True), 0)


# -- rules every block-addressed kind applies (plain NVMe, the device-side FTL) -------
def check_lba_range(nlbas: int, slba: int, nlb: int) -> int:
    """LBA Out of Range unless [slba, slba + nlb) is inside a namespace of `nlbas`."""
    if slba + nlb > nlbas:
        return Status.LBA_OUT_OF_RANGE | DNR
    return Status.SUCCESS


def check_transfer(ctx: CommandContext, block_bytes: int, nlbas: int, slba: int,
                   nlb: int) -> int:
    """A data transfer of `nlb` blocks of `block_bytes` (metadata included where the
    format extends it): within MDTS, then within the namespace."""
    if nlb * block_bytes > ctx.max_transfer:
        return Status.INVALID_FIELD | DNR
    return check_lba_range(nlbas, slba, nlb)


def deallocation_ranges(ctx: CommandContext, cmd: Command, nlbas: int
                        ) -> tuple[int, list[tuple[int, int]]]:
    """Dataset Management's ranges to deallocate (status, ranges): none when the command
    does not deallocate (other attributes are hints), the empty ones dropped, and LBA Out
    of Range if any lies outside the namespace (checked before any is deallocated)."""
    if not cmd.cdw11 & DSM_DEALLOCATE:
        return Status.SUCCESS, []
    status, listed = dptr.read_dsm_ranges(ctx.memory, cmd, ctx.page_size,
                                          dsm_ranges(cmd.cdw10))
    if status:
        return status, []
    ranges = [(slba, length) for slba, length in listed if length]
    if any(check_lba_range(nlbas, slba, length) for slba, length in ranges):
        return Status.LBA_OUT_OF_RANGE | DNR, []
    return Status.SUCCESS, ranges


# decode(ctx, namespace, command) -> the command's decoded form (addresses, counts),
# or CommandError; run(ctx, namespace, command, decoded) -> (status, result).
Decode = Callable[[CommandContext, Any, Command], Any]
Run = Callable[[CommandContext, Any, Command, Any], Result]


class IoCommand(NamedTuple):
    """One I/O opcode of a kind: how it is decoded and run, its Commands Supported
    and Effects bits (log 05h), and whether it counts as a host read or write in the
    SMART / Health log (health.HOST_READ / HOST_WRITE; its NLB times the namespace's
    lba_size is the data it moved)."""

    decode: Decode
    run: Run
    effects: int
    counted: int = NOT_COUNTED


class AdminCommand(NamedTuple):
    """An admin opcode a kind adds (OCSSD Geometry E2h, Format NVM): offered, and in
    log 05h, while the controller has a namespace of the kind. The handler finds its
    namespace through ctx.namespaces itself (CDW1 may be FFFFFFFFh: all of them)."""

    handler: Callable[[CommandContext, Command], Result]
    effects: int


# A log page a kind adds (OCSSD Chunk Information CAh): handler(ctx, cmd, offset,
# length) -> Result, called after the core checked the length against MDTS; it
# resolves cmd.nsid and the offset itself (some pages are read in slices).
LogPage = Callable[[CommandContext, Command, int, int], Result]


def no_description(namespace: Any, cmd: Command, decoded: Any) -> dict[str, object]:
    return {}


class FastPath(Protocol):
    """A kind's native path for an I/O queue: runs commands from the head of `sq`
    and completes only the successful ones (the first one it leaves at the head goes
    through the Python path); returns how many it completed."""

    def run(self, ctx: FastPathContext, sq: SubmissionQueue) -> int: ...

    def arm(self, ctx: FastPathContext) -> tuple[int, Any] | None:
        """For the C doorbell path (nvme/native_doorbells.py): the runner
        (OCSSD_RUNNER_*) and the io struct it runs on, limits set, counters zeroed,
        the image exported until `release`; None while the namespace has something
        only the Python path knows of."""

    def fold(self, ctx: FastPathContext) -> None:
        """What the C doorbell path ran since `arm`, counted as the Python path counts
        it (SMART, opcode_counts, the kind's own tables)."""

    def release(self) -> None:
        """The image's exports released (its mmap closable again)."""


@dataclass(frozen=True, eq=False)  # a kind is itself: identity, not field equality
class NamespaceKind:
    """Everything the core needs to serve namespaces of one kind."""

    name: str
    io_commands: Mapping[int, IoCommand]
    admin_commands: Mapping[int, AdminCommand] = field(default_factory=dict)
    log_pages: Mapping[int, LogPage] = field(default_factory=dict)
    # The trace's fields for an executed command, from what `decode` returned
    # (never by reading guest memory again): {"lbas": [...]} or {"slba":, "nlb":}.
    describe: Callable[[Any, Command, Any], dict[str, object]] = no_description
    # A native path for a controller whose only namespace is of this kind, if any.
    fast_path: Callable[[Any], FastPath] | None = None


class Namespace(Protocol):
    """What the core needs of every namespace, whatever its kind."""

    kind: ClassVar[NamespaceKind]

    @property
    def nsid(self) -> int: ...
    @property
    def lba_size(self) -> int: ...
    @property
    def supports_dulbe(self) -> bool:
        """Whether Error Recovery's DULBE may be set (Identify Namespace NSFEAT bit 2)."""
    def identify(self) -> bytes:
        """Identify Namespace (CNS 00h), 4096 bytes."""
    def flush_write_cache(self) -> None:
        """Make everything written so far readable and durable-ready: Flush, shutdown
        (CC.SHN) and device reset call it before the shell syncs the image."""
