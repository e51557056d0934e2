"""`make timingbench`: how closely completions follow the flash timing model.

Each cell of the matrix runs one workload twice:
- modelled: the model alone on a virtual clock, with a host that resubmits the instant a
  command completes (what a perfect device and host would show);
- measured: the same workload on the real clock, every completion posted by the
  completion scheduler (timerfd + trio) and resubmitted from its callback.
It prints latency p50/p99 and throughput of both and the relative error
(measured / modelled - 1). Errors are left out where the modelled latency is under
50 µs (a buffered write completes at once; the targets are for operations of 50 µs and
longer).

Matrix: read (one sector), write (one ws_opt unit), reset (one chunk) x QD1, QD32 x one
PU, the PUs of one group, every PU x idle, or with a background writer that keeps the
write buffers of those PUs full.

The target is this process's model + scheduler (`ModelTarget`). Phase 2 adds a target
that drives the real controller through the vfio-user callbacks as `make hostbench` does;
it only has to implement `Target.submit`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import trio

from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.timing.model import FlashModel, FlashPage
from ocssd_vfu.timing.parameters import (
    DEFAULT_CHANNEL_MBPS,
    Layout,
    TimingParameters,
    default_buffer_sectors,
)
from ocssd_vfu.timing.scheduler import CompletionScheduler, DueQueue

OPERATIONS = ("read", "write", "reset")
QUEUE_DEPTHS = (1, 32)
SCOPES = ("1 PU", "1 group", "all PUs")
BUFFERS = ("idle", "full")
ERROR_FLOOR_NS = 50_000  # below this modelled latency no error is computed


@dataclass(frozen=True)
class MediaOp:
    """One command's media work on one PU."""

    kind: str
    pu: int
    pages: tuple[tuple[FlashPage, int], ...] = ()

    def due(self, model: FlashModel, now: int) -> int:
        if self.kind == "read":
            return model.read(now, self.pu, self.pages)
        if self.kind == "write":
            return model.program(now, self.pu, self.pages)
        return model.erase(now, self.pu)


@dataclass(frozen=True)
class Cell:
    operation: str
    queue_depth: int
    scope: str
    buffer: str

    @property
    def name(self) -> str:
        return f"{self.operation} QD{self.queue_depth} {self.scope}, {self.buffer}"


class Workload:
    """Random PUs of the scope; reads of one random sector, writes of the next ws_opt unit
    of the PU's current chunk, resets of a random chunk."""

    def __init__(self, geometry: OcssdGeometry, pus: list[int], rng: random.Random) -> None:
        self.geometry, self.pus, self.rng = geometry, pus, rng
        self.units_per_chunk = geometry.num_sec // geometry.ws_opt
        self.cursor = dict.fromkeys(pus, 0)  # next unit to write, counted over all chunks

    def ops(self, kind: str) -> Iterator[MediaOp]:
        g, rng = self.geometry, self.rng
        while True:
            pu = rng.choice(self.pus)
            if kind == "read":
                yield MediaOp(kind, pu, ((FlashPage(rng.randrange(g.num_chk),
                                                    rng.randrange(self.units_per_chunk)), 1),))
            elif kind == "write":
                block, unit = divmod(self.cursor[pu], self.units_per_chunk)
                self.cursor[pu] += 1
                yield MediaOp(kind, pu, ((FlashPage(block % g.num_chk, unit), g.ws_opt),))
            else:
                yield MediaOp(kind, pu)


def scope_pus(scope: str, geometry: OcssdGeometry) -> list[int]:
    if scope == "1 PU":
        return [0]
    if scope == "1 group":
        return list(range(geometry.num_pu))
    return list(range(geometry.num_grp * geometry.num_pu))


def parameters_of(geometry: OcssdGeometry, channel_mbps: int) -> TimingParameters:
    return TimingParameters(read_ns=geometry.trdt, program_ns=geometry.twrt,
                            erase_ns=geometry.tcrst, sector_bytes=geometry.sec_size,
                            page_sectors=geometry.ws_opt, channel_mbps=channel_mbps,
                            buffer_sectors_per_pu=default_buffer_sectors(geometry.mw_cunits,
                                                                         geometry.ws_opt))


# -- targets: what completes the commands ---------------------------------------------------
Done = Callable[[int, int], None]   # done(modelled completion ns, observed completion ns)


class Target(Protocol):
    def now(self) -> int: ...
    def submit(self, op: MediaOp, done: Done) -> None: ...


