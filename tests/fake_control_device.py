"""A stand-in device behind the control socket, until the real one implements the
Protocol (phase 2): a 2-group x 2-PU x 4-chunk OCSSD 2.0 chunk table in memory with a
real FaultBook. Run as `python -m tests.fake_control_device --control PATH` it serves
alone (for `ocssd-vfu ctl` and `top` tests) and stops on `quit` or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

import trio

from ocssd_vfu.control.device import ChunkStateChange, CommandError, DeviceEvents
from ocssd_vfu.control.server import ControlServer
from ocssd_vfu.ocssd.faults import chunk_state_refusal
from ocssd_vfu.openchannel.faults import AddressField, AddressSpace, Fault, FaultBook

NUM_GRP, NUM_PU, NUM_CHK, NUM_SEC = 2, 2, 4, 16
SPACE = AddressSpace(
    "chunk",
    (AddressField("grp", NUM_GRP), AddressField("pu", NUM_PU), AddressField("chk", NUM_CHK)),
    {"write": (AddressField("sec", NUM_SEC),), "read": (AddressField("sec", NUM_SEC),),
     "reset": ()},
    state_rules=lambda state, chunk_type, wp: chunk_state_refusal(state, chunk_type, wp,
                                                                  NUM_SEC))


class FakeDevice:
    address_space: AddressSpace | None = SPACE

    def __init__(self) -> None:
        self.faults = FaultBook(SPACE)
        self.chunks = [{"grp": g, "pu": p, "chk": c, "state": "FREE", "type": "W_SEQ",
                        "wp": 0, "wli": 0, "cnlb": NUM_SEC}
                       for g in range(NUM_GRP) for p in range(NUM_PU) for c in range(NUM_CHK)]
        # A little variety for the views: one open, one closed and worn, one offline chunk.
        self.chunks[1].update(state="OPEN", wp=8, wli=10)
        self.chunks[2].update(state="CLOSED", wp=16, wli=200)
        self.chunks[13].update(state="OFFLINE", wp=0xFFFF, wli=255)
        self.tracing: tuple[str, str] | None = None
        self.syncs = 0
        self.stats_asked = 0
        self.quit_requested = trio.Event()
        self.events: DeviceEvents | None = None

    def settle(self) -> None:
        """Nothing of this device runs outside Python."""

    def query_device(self) -> dict[str, Any]:
        return {"kind": "ocssd", "spec": "2.0",
                "geometry": {"num_grp": NUM_GRP, "num_pu": NUM_PU, "num_chk": NUM_CHK,
                             "clba": NUM_SEC},
                "image": "/fake.img"}

    def query_chunks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        filters = dict(filters)
        if filters.pop("nsid") != 1:
            raise CommandError("Parameter 'nsid': there is no namespace 2 (namespaces: 1)")
        return [dict(chunk) for chunk in self.chunks
                if all(chunk[key] == value for key, value in filters.items())]

    def query_stats(self) -> dict[str, Any]:
        # Grows the same way at every call, so that a view sees traffic.
        self.stats_asked += 1
        n = self.stats_asked
        return {"commands": {"VECTOR_CHUNK_WRITE": 100 * n, "VECTOR_CHUNK_READ": 50 * n},
                "read_bytes": 50 * 4096 * n, "written_bytes": 100 * 4096 * n,
                "guest_errors": {"invalid_doorbell": 2}, "doorbell_writes": 300 * n,
                "ftl": {"waf": 1.25}}

    def inject_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def query_faults(self) -> list[Fault]:
        return self.faults.faults()

    def clear_faults(self, op: str | None) -> int:
        return self.faults.clear(op)

    def set_chunk_state(self, change: ChunkStateChange) -> None:
        index = (change.grp * NUM_PU + change.pu) * NUM_CHK + change.chk
        wp = 0xFFFF if change.state == "OFFLINE" else change.wp
        self.chunks[index].update(state=change.state, type=change.type, wp=wp, wli=change.wi)
        if change.state == "OFFLINE" and self.events is not None:
            self.events.chunk_offline({"grp": change.grp, "pu": change.pu, "chk": change.chk},
                                      "set-chunk-state")

    def trace_start(self, path: str, trace_format: str) -> None:
        if path.startswith("/nonexistent/"):
            raise CommandError(f"cannot open {path}: No such file or directory")
        self.tracing = (path, trace_format)

    def trace_stop(self) -> bool:
        running, self.tracing = self.tracing is not None, None
        return running

    async def sync(self) -> None:
        await trio.sleep(0)
        self.syncs += 1

    def quit(self) -> None:
        self.quit_requested.set()


async def serve_alone(path: Path) -> None:
    device = FakeDevice()
    server = ControlServer(path, device)
    device.events = DeviceEvents(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)

        async def stop_on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

        nursery.start_soon(stop_on_signals)
        await device.quit_requested.wait()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", type=Path, required=True)
    trio.run(serve_alone, parser.parse_args().control)


if __name__ == "__main__":
    main()
