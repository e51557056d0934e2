"""`make timingbench`: how closely completions follow the flash timing model.

Each cell of the matrix runs one workload twice:
- modelled: the model alone on a virtual clock, with a host that resubmits the instant a
  command completes (what a perfect device and host would show);
- measured: the same workload on the real clock through the real controller, assembled
  as `serve --timing` assembles it and driven through libvfio-user's callbacks as
  `make hostbench` drives it (`ControllerTarget`); every held completion is posted by the
  server's completion scheduler (timerfd + trio) and resubmitted when the host reaps it.
  `--model-only` measures the model + scheduler alone in this process (`ModelTarget`).
It prints latency p50/p99 and throughput of both and the relative error
(measured / modelled - 1). Errors are left out where the modelled latency is under
50 µs (a buffered write completes at once; the targets are for operations of 50 µs and
longer).

Matrix: read (one sector), write (one ws_opt unit), reset (one chunk) x QD1, QD32 x one
PU, the PUs of one group, every PU x idle, or with a background writer that keeps the
write buffers of those PUs full.

Geometry: GROUPS x PUS x 16 chunks x 1024 sectors (a sparse image in a temporary
directory), MCCAP multiple resets on (resets go to free chunks).
"""

from __future__ import annotations

import argparse
import itertools
import json
import mmap
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import trio

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.devices import OCSSD_ID
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd20 import AddressFormat, OcssdGeometry
from ocssd_vfu.media.ocssd_image import create_image
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.spec.nvme import CQE_FORMAT, CQE_SIZE, SQE_FORMAT, SQE_SIZE, AdminOpcode, Register
from ocssd_vfu.spec.ocssd import Mccap
from ocssd_vfu.timing.geometries import parameters_20
from ocssd_vfu.timing.model import FlashModel, FlashPage
from ocssd_vfu.timing.parameters import (
    DEFAULT_CHANNEL_MBPS,
    Layout,
    TimingParameters,
    default_buffer_sectors,
)
from ocssd_vfu.timing.scheduler import CompletionScheduler, DueQueue
from ocssd_vfu.vfu import host
from ocssd_vfu.vfu.binding import ffi, lib
from ocssd_vfu.vfu.device import VfuDevice

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

    def __init__(self, geometry: OcssdGeometry, pus: list[int], rng: random.Random,
                 cursor: dict[int, int] | None = None) -> None:
        self.geometry, self.pus, self.rng = geometry, pus, rng
        self.units_per_chunk = geometry.num_sec // geometry.ws_opt
        # next unit to write per PU, counted over all chunks: one dict for every workload of
        # a cell, so the background writer and the measured writes fill distinct units
        self.cursor = dict.fromkeys(pus, 0) if cursor is None else cursor

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
    """What `serve --timing` models for `geometry` (its default write buffer)."""
    return parameters_20(geometry, channel_mbps)


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


# Guest RAM of the controller target: admin rings, I/O rings, LBA lists (one per SQ slot),
# then the data pages every command shares (their contents do not matter here).
RAM_IOVA = 0x1_0000_0000
RAM_SIZE = 16 << 20
ADMIN_SQ, ADMIN_CQ, IO_SQ, IO_CQ = (RAM_IOVA + i * 0x10000 for i in range(4))
LISTS = RAM_IOVA + 0x100000
PRP_LIST = RAM_IOVA + 0x200000
DATA = RAM_IOVA + 0x201000
ADMIN_ENTRIES = 16
IO_ENTRIES = 1024
VECTOR_RESET, VECTOR_WRITE, VECTOR_READ = 0x90, 0x91, 0x92