class ModelTarget:
    """The model and the completion scheduler in this process, on CLOCK_MONOTONIC."""

    def __init__(self, model: FlashModel, scheduler: CompletionScheduler) -> None:
        self.model, self.scheduler = model, scheduler

    def now(self) -> int:
        return time.monotonic_ns()

    def submit(self, op: MediaOp, done: Done) -> None:
        now = time.monotonic_ns()
        due = op.due(self.model, now)
        if due <= now:  # a buffered write: completes in this batch, as the controller will
            trio.lowlevel.current_trio_token().run_sync_soon(
                lambda: done(due, time.monotonic_ns()))
        else:
            self.scheduler.schedule(due, lambda: done(due, time.monotonic_ns()))


class VirtualTarget:
    """The model on a virtual clock: a completion is seen exactly when it is due."""

    def __init__(self, model: FlashModel) -> None:
        self.model, self.queue, self.clock = model, DueQueue(), 0

    def now(self) -> int:
        return self.clock

    def submit(self, op: MediaOp, done: Done) -> None:
        due = op.due(self.model, self.clock)
        self.queue.add(due, lambda: done(due, due))

    def run(self) -> None:
        while (due := self.queue.next_due()) is not None:
            self.clock = max(self.clock, due)
            self.queue.run_due(self.clock)


# -- closed loops ---------------------------------------------------------------------------
class ClosedLoop:
    """Keeps `queue_depth` commands in flight until `until` (target time), then lets them
    drain; records latency (observed - arrival) and lateness (observed - modelled)."""

    def __init__(self, target: Target, ops: Iterator[MediaOp], queue_depth: int, until: int,
                 finished: Callable[[], None] = lambda: None, record: bool = True) -> None:
        self.target, self.ops, self.until, self.record = target, ops, until, record
        self.finished = finished
        self.latencies: list[int] = []
        self.lateness: list[int] = []
        self.outstanding = 0
        self.first_arrival = target.now()
        self.last_completion = self.first_arrival
        for _ in range(queue_depth):
            self._issue()

    def _issue(self) -> None:
        arrival = self.target.now()
        self.outstanding += 1
        self.target.submit(next(self.ops), lambda due, seen: self._done(arrival, due, seen))

    def _done(self, arrival: int, due: int, seen: int) -> None:
        self.outstanding -= 1
        if self.record:
            self.latencies.append(seen - arrival)
            self.lateness.append(seen - due)
            self.last_completion = seen
        if self.target.now() < self.until:
            self._issue()
        elif self.outstanding == 0:
            self.finished()


def background_writer(target: Target, geometry: OcssdGeometry, pus: list[int], until: int,
                      rng: random.Random, finished: Callable[[], None] = lambda: None
                      ) -> ClosedLoop:
    """Enough writes in flight on `pus` that their buffers stay full."""
    depth = len(pus) * (default_buffer_sectors(geometry.mw_cunits, geometry.ws_opt)
                        // geometry.ws_opt + 1)
    return ClosedLoop(target, Workload(geometry, pus, rng).ops("write"), depth, until,
                      finished, record=False)


@dataclass
class Figures:
    commands: int
    p50_ns: int
    p99_ns: int
    per_s: float
    lateness_p50_ns: int = 0
    lateness_p99_ns: int = 0


def percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0


def figures(loop: ClosedLoop) -> Figures:
    span = max(loop.last_completion - loop.first_arrival, 1)
    return Figures(len(loop.latencies), percentile(loop.latencies, 0.5),
                   percentile(loop.latencies, 0.99), len(loop.latencies) * 1e9 / span,
                   percentile(loop.lateness, 0.5), percentile(loop.lateness, 0.99))


def modelled(cell: Cell, geometry: OcssdGeometry, parameters: TimingParameters,
             seconds: float, seed: int) -> Figures:
    target = VirtualTarget(FlashModel(parameters, Layout(geometry.num_grp, geometry.num_pu)))
    until = int(seconds * 1e9)
    pus = scope_pus(cell.scope, geometry)
    if cell.buffer == "full":
        background_writer(target, geometry, pus, until, random.Random(-seed))
    loop = ClosedLoop(target, Workload(geometry, pus, random.Random(seed)).ops(cell.operation),
                      cell.queue_depth, until)
    target.run()
    return figures(loop)


async def measured(cell: Cell, geometry: OcssdGeometry, parameters: TimingParameters,
                   seconds: float, seed: int, lead_ns: int = 0) -> Figures:
    scheduler = CompletionScheduler(lead_ns=lead_ns)
    target = ModelTarget(FlashModel(parameters, Layout(geometry.num_grp, geometry.num_pu)),
                         scheduler)
    pus = scope_pus(cell.scope, geometry)
    drained = [trio.Event(), trio.Event()]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run)
            until = target.now() + int(seconds * 1e9)
            if cell.buffer == "full":
                background_writer(target, geometry, pus, until, random.Random(-seed),
                                  drained[1].set)
            else:
                drained[1].set()
            # its own random stream: the same commands as the modelled run, whatever the
            # background writer does in between
            workload = Workload(geometry, pus, random.Random(seed))
            loop = ClosedLoop(target, workload.ops(cell.operation),
                              cell.queue_depth, until, drained[0].set)
            for event in drained:
                await event.wait()
            nursery.cancel_scope.cancel()
    finally:
        scheduler.close()
    return figures(loop)


