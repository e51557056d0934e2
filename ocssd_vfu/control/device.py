"""What the control socket needs from a served device, and what it can tell clients.

`ControlledDevice` is the whole contract between the QMP server and the device: the
server checks every argument it declares before calling a method, so a method only
sees valid values (addresses inside the geometry, known states and ops). A method
that refuses a request anyway raises `CommandError` with a one-line reason; the
client gets it as a QMP error and nothing changes.

The server calls these methods on its own trio thread, between two wake-ups of the
device loop, so they may read and change the device's state without locks. Only
`sync` may take long: it is awaited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ocssd_vfu.control.qmp import GENERIC_ERROR
from ocssd_vfu.openchannel.faults import AddressSpace, Fault


class CommandError(Exception):
    """The device refuses a request; the message is the QMP error's desc."""

    def __init__(self, desc: str, error_class: str = GENERIC_ERROR) -> None:
        super().__init__(desc)
        self.error_class = error_class


@dataclass(frozen=True)
class ChunkStateChange:
    """`set-chunk-state`, checked like a --chunk-state line (state and type by name)."""

    grp: int
    pu: int
    chk: int
    state: str        # FREE, OPEN, CLOSED, OFFLINE
    type: str         # W_SEQ, W_RAN
    wp: int
    wi: int
    nsid: int = 1


class ControlledDevice(Protocol):
    """A served device as the control socket sees it.

    `address_space` is None for a kind without chunks or blocks (plain NVMe): the
    chunk, fault and chunk-state commands then answer that the device has none.
    """

    address_space: AddressSpace | None

    def settle(self) -> None:
        """Before every command: the device's state whole and current for Python (the
        controller's C doorbell path paused, its counts folded in)."""
        ...

    def query_device(self) -> dict[str, Any]:
        """kind, spec version, geometry, image, options and timings in force."""
        ...

    def query_chunks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks (2.0: grp, pu, chk, state, type, wp, wli, cnlb) or blocks (1.2: ch, lun,
        blk, state, pages, bbt, erases) of namespace `nsid` (default 1) matching `filters`
        (the unit's leading address fields and `state`, each present only when given); an
        unknown nsid is a CommandError."""
        ...

    def query_stats(self) -> dict[str, Any]:
        """Counters: `commands` {opcode name: n}, `read_bytes`, `written_bytes`,
        `guest_errors` {name: n}, `doorbell_writes`, `smart` {...}, `pus` [...] (2.0:
        operations per PU), `ftl` {"waf": x, ...} when an FTL serves, and under --timing
        each PU's (1.2: `luns`, each LUN's) modelled `busy_ns`."""
        ...

    def inject_fault(self, fault: Fault) -> None: ...

    def query_faults(self) -> list[Fault]: ...

    def clear_faults(self, op: str | None) -> int:
        """Remove the faults (of one op); how many were removed."""
        ...

    def set_chunk_state(self, change: ChunkStateChange) -> None: ...

    def notify_chunk(self, unit: tuple[int, ...], state: str, nsid: int = 1
                     ) -> dict[str, Any]:
        """Post a media-feedback event on a unit of namespace `nsid` (a Chunk
        Notification entry and its AER); offered where the address space names
        `notifications`."""
        ...

    def trace_start(self, path: str, trace_format: str) -> None: ...

    def trace_stop(self) -> bool:
        """Stop tracing; False if no trace was running."""
        ...

    async def sync(self) -> None:
        """Make the image durable (msync + fsync)."""
        ...

    def quit(self) -> None:
        """Shut down cleanly, soon (the server sends the reply first)."""
        ...


class EventSink(Protocol):
    """Where the device reports what happened (the control server implements it)."""

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None: ...


class DeviceEvents:
    """The events a device raises, with their data laid out once."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def chunk_offline(self, address: dict[str, int], reason: str) -> None:
        """A chunk (block) went OFFLINE on its own: `reason` is e.g. "worn-out",
        "reset-failure", "injected-fault"."""
        self.sink.emit("CHUNK_OFFLINE", {**address, "reason": reason})

    def chunk_notification(self, nsid: int, count: int, lba: int, state: int, mask: int
                           ) -> None:
        """A Chunk Notification log entry (LID D0h) was posted."""
        self.sink.emit("CHUNK_NOTIFICATION", {"nsid": nsid, "nc": count, "lba": lba,
                                              "state": state, "mask": mask})

    def guest_error(self, name: str, detail: str) -> None:
        """The guest broke a rule (rate-limited by the server, as QEMU limits events)."""
        self.sink.emit("GUEST_ERROR", {"name": name, "detail": detail})