class ControllerTarget:
    """The real controller, as `serve --timing` assembles it (an OCSSD 2.0 image in a
    temporary directory), driven as `make hostbench` drives a plain one: guest RAM handed
    over and registers and doorbells written through libvfio-user's callbacks, one
    `controller.process()` per submission, and the server's CompletionScheduler (timerfd)
    posting held completions. A command's modelled time is the one the controller traces
    (trace_times); it is seen when this host reaps its CQE.

    Writes go to each PU's next ws_opt unit in the lower half of its chunks (the MediaOp's
    page is only a stand-in: the times are the same), resets to the upper half's chunks in
    turn (free chunks: the geometry allows multiple resets), reads where the op says."""

    def __init__(self, geometry: OcssdGeometry, channel_mbps: int, lead_ns: int,
                 workdir: Path) -> None:
        image, sock = workdir / "timing.img", workdir / "timing.sock"
        create_image(image, geometry)
        self.assembled = assemble(ServeOptions(socket=sock, image=image, timing=True,
                                               channel_mbps=channel_mbps))
        self.geometry, self.address = geometry, AddressFormat(geometry)
        self.controller = Controller(GuestMemory(), self.assembled.namespaces,
                                     lambda vector: None, self.assembled.config)
        self.device = VfuDevice(str(sock), self.controller, OCSSD_ID)
        self.controller.interrupt = lambda vector: None  # no client: nothing to signal
        self.ram = mmap.mmap(-1, RAM_SIZE)
        self.ram_export = host.map_guest_ram(self.device, self.ram, RAM_IOVA)
        self.word = ffi.new("uint32_t *")
        self.scheduler = CompletionScheduler(lead_ns=lead_ns, queue=self.controller.held)
        self.controller.tracer = self._traced
        self.times: dict[int, int] = {}      # cid -> modelled completion
        self.waiting: dict[int, Done] = {}   # cid -> its done()
        self.failures = 0
        self.tail = self.head = 0
        self.phase = 1
        self.reap_scheduled = False
        units = geometry.num_sec // geometry.ws_opt
        self.write_units = (geometry.num_chk // 2) * units
        self.next_unit = [0] * (geometry.num_grp * geometry.num_pu)
        self.next_reset = [0] * (geometry.num_grp * geometry.num_pu)
        self._enable()
        self._prepare_data()

    def close(self) -> None:
        ffi.release(self.ram_export)
        self.device.destroy()
        self.assembled.close()
        self.scheduler.close()

    def now(self) -> int:
        return time.monotonic_ns()

    # -- set-up -----------------------------------------------------------------------------
    def _enable(self) -> None:
        write = self._register
        write(Register.AQA, 4, (ADMIN_ENTRIES - 1) * 0x10001)
        write(Register.ASQ, 8, ADMIN_SQ)
        write(Register.ACQ, 8, ADMIN_CQ)
        write(Register.CC, 4, 1 | 6 << 16 | 4 << 20)
        self._admin(0, AdminOpcode.CREATE_IO_CQ, 1 | (IO_ENTRIES - 1) << 16, 1, IO_CQ)
        self._admin(1, AdminOpcode.CREATE_IO_SQ, 1 | (IO_ENTRIES - 1) << 16, 1 | 1 << 16,
                    IO_SQ)

    def _register(self, register: int, width: int, value: int) -> None:
        host.bar0_write(self.device, register, width, value)

    def _doorbell(self, register: int, value: int) -> None:
        """A 4-byte doorbell write as libvfio-user hands it over (one buffer, reused)."""
        self.word[0] = value
        lib.ocssd_bar0_access(self.device.ctx, ffi.cast("char *", self.word), 4, register, True)

    def _admin(self, slot: int, opcode: int, cdw10: int, cdw11: int, prp1: int) -> None:
        SQE_FORMAT.pack_into(self.ram, ADMIN_SQ - RAM_IOVA + slot * SQE_SIZE, opcode, 0, slot,
                             0, 0, 0, 0, prp1, 0, cdw10, cdw11, 0, 0, 0, 0)
        self._register(Register.DOORBELLS, 4, slot + 1)
        self.controller.process()
        status = CQE_FORMAT.unpack_from(self.ram, ADMIN_CQ - RAM_IOVA + slot * CQE_SIZE)[5] >> 1
        if status:
            raise RuntimeError(f"admin opcode {opcode:#x} failed with status {status:#x}")

    def _prepare_data(self) -> None:
        pages = [DATA + 0x1000 * i for i in range(1, self.geometry.ws_opt)]
        at = PRP_LIST - RAM_IOVA
        self.ram[at:at + 8 * len(pages)] = b"".join(p.to_bytes(8, "little") for p in pages)

    # -- commands ---------------------------------------------------------------------------
    def submit(self, op: MediaOp, done: Done) -> None:
        g = self.geometry
        grp, pu = divmod(op.pu, g.num_pu)
        if op.kind == "read":
            page, _ = op.pages[0]
            lbas = [self.address.pack(grp, pu, page.block % g.num_chk, page.page * g.ws_opt)]
            opcode = VECTOR_READ
        elif op.kind == "write":
            unit = self.next_unit[op.pu] % self.write_units
            self.next_unit[op.pu] += 1
            chunk, first = divmod(unit * g.ws_opt, g.num_sec)
            lbas = [self.address.pack(grp, pu, chunk, first + i) for i in range(g.ws_opt)]
            opcode = VECTOR_WRITE
        else:
            half = g.num_chk // 2
            chunk = half + self.next_reset[op.pu] % (g.num_chk - half)
            self.next_reset[op.pu] += 1
            lbas = [self.address.pack(grp, pu, chunk)]
            opcode = VECTOR_RESET
        slot = self.tail
        if len(lbas) == 1:
            pointer = lbas[0]
        else:
            pointer = LISTS + slot * 0x200
            at = pointer - RAM_IOVA
            self.ram[at:at + 8 * len(lbas)] = b"".join(a.to_bytes(8, "little") for a in lbas)
        SQE_FORMAT.pack_into(self.ram, IO_SQ - RAM_IOVA + slot * SQE_SIZE, opcode, 0, slot, 1,
                             0, 0, 0, DATA, PRP_LIST if len(lbas) > 2 else DATA + 0x1000,
                             pointer & 0xFFFFFFFF, pointer >> 32, len(lbas) - 1, 0, 0, 0)
        self.waiting[slot] = done
        self.tail = (slot + 1) % IO_ENTRIES
        self._doorbell(Register.DOORBELLS + 8, self.tail)
        self.controller.process()
        self.scheduler.rearm()
        if not self.reap_scheduled:  # completed at once (a buffered write): reap soon
            self.reap_scheduled = True
            trio.lowlevel.current_trio_token().run_sync_soon(self.reap)

    def _traced(self, qid: int, cmd: Command, status: int, result: int) -> None:
        if qid:
            self.times[cmd.cid] = self.controller.trace_times[1]
            self.failures += status != 0

    def after_held(self) -> None:
        self.controller.finish_held_batch()
        self.reap()

    def reap(self) -> None:
        self.reap_scheduled = False
        reaped = 0
        while True:
            entry = CQE_FORMAT.unpack_from(self.ram, IO_CQ - RAM_IOVA + self.head * CQE_SIZE)
            if entry[5] & 1 != self.phase:
                break
            self.head += 1
            if self.head == IO_ENTRIES:
                self.head, self.phase = 0, self.phase ^ 1
            reaped += 1
            cid = entry[4]
            self.waiting.pop(cid)(self.times.pop(cid), time.monotonic_ns())
        if reaped:
            self._doorbell(Register.DOORBELLS + 12, self.head)


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
                      rng: random.Random, finished: Callable[[], None] = lambda: None,
                      cursor: dict[int, int] | None = None) -> ClosedLoop:
    """Enough writes in flight on `pus` that their buffers stay full."""
    depth = len(pus) * (default_buffer_sectors(geometry.mw_cunits, geometry.ws_opt)
                        // geometry.ws_opt + 1)
    return ClosedLoop(target, Workload(geometry, pus, rng, cursor).ops("write"), depth, until,
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
    cursor = dict.fromkeys(pus, 0)
    if cell.buffer == "full":
        background_writer(target, geometry, pus, until, random.Random(-seed), cursor=cursor)
    loop = ClosedLoop(target, Workload(geometry, pus, random.Random(seed),
                                       cursor).ops(cell.operation),
                      cell.queue_depth, until)
    target.run()
    return figures(loop)


async def measured(cell: Cell, geometry: OcssdGeometry, parameters: TimingParameters,
                   seconds: float, seed: int, lead_ns: int = 0,
                   controller: ControllerTarget | None = None) -> Figures:
    """On the real clock: through `controller` if given, else the model and a scheduler in
    this process (ModelTarget)."""
    target: ControllerTarget | ModelTarget
    if controller is not None:
        target, scheduler = controller, controller.scheduler
        after_batch = controller.after_held
    else:
        scheduler = CompletionScheduler(lead_ns=lead_ns)
        target = ModelTarget(FlashModel(parameters, Layout(geometry.num_grp, geometry.num_pu)),
                             scheduler)
        after_batch = lambda: None  # noqa: E731
    pus = scope_pus(cell.scope, geometry)
    cursor = dict.fromkeys(pus, 0)
    drained = [trio.Event(), trio.Event()]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run, after_batch)
            until = target.now() + int(seconds * 1e9)
            if cell.buffer == "full":
                background_writer(target, geometry, pus, until, random.Random(-seed),
                                  drained[1].set, cursor)
            else:
                drained[1].set()
            # its own random stream: the same commands as the modelled run, whatever the
            # background writer does in between
            workload = Workload(geometry, pus, random.Random(seed), cursor)
            loop = ClosedLoop(target, workload.ops(cell.operation),
                              cell.queue_depth, until, drained[0].set)
            for event in drained:
                await event.wait()
            nursery.cancel_scope.cancel()
    finally:
        if controller is None:
            scheduler.close()
    return figures(loop)


# -- the matrix -----------------------------------------------------------------------------
def error(measured_value: float, modelled_value: float) -> float | None:
    return measured_value / modelled_value - 1 if modelled_value else None


def run_matrix(geometry: OcssdGeometry, parameters: TimingParameters, seconds: float,
               cells: list[Cell], lead_ns: int = 0, seed: int = 1,
               through_controller: bool = True) -> list[dict[str, object]]:
    rows = []
    for cell in cells:
        model = modelled(cell, geometry, parameters, seconds, seed)
        if through_controller:
            with tempfile.TemporaryDirectory(prefix="ocssd-vfu-timingbench-") as tmp:
                target = ControllerTarget(geometry, parameters.channel_mbps, lead_ns, Path(tmp))
                try:
                    real = trio.run(measured, cell, geometry, parameters, seconds, seed,
                                    lead_ns, target)
                finally:
                    target.close()
                if target.failures:
                    raise RuntimeError(f"{cell.name}: {target.failures} commands failed")
        else:
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
    parser.add_argument("--model-only", action="store_true",
                        help="measure the model + scheduler alone, not the controller")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where timing.json goes")
    args = parser.parse_args(argv)
    geometry = OcssdGeometry(num_grp=args.groups, num_pu=args.pus, num_chk=16, num_sec=1024,
                             mccap=Mccap.MULTIPLE_RESETS, trdt=args.trdt,
                             twrt=args.twrt, tcrst=args.tcrst)
    parameters = parameters_of(geometry, args.channel_mbps)
    cells = [cell for cell in all_cells() if args.only in cell.name]
    target = "the model + scheduler alone" if args.model_only else "the controller"
    print(f"Timing model vs completions on the real clock through {target}: "
          f"{geometry.num_grp} groups x "
          f"{geometry.num_pu} PUs, tRD {geometry.trdt} ns, tPROG {geometry.twrt} ns per "
          f"{geometry.ws_opt} sectors, tBERS {geometry.tcrst} ns, {args.channel_mbps} MB/s "
          f"channels, {parameters.buffer_sectors_per_pu} buffer sectors per PU; "
          f"{args.seconds:g} s per run, scheduler lead {args.lead_us} µs")
    print(HEADER)
    rows = run_matrix(geometry, parameters, args.seconds, cells, args.lead_us * 1000,
                      through_controller=not args.model_only)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timing.json").write_text(json.dumps(
        dict(parameters=asdict(parameters), seconds=args.seconds, lead_us=args.lead_us,
             target="model" if args.model_only else "controller",
             cells=rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