# -- the matrix -----------------------------------------------------------------------------
def error(measured_value: float, modelled_value: float) -> float | None:
    return measured_value / modelled_value - 1 if modelled_value else None


def run_matrix(geometry: OcssdGeometry, parameters: TimingParameters, seconds: float,
               cells: list[Cell], lead_ns: int = 0, seed: int = 1) -> list[dict[str, object]]:
    rows = []
    for cell in cells:
        model = modelled(cell, geometry, parameters, seconds, seed)
        real = trio.run(measured, cell, geometry, parameters, seconds, seed, lead_ns)
        rows.append(dict(cell=cell.name, **{f"modelled_{k}": v for k, v in asdict(model).items()
                                            if not k.startswith("lateness")},
                         **{f"measured_{k}": v for k, v in asdict(real).items()}))
        print(format_row(rows[-1]), flush=True)
    return rows


def format_error(measured_value: float, modelled_value: float, floor: float = 0) -> str:
    value = error(measured_value, modelled_value)
    if value is None or modelled_value < floor:
        return "—"
    return f"{value:+.1%}"


HEADER = (f"{'cell':<30}{'n':>7} {'p50 model/meas µs':>19}{'err':>8} "
          f"{'p99 model/meas µs':>19}{'err':>8} {'cmd/s model/meas':>18}{'err':>8}"
          f" {'late p50/p99 µs':>16}")


def format_row(row: dict[str, object]) -> str:
    def us(key: str) -> float:
        return float(row[key]) / 1000  # type: ignore[arg-type]

    def value(key: str) -> float:
        return float(row[key])  # type: ignore[arg-type]

    floor = ERROR_FLOOR_NS / 1000
    return (f"{row['cell']!s:<30}{row['measured_commands']!s:>7} "
            f"{us('modelled_p50_ns'):>9.0f}/{us('measured_p50_ns'):<9.0f}"
            f"{format_error(us('measured_p50_ns'), us('modelled_p50_ns'), floor):>8} "
            f"{us('modelled_p99_ns'):>9.0f}/{us('measured_p99_ns'):<9.0f}"
            f"{format_error(us('measured_p99_ns'), us('modelled_p99_ns'), floor):>8} "
            f"{value('modelled_per_s'):>8.0f}/{value('measured_per_s'):<9.0f}"
            f"{format_error(value('measured_per_s'), value('modelled_per_s')):>8}"
            f" {us('measured_lateness_p50_ns'):>7.0f}/{us('measured_lateness_p99_ns'):<8.0f}")


def all_cells() -> list[Cell]:
    return [Cell(*values) for values in itertools.product(OPERATIONS, QUEUE_DEPTHS, SCOPES,
                                                           BUFFERS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.timingbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="per cell and run")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--pus", type=int, default=4, help="PUs per group")
    parser.add_argument("--trdt", type=int, default=OcssdGeometry.trdt, help="ns")
    parser.add_argument("--twrt", type=int, default=OcssdGeometry.twrt, help="ns")
    parser.add_argument("--tcrst", type=int, default=OcssdGeometry.tcrst, help="ns")
    parser.add_argument("--channel-mbps", type=int, default=DEFAULT_CHANNEL_MBPS)
    parser.add_argument("--lead-us", type=int, default=0,
                        help="wake the scheduler this early and spin (CompletionScheduler)")
    parser.add_argument("--only", default="", help="run the cells whose name contains this")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where timing.json goes")
    args = parser.parse_args(argv)
    geometry = OcssdGeometry(num_grp=args.groups, num_pu=args.pus, trdt=args.trdt,
                             twrt=args.twrt, tcrst=args.tcrst)
    parameters = parameters_of(geometry, args.channel_mbps)
    cells = [cell for cell in all_cells() if args.only in cell.name]
    print(f"Timing model vs completions on the real clock: {geometry.num_grp} groups x "
          f"{geometry.num_pu} PUs, tRD {geometry.trdt} ns, tPROG {geometry.twrt} ns per "
          f"{geometry.ws_opt} sectors, tBERS {geometry.tcrst} ns, {args.channel_mbps} MB/s "
          f"channels, {parameters.buffer_sectors_per_pu} buffer sectors per PU; "
          f"{args.seconds:g} s per run, scheduler lead {args.lead_us} µs")
    print(HEADER)
    rows = run_matrix(geometry, parameters, args.seconds, cells, args.lead_us * 1000)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timing.json").write_text(json.dumps(
        dict(parameters=asdict(parameters), seconds=args.seconds, lead_us=args.lead_us,
             cells=rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
