"""The served device as the control socket sees it (control/device.py's ControlledDevice).

control/ knows no kind; this module does: it reads the controller's counters and the
namespaces' chunk (2.0) or block (1.2) tables, hands `inject-fault` to the FaultBook the
kinds ask, and turns what the kinds report (a chunk OFFLINE on its own, a Chunk
Notification entry, a guest error) into control-socket events. It runs on the device
loop's trio thread (the control server is a task of the same nursery), so it reads and
changes the device between two commands, never during one.

Chunk queries, set-chunk-state and notify-chunk take the namespace (`nsid`, default 1:
every namespace of an image has the same geometry, and its chunks its own table); the
faults are the device's (its namespaces share one FaultBook).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TextIO

import trio

from ocssd_vfu.control.device import ChunkStateChange, CommandError, DeviceEvents
from ocssd_vfu.devices import DeviceKind, ServeOptions
from ocssd_vfu.ftl.stats import collect
from ocssd_vfu.ftlns.namespace import FtlNamespace
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.nvme.trace import make_tracer, opcode_name
from ocssd_vfu.ocssd.faults import STATES, TYPES
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd.wear import CHUNK_NOTIFICATION_AEN
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import AddressSpace, Fault, FaultBook
from ocssd_vfu.spec.ocssd import NotificationState
from ocssd_vfu.timing.model import FlashModel

STATE_NAMES = {value: name for name, value in STATES.items()}
TYPE_NAMES = {value: name for name, value in TYPES.items()}
# What a 1.2 block's bad-block value means, in the 2.0 words query-blocks filters with.
BLOCK_STATES = {0: "FREE", 1: "OFFLINE", 2: "OFFLINE", 4: "OFFLINE", 8: "OFFLINE"}
TIMING_OPTIONS = ("timing",)   # ServeOptions fields of a timing model, when one is merged


class DeviceControl:
    """ControlledDevice over a Controller and its namespaces."""

    def __init__(self, kind: DeviceKind, options: ServeOptions, controller: Controller,
                 sync: Callable[[], None], stop: Callable[[], None]) -> None:
        self.kind = kind
        self.options = options
        self.controller = controller
        self._sync = sync
        self._stop = stop
        self.namespace = controller.namespaces.get(1)
        self.faults: FaultBook | None = getattr(self.namespace, "faults", None)
        self.address_space: AddressSpace | None = \
            self.faults.space if self.faults is not None else None
        self.trace_file: TextIO | None = None
        self.events: DeviceEvents | None = None

    def settle(self) -> None:
        self.controller.pause_native()

    # -- events -----------------------------------------------------------------------------
    def watch(self, events: DeviceEvents) -> None:
        """Report the kinds' changes and the guest's errors as events."""
        self.events = events
        self.controller.guest_error_listener = events.guest_error
        for ns in self.controller.namespaces.values():
            if isinstance(ns, OcssdNamespace):
                ns.watchers.append(self._chunk_offline_20)
                if self._notification not in ns.notifications.listeners:  # one log for all
                    ns.notifications.listeners.append(self._notification)
            elif isinstance(ns, Ocssd12Namespace):
                ns.watchers.append(self._block_offline_12)

    def _chunk_offline_20(self, chunk: int, reason: str) -> None:
        assert self.events is not None and isinstance(self.namespace, OcssdNamespace)
        grp, pu, chk = self.namespace.geometry.chunk_position(chunk)  # one geometry for all
        self.events.chunk_offline({"grp": grp, "pu": pu, "chk": chk}, reason)

    def _block_offline_12(self, block: int, reason: str) -> None:
        assert self.events is not None and isinstance(self.namespace, Ocssd12Namespace)
        ch, lun, blk = self.namespace.geometry.block_position(block)
        self.events.chunk_offline({"ch": ch, "lun": lun, "blk": blk}, reason)

    def _namespace(self, nsid: int) -> object:
        ns = self.controller.namespaces.get(nsid)
        if ns is None:
            raise CommandError(f"Parameter 'nsid': there is no namespace {nsid} (namespaces: "
                               f"{', '.join(map(str, sorted(self.controller.namespaces)))})")
        return ns

    def _notification(self, entry: dict[str, Any]) -> None:
        assert self.events is not None
        self.events.chunk_notification(entry["nsid"], entry["nc"], entry["lba"],
                                       entry["state"], entry["mask"])

    # -- queries ----------------------------------------------------------------------------
    def query_device(self) -> dict[str, Any]:
        ns = self.namespace
        described: dict[str, Any] = {
            "kind": self.kind.name, "mode": self.kind.mode, "image": str(self.options.image),
            "namespaces": len(self.controller.namespaces), "model": self.kind.model,
            "serial": self.controller.config.serial}
        if isinstance(ns, OcssdNamespace):
            g = ns.geometry
            described["spec"] = "2.0"
            described["geometry"] = {"num_grp": g.num_grp, "num_pu": g.num_pu,
                                     "num_chk": g.num_chk, "clba": g.num_sec,
                                     "sec_size": g.sec_size, "md_size": g.md_size,
                                     "ws_min": g.ws_min, "ws_opt": g.ws_opt,
                                     "mw_cunits": g.mw_cunits}
        elif isinstance(ns, Ocssd12Namespace):
            g12 = ns.geometry
            described["spec"] = "1.2"
            described["geometry"] = {"num_ch": g12.num_ch, "num_lun": g12.num_lun,
                                     "num_pln": g12.num_pln, "num_blk": g12.num_blk,
                                     "num_pg": g12.num_pg, "sec_per_pg": g12.sec_per_pg,
                                     "sec_size": g12.sec_size, "md_size": g12.md_size}
        elif ns is not None:
            described["spec"] = None
            described["geometry"] = {"nlbas": getattr(ns, "nlbas", None),
                                     "lba_size": ns.lba_size}
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)}
        described["options"] = {name: str(value) if isinstance(value, Path) else value
                                 for name, value in options.items()}
        described["timings"] = {name: described["options"][name]
                                for name in TIMING_OPTIONS if name in options}
        return described

    def query_chunks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        filters = dict(filters)
        ns = self._namespace(filters.pop("nsid", 1))
        if isinstance(ns, OcssdNamespace):
            return self._chunks_20(ns, filters)
        if isinstance(ns, Ocssd12Namespace):
            return self._blocks_12(ns, filters)
        return []

    @staticmethod
    def _chunks_20(ns: OcssdNamespace, filters: dict[str, Any]) -> list[dict[str, Any]]:
        g, table = ns.geometry, ns.chunks
        found = []
        for grp in range(g.num_grp) if "grp" not in filters else [filters["grp"]]:
            for pu in range(g.num_pu) if "pu" not in filters else [filters["pu"]]:
                for chk in range(g.num_chk):
                    i = g.chunk_index(grp, pu, chk)
                    state = STATE_NAMES.get(table.state[i], f"{table.state[i]:#x}")
                    if filters.get("state", state) != state:
                        continue
                    found.append({"grp": grp, "pu": pu, "chk": chk, "state": state,
                                  "type": TYPE_NAMES.get(table.type[i] & 0x3,
                                                         f"{table.type[i]:#x}"),
                                  "wp": table.wp[i], "wli": table.wli[i],
                                  "cnlb": table.cnlb[i], "erases": table.erases[i]})
        return found

    @staticmethod
    def _blocks_12(ns: Ocssd12Namespace, filters: dict[str, Any]) -> list[dict[str, Any]]:
        g, table = ns.geometry, ns.blocks
        found = []
        for ch in range(g.num_ch) if "ch" not in filters else [filters["ch"]]:
            for lun in range(g.num_lun) if "lun" not in filters else [filters["lun"]]:
                for blk in range(g.num_blk):
                    first = g.block_index(ch, lun, blk) * g.num_pln
                    planes = range(first, first + g.num_pln)
                    bbt = max(table.value(p) for p in planes)
                    pages = max(table.pages[p] for p in planes)
                    state = BLOCK_STATES.get(bbt, "OFFLINE") if bbt else \
                        ("FREE" if pages == 0 else "CLOSED" if pages >= g.num_pg else "OPEN")
                    if filters.get("state", state) != state:
                        continue
                    found.append({"ch": ch, "lun": lun, "blk": blk, "state": state,
                                  "pages": pages, "bbt": bbt,
                                  "erases": max(table.erases[p] for p in planes)})
        return found

    def query_stats(self) -> dict[str, Any]:
        ctrl = self.controller
        health = ctrl.health
        stats: dict[str, Any] = {
            "commands": {("admin " if admin else "") + opcode_name(admin, opc): count
                         for (admin, opc), count in sorted(ctrl.opcode_counts.items())},
            "read_bytes": health.transferred[HOST_READ],
            "written_bytes": health.transferred[HOST_WRITE],
            "guest_errors": dict(sorted(ctrl.guest_errors.items())),
            "doorbell_writes": ctrl.doorbell_writes,
            "smart": {"host_read_commands": health.commands[HOST_READ],
                      "host_write_commands": health.commands[HOST_WRITE],
                      "power_cycles": health.power_cycles,
                      "unsafe_shutdowns": health.unsafe_shutdowns},
            "async_events_waiting": len(ctrl.async_events),
        }
        ns = self.namespace
        if isinstance(ns, OcssdNamespace):
            g = ns.geometry
            stats["pus"] = [{"grp": i // g.num_pu, "pu": i % g.num_pu, "operations": n}
                            for i, n in enumerate(ns.pu_operations)]
            stats["notifications"] = ns.notifications.count
            _add_busy_time(stats["pus"], ns.timing)
        elif isinstance(ns, Ocssd12Namespace) and ns.timing is not None:
            g12 = ns.geometry
            stats["luns"] = [{"ch": i // g12.num_lun, "lun": i % g12.num_lun}
                             for i in range(g12.num_ch * g12.num_lun)]
            _add_busy_time(stats["luns"], ns.timing)
        elif isinstance(ns, FtlNamespace):
            found = collect(ns.ftl)
            stats["ftl"] = {**asdict(found), "valid_histogram": list(found.valid_histogram),
                            "waf": round(found.waf, 3)}
            if ns.timing is not None:
                stats["pus"] = [{"pu": pu} for pu in range(ns.timing.model.layout.pus)]
                _add_busy_time(stats["pus"], ns.timing.model)
        return stats

    # -- faults -----------------------------------------------------------------------------
    def inject_fault(self, fault: Fault) -> None:
        assert self.faults is not None   # offered only where the kind has an address space
        self.faults.add(fault)

    def query_faults(self) -> list[Fault]:
        return self.faults.faults() if self.faults is not None else []

    def clear_faults(self, op: str | None) -> int:
        return self.faults.clear(op) if self.faults is not None else 0

    # -- chunk states and notifications (2.0) ------------------------------------------------
    def set_chunk_state(self, change: ChunkStateChange) -> None:
        ns = self._namespace(change.nsid)
        if not isinstance(ns, OcssdNamespace):
            raise CommandError("this device has no chunk states to set")
        chunk = ns.geometry.chunk_index(change.grp, change.pu, change.chk)
        ns.chunks.set(chunk, STATES[change.state], TYPES[change.type], change.wp, change.wi)
        if change.state == "OFFLINE":
            ns.went_offline(chunk, "set-chunk-state")
            self._announce(ns)

    def notify_chunk(self, unit: tuple[int, ...], state: str, nsid: int = 1
                     ) -> dict[str, Any]:
        """A media-feedback event: a Chunk Notification entry and its AER."""
        ns = self._namespace(nsid)
        if not isinstance(ns, OcssdNamespace):
            raise CommandError("this device has no Chunk Notification log")
        ns.notify(ns.chunks.slba[ns.geometry.chunk_index(*unit)], NotificationState[state])
        self._announce(ns)
        return {"nc": ns.notifications.count}

    def _announce(self, ns: OcssdNamespace) -> None:
        if ns.take_announcement():
            self.controller.post_async_event(CHUNK_NOTIFICATION_AEN)

    # -- trace, sync, quit ------------------------------------------------------------------
    def trace_start(self, path: str, trace_format: str) -> None:
        try:
            out = open(path, "a")  # noqa: SIM115 - closed by trace_stop or at exit
        except OSError as exc:
            raise CommandError(f"cannot open {path}: {exc.strerror}") from None
        self.trace_stop()
        self.trace_file = out
        self.controller.tracer = make_tracer(self.controller, out, trace_format)

    def trace_stop(self) -> bool:
        running = self.controller.tracer is not None
        self.controller.tracer = None
        if self.trace_file is not None and self.trace_file is not sys.stderr:
            self.trace_file.close()
        self.trace_file = None
        return running

    async def sync(self) -> None:
        try:
            await trio.to_thread.run_sync(self._sync)
        except OSError as exc:
            raise CommandError(f"syncing the image failed: {exc}") from None

    def quit(self) -> None:
        self._stop()


def _add_busy_time(units: list[dict[str, Any]], model: FlashModel | None) -> None:
    """Under --timing, each PU's (LUN's) modelled busy time, in ns (timing/model.py)."""
    if model is None:
        return
    for unit, modelled in zip(units, model.pus, strict=True):
        unit["busy_ns"] = modelled.busy_ns
