"""`make hostbench`: the server's command path measured without QEMU or a guest.

A plain namespace is assembled as `serve` assembles it (a raw image, mmap'd),
with a real libvfio-user context on a private socket. Guest RAM is an anonymous
shared mapping handed to the device through the DMA-register callback, and the
host side (this module) rings doorbells through the BAR0 callback, the same C
entry point libvfio-user calls (an I/O doorbell is taken whole in C when the
fast path serves its commands: nvme/native_doorbells.py); after each batch of
doorbells it calls `controller.process()` when the server's loop would. Each
interrupt is an eventfd write, as vfu_irq_trigger's to a client (no client here).
--python-doorbells leaves every doorbell to Python (the fast path then runs from
`process()`), for comparison.

Per queue depth, 4 KiB random reads and then writes: commands per second of
server time (doorbell callbacks + processing, the host's own Python work not
counted) and of wall time (the host's work included). Beside them, the copy
limit of one core in the same run: the C shim copying random 4 KiB blocks
between guest RAM and the image, 128 per call so the call's cost vanishes.
Then the same on an OCSSD 2.0 image: 64-LBA (256 KiB) vector writes at the
chunks' WPs and reads of what they wrote (against the copy limit), and 1-LBA
vector reads (server time per command against a plain 4K read's).

--breakdown N times each part of a QD1 command instead (median of N per part),
with the C doorbell path and with doorbells in Python.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from ocssd_vfu.app import Assembled, ServeOptions, assemble
from ocssd_vfu.devices import OCSSD_ID, PLAIN_NVME_ID
from ocssd_vfu.dma import native as dma
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd20 import AddressFormat, OcssdGeometry
from ocssd_vfu.media.ocssd_image import NamespaceLayout, create_image
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.ocssd import fastpath as ocssd_fastpath
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.plain import fastpath as plain_fastpath
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import (
    CQE_FORMAT,
    CQE_SIZE,
    SQE_FORMAT,
    SQE_SIZE,
    AdminOpcode,
    IoOpcode,
    Register,
)
from ocssd_vfu.spec.pci import PciIdentity
from ocssd_vfu.vfu import host
from ocssd_vfu.vfu.binding import ffi, lib
from ocssd_vfu.vfu.device import VfuDevice

BLOCK = 4096
RAM_IOVA = 0x1_0000_0000
RAM_SIZE = 64 << 20
IMAGE_SIZE = 1 << 30
# Guest RAM layout: admin rings, I/O rings, then one data page per queue slot.
ADMIN_SQ, ADMIN_CQ, IO_SQ, IO_CQ = (RAM_IOVA + i * 0x10000 for i in range(4))
DATA = RAM_IOVA + 0x100000
ADMIN_ENTRIES = 16
QUEUE_DEPTHS = (1, 32, 128)
COPY_BLOCKS_PER_CALL = 128
# The modules whose `lib` holds a kind's C fast path (--breakdown times its entry points).
FAST_PATH_MODULES = [plain_fastpath, ocssd_fastpath]


@dataclass
class Figure:
    workload: str
    queue_depth: int
    commands: int
    server_commands_per_s: float
    wall_commands_per_s: float


@cache
def interrupt_line() -> int:
    """The eventfd every bench device interrupts through (never read: a counter)."""
    return os.eventfd(0, os.EFD_NONBLOCK)


def bench_device(sock: Path, assembled: Assembled, identity: PciIdentity,
                 c_doorbells: bool) -> tuple[Controller, VfuDevice]:
    """A controller and its device as `serve` builds them, interrupting through
    `interrupt_line()`; `c_doorbells` False leaves every doorbell to Python."""
    config = replace(assembled.config, native_doorbells=c_doorbells)
    controller = Controller(GuestMemory(), assembled.namespaces, lambda vector: None, config)
    device = VfuDevice(str(sock), controller, identity)
    device.interrupt_to(interrupt_line())
    return controller, device


class HostDriver:
    """The host's side of one controller: rings in `ram`, doorbells through BAR0."""

    def __init__(self, device: VfuDevice, ram: mmap.mmap) -> None:
        self.device, self.ctrl, self.ram = device, device.controller, ram
        self.word = ffi.new("uint32_t *")
        self.cid = 0
        self.server_time = 0.0

    def offset(self, iova: int) -> int:
        return iova - RAM_IOVA

    def mmio_write(self, register: int, width: int, value: int) -> None:
        host.bar0_write(self.device, register, width, value)

    def doorbell(self, register: int, value: int) -> None:
        """A 4-byte doorbell write as libvfio-user hands it over, timed as server time."""
        self.word[0] = value
        started = time.perf_counter()
        lib.ocssd_bar0_access(self.device.ctx, ffi.cast("char *", self.word), 4, register, True)
        self.server_time += time.perf_counter() - started

    def process(self) -> None:
        """What the server's loop does after a wake-up (process() unless C took it all)."""
        started = time.perf_counter()
        self.ctrl.after_wake_up()
        self.server_time += time.perf_counter() - started

    def enable(self) -> None:
        self.mmio_write(Register.AQA, 4, (ADMIN_ENTRIES - 1) * 0x10001)
        self.mmio_write(Register.ASQ, 8, ADMIN_SQ)
        self.mmio_write(Register.ACQ, 8, ADMIN_CQ)
        self.mmio_write(Register.CC, 4, 1 | 6 << 16 | 4 << 20)
        if not self.ctrl.enabled:
            raise RuntimeError("the controller did not become ready")
        self.admin_tail = 0

    def admin(self, opcode: int, cdw10: int, cdw11: int, prp1: int) -> None:
        """One admin command, synchronously; RuntimeError unless it succeeds."""
        slot = self.admin_tail
        SQE_FORMAT.pack_into(self.ram, self.offset(ADMIN_SQ) + slot * SQE_SIZE, opcode, 0,
                             slot, 0, 0, 0, 0, prp1, 0, cdw10, cdw11, 0, 0, 0, 0)
        self.admin_tail = (slot + 1) % ADMIN_ENTRIES
        self.mmio_write(Register.DOORBELLS, 4, self.admin_tail)
        self.ctrl.process()
        status = CQE_FORMAT.unpack_from(self.ram, self.offset(ADMIN_CQ) + slot * CQE_SIZE)[5] >> 1
        self.mmio_write(Register.DOORBELLS + 4, 4, self.admin_tail)
        if status:
            raise RuntimeError(f"admin opcode {opcode:#x} failed with status {status:#x}")

    def run(self, workload: str, queue_depth: int, nlbas: int, seconds: float,
            rng: random.Random) -> Figure:
        """Random 4 KiB commands kept `queue_depth` deep on I/O queue pair 1 for `seconds`."""
        opcode = IoOpcode.READ if workload == "randread" else IoOpcode.WRITE
        lbas = [rng.randrange(nlbas) for _ in range(8192)]
        sq = self.offset(IO_SQ)

        def submit(slot: int, n: int) -> None:
            SQE_FORMAT.pack_into(self.ram, sq + slot * SQE_SIZE, opcode, 0, slot, 1, 0, 0, 0,
                                 DATA + (slot % queue_depth) * BLOCK, 0, lbas[n & 8191], 0, 0,
                                 0, 0, 0)
        return self.keep_deep(workload, queue_depth, seconds, submit)

    def keep_deep(self, workload: str, queue_depth: int, seconds: float,
                  submit: Callable[[int, int], None], limit: int = 1 << 62) -> Figure:
        """Commands kept `queue_depth` deep on I/O queue pair 1 for `seconds` (or until
        `limit` were submitted): `submit(slot, n)` writes the n-th one's SQE in `slot`."""
        entries = max(2 * queue_depth, 16)
        cq = self.offset(IO_CQ)
        self.ram[cq:cq + entries * CQE_SIZE] = bytes(entries * CQE_SIZE)  # no stale phase tags
        self.admin(AdminOpcode.CREATE_IO_CQ, 1 | (entries - 1) << 16, 1 | 1 << 1 | 1 << 16,
                   IO_CQ)
        self.admin(AdminOpcode.CREATE_IO_SQ, 1 | (entries - 1) << 16, 1 | 1 << 16, IO_SQ)
        sq_doorbell, cq_doorbell = Register.DOORBELLS + 8, Register.DOORBELLS + 12
        unpack = CQE_FORMAT.unpack_from
        tail = head = 0
        phase = 1
        outstanding = submitted = completed = errors = 0
        self.server_time = 0.0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            more = min(queue_depth - outstanding, limit - submitted) \
                if time.perf_counter() < deadline else 0
            for _ in range(more):
                submit(tail, submitted)
                tail = (tail + 1) % entries
                submitted += 1
            outstanding += more
            if more:
                self.doorbell(sq_doorbell, tail)
            if outstanding == 0:
                break
            self.process()
            reaped = 0
            while True:
                entry = unpack(self.ram, cq + head * CQE_SIZE)
                if entry[5] & 1 != phase:
                    break
                errors += entry[5] >> 1 != 0
                reaped += 1
                head += 1
                if head == entries:
                    head, phase = 0, phase ^ 1
            if reaped:
                outstanding -= reaped
                completed += reaped
                self.doorbell(cq_doorbell, head)
            elif more == 0:
                raise RuntimeError(f"{outstanding} commands never completed")
        wall = time.perf_counter() - started
        self.admin(AdminOpcode.DELETE_IO_SQ, 1, 0, 0)
        self.admin(AdminOpcode.DELETE_IO_CQ, 1, 0, 0)
        if errors:
            raise RuntimeError(f"{errors} of {completed} {workload} commands failed")
        return Figure(workload, queue_depth, completed, completed / self.server_time,
                      completed / wall)


# -- OCSSD 2.0 vector commands (the kind's C fast path) ----------------------------------
VECTOR_GEOMETRY = OcssdGeometry(num_grp=1, num_pu=8, num_chk=8, num_sec=4096)  # 1 GiB
VECTOR_LBAS = 64  # 256 KiB per command
LBA_LISTS, PRP_LISTS = RAM_IOVA + 0x40000, RAM_IOVA + 0x50000  # 512 bytes per slot


class VectorWorkload:
    """64-LBA vector writes filling chunks in order at their WP, then 64-LBA and
    1-LBA vector reads of the chunks filled (CLOSED: every sector reads as data)."""

    def __init__(self, ram: mmap.mmap, rng: random.Random) -> None:
        self.ram, self.rng = ram, rng
        self.address = AddressFormat(VECTOR_GEOMETRY)
        self.commands_per_chunk = VECTOR_GEOMETRY.num_sec // VECTOR_LBAS
        self.capacity = VECTOR_GEOMETRY.sectors // VECTOR_LBAS
        self.written = 0  # 64-LBA writes done so far
        for slot in range(max(QUEUE_DEPTHS)):
            pages = [self.buffer(slot) + i * BLOCK for i in range(1, VECTOR_LBAS)]
            struct.pack_into(f"<{len(pages)}Q", ram, PRP_LISTS - RAM_IOVA + slot * 512, *pages)

    @staticmethod
    def buffer(slot: int) -> int:
        return DATA + slot * VECTOR_LBAS * BLOCK

    def lbas(self, command: int) -> list[int]:
        """The LBAs of the `command`-th 64-LBA write (chunk by chunk, at the WP)."""
        chunk, part = divmod(command, self.commands_per_chunk)
        pu, chk = divmod(chunk, VECTOR_GEOMETRY.num_chk)
        first = self.address.pack(0, pu, chk, part * VECTOR_LBAS)
        return list(range(first, first + VECTOR_LBAS))

    def submitter(self, opcode: int, queue_depth: int, sectors: int) -> Callable[[int, int],
                                                                                None]:
        sq, ram = IO_SQ - RAM_IOVA, self.ram
        full_chunks = self.written // self.commands_per_chunk * self.commands_per_chunk
        rng = self.rng

        def submit(slot: int, n: int) -> None:
            buffer = slot % queue_depth
            if opcode == IoOpcode.VECTOR_CHUNK_WRITE:
                lbas = self.lbas(self.written)
                self.written += 1
            else:
                lbas = self.lbas(rng.randrange(full_chunks))[:sectors]
                if sectors == 1:
                    lbas = [lbas[0] + rng.randrange(VECTOR_LBAS)]
            where = lbas[0]
            if sectors > 1:
                where = LBA_LISTS + buffer * 512
                struct.pack_into(f"<{sectors}Q", ram, where - RAM_IOVA, *lbas)
            SQE_FORMAT.pack_into(ram, sq + slot * SQE_SIZE, opcode, 0, slot, 1, 0, 0, 0,
                                 self.buffer(buffer), PRP_LISTS + buffer * 512,
                                 where & 0xFFFFFFFF, where >> 32, sectors - 1, 0, 0, 0)
        return submit


def vector_figures(tmp: Path, seconds: float, queue_depths: tuple[int, ...],
                   rng: random.Random, c_doorbells: bool = True) -> list[Figure]:
    """The vector jobs on an OCSSD 2.0 image, its data and OOB areas written (no holes:
    no page faults on them, as for the plain image)."""
    path, sock = tmp / "ocssd.img", tmp / "ocssd.sock"
    create_image(path, VECTOR_GEOMETRY)
    layout = NamespaceLayout(0, VECTOR_GEOMETRY)
    with path.open("r+b") as f:
        f.seek(layout.data_offset)
        chunk = rng.randbytes(1 << 20)
        for _ in range(VECTOR_GEOMETRY.sectors * (VECTOR_GEOMETRY.sec_size
                                                  + VECTOR_GEOMETRY.md_size) >> 20):
            f.write(chunk)
    assembled = assemble(ServeOptions(socket=sock, image=path, mode="ocssd"))
    ram = mmap.mmap(-1, RAM_SIZE)
    controller, device = bench_device(sock, assembled, OCSSD_ID, c_doorbells)
    figures = []
    try:
        ram_export = map_guest_ram(device, ram)
        driver = HostDriver(device, ram)
        driver.enable()
        workload = VectorWorkload(ram, rng)
        share = workload.capacity // len(queue_depths)  # each depth writes its share at most
        for depth in queue_depths:
            figures.append(driver.keep_deep(
                "vector write 64 LBAs", depth, seconds,
                workload.submitter(IoOpcode.VECTOR_CHUNK_WRITE, depth, VECTOR_LBAS), share))
        for name, sectors in (("vector read 64 LBAs", VECTOR_LBAS), ("vector read 1 LBA", 1)):
            figures += [driver.keep_deep(name, depth, seconds, workload.submitter(
                IoOpcode.VECTOR_CHUNK_READ, depth, sectors)) for depth in queue_depths]
        ffi.release(ram_export)
    finally:
        device.destroy()
        assembled.close()
    return figures


def map_guest_ram(device: VfuDevice, ram: mmap.mmap) -> Any:
    """Hand `ram` to the device at RAM_IOVA (vfu/host.py); keep the returned export."""
    return host.map_guest_ram(device, ram, RAM_IOVA)


def copy_limit(memory: GuestMemory, image: memoryview, seconds: float,
               rng: random.Random) -> float:
    """Random 4 KiB blocks per second one core copies through the C shim: image -> RAM
    through a PRP list, COPY_BLOCKS_PER_CALL blocks per call."""
    pages = RAM_SIZE // BLOCK - 512  # clear of the rings and the PRP list pages
    blocks = len(image) // BLOCK
    list_iova = RAM_IOVA + 0x80000
    ram = memory.view(RAM_IOVA, RAM_SIZE, write=True)
    segments = dma.ffi.new("struct ocssd_dma_segment[]", COPY_BLOCKS_PER_CALL)
    exports = []
    for i in range(COPY_BLOCKS_PER_CALL):
        block = image[rng.randrange(blocks) * BLOCK:][:BLOCK]
        export = dma.ffi.from_buffer("char[]", block, True)
        exports.append(export)
        segments[i] = (export, BLOCK)
    scratch = dma.ffi.new("struct ocssd_dma_range[]",
                          dma.lib.ocssd_prp_max_ranges(COPY_BLOCKS_PER_CALL * BLOCK, BLOCK))
    table = memory.dma_table
    lists = []
    for _ in range(64):  # PRP lists of random pages, used in turn
        entries = [DATA + rng.randrange(pages) * BLOCK for _ in range(COPY_BLOCKS_PER_CALL)]
        lists.append((entries[0], entries[1:]))
    copied = calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        first, rest = lists[calls & 63]
        struct.pack_into(f"<{len(rest)}Q", ram, list_iova - RAM_IOVA, *rest)
        status = dma.lib.ocssd_prp_transfer(table, len(table), first, list_iova, BLOCK,
                                            segments, COPY_BLOCKS_PER_CALL, True, scratch,
                                            len(scratch))
        if status:
            raise RuntimeError(f"ocssd_prp_transfer failed: {status}")
        copied += COPY_BLOCKS_PER_CALL
        calls += 1
    elapsed = time.perf_counter() - started
    for export in exports:
        dma.ffi.release(export)
    return copied / elapsed


def measure(seconds: float, queue_depths: tuple[int, ...], image_size: int = IMAGE_SIZE,
            seed: int = 1, c_doorbells: bool = True) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-hostbench-") as tmp:
        image_path = Path(tmp) / "plain.raw"
        with image_path.open("wb") as f:  # written, not sparse: no page faults on holes
            chunk = rng.randbytes(1 << 20)
            for _ in range(image_size >> 20):
                f.write(chunk)
        assembled = assemble(ServeOptions(socket=Path(tmp) / "sock", image=image_path,
                                          mode="nvme"))
        ram = mmap.mmap(-1, RAM_SIZE)
        controller, device = bench_device(Path(tmp) / "sock", assembled, PLAIN_NVME_ID,
                                          c_doorbells)
        try:
            ram_export = map_guest_ram(device, ram)
            driver = HostDriver(device, ram)
            driver.enable()
            namespace = assembled.namespaces[1]
            assert isinstance(namespace, PlainNamespace)  # mode="nvme"
            figures = [driver.run(workload, depth, namespace.nlbas, seconds, rng)
                       for workload in ("randread", "randwrite") for depth in queue_depths]
            limit = copy_limit(controller.memory, namespace.storage, seconds, rng)
            ffi.release(ram_export)
        finally:
            device.destroy()
            assembled.close()
        vectors = vector_figures(Path(tmp), seconds, queue_depths, rng, c_doorbells)
    return {"seconds_per_job": seconds, "block_bytes": BLOCK, "c_doorbells": c_doorbells,
            "copy_limit_blocks_per_s": limit, "jobs": [asdict(f) for f in figures],
            "vector_jobs": [asdict(f) for f in vectors]}


# -- --breakdown: the parts of one QD1 command's server time ---------------------------------
BREAKDOWN_GEOMETRY = OcssdGeometry(num_grp=1, num_pu=2, num_chk=4, num_sec=4096)


class PartTimer:
    """Nanoseconds per part per command: wrappers around the entry points of each part."""

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {}

    def add(self, part: str, ns: int) -> None:
        self.samples.setdefault(part, []).append(ns)

    def wrap(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock, add = time.perf_counter_ns, self.add

        def timed(*args: Any) -> Any:
            started = clock()
            try:
                return function(*args)
            finally:
                add(part, clock() - started)
        return timed


class TimedLib:
    """A cffi lib whose fast-path entry points are timed (the rest passes through)."""

    def __init__(self, lib_: Any, timer: PartTimer) -> None:
        self._lib = lib_
        self.ocssd_fast_io_run = timer.wrap("  C fast path (native)", lib_.ocssd_fast_io_run)
        self.ocssd_vector_io_run = timer.wrap("  C fast path (native)",
                                              lib_.ocssd_vector_io_run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


def message_cost(repetitions: int) -> list[int]:
    """What libvfio-user's socket work costs per doorbell: receive a region-write
    message (16-byte header, 16-byte region access, 4-byte value) and send the 16-byte
    reply, on a Unix socket pair (the client's sends are not timed)."""
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    message, reply = bytes(36), bytes(16)
    samples = []
    with server, client:
        for _ in range(repetitions):
            client.send(message)
            started = time.perf_counter_ns()
            server.recv(16)
            server.recv(20)
            server.send(reply)
            samples.append(time.perf_counter_ns() - started)
            client.recv(16)
    return samples


def breakdown_run(device: VfuDevice, ram: mmap.mmap, timer: PartTimer, submit: Any,
                  repetitions: int) -> None:
    """QD1 on I/O queue pair 1: `submit(sq_offset, slot)` writes one SQE; each part of
    the server's work is timed through `timer`'s wrappers, and the whole of it per
    command (both doorbell callbacks, and after_wake_up as the server's loop calls it:
    process() only when C did not take the wake-up whole)."""
    driver = HostDriver(device, ram)
    driver.enable()
    entries = 16
    driver.admin(AdminOpcode.CREATE_IO_CQ, 1 | (entries - 1) << 16, 1 | 1 << 1 | 1 << 16, IO_CQ)
    driver.admin(AdminOpcode.CREATE_IO_SQ, 1 | (entries - 1) << 16, 1 | 1 << 16, IO_SQ)
    ctrl = driver.ctrl
    line = interrupt_line()
    ctrl.interrupt = timer.wrap("  interrupt from Python (eventfd write)",
                                lambda vector: os.eventfd_write(line, 1))
    word, ctx = driver.word, device.ctx
    buf = ffi.cast("char *", word)
    access = lib.ocssd_bar0_access  # the C entry libvfio-user calls
    # Timed where after_wake_up calls it (a wrapper on the instance until the end).
    ctrl.process = timer.wrap(PROCESS, ctrl.process)  # type: ignore[method-assign]
    after_wake_up = ctrl.after_wake_up
    clock, add = time.perf_counter_ns, timer.add
    cq, tail, head, phase = driver.offset(IO_CQ), 0, 0, 1
    for n in range(-WARM_UP, repetitions):
        if n == 0:  # the warm-up's parts (the first process() after the admin queue's) out
            timer.samples = {part: [] for part in ("SQ doorbell callback",
                                                   "CQ doorbell callback", PROCESS)}
        submit(driver.offset(IO_SQ), tail)
        tail = (tail + 1) % entries
        word[0] = tail
        started = clock()
        access(ctx, buf, 4, Register.DOORBELLS + 8, True)
        rung = clock()
        after_wake_up()  # as the server's loop
        server = clock() - started
        add("SQ doorbell callback", rung - started)
        entry = CQE_FORMAT.unpack_from(ram, cq + head * CQE_SIZE)
        if entry[5] & 1 != phase or entry[5] >> 1:
            raise RuntimeError(f"command {n}: no successful completion ({entry})")
        head += 1
        if head == entries:
            head, phase = 0, phase ^ 1
        word[0] = head
        started = clock()
        access(ctx, buf, 4, Register.DOORBELLS + 12, True)
        rung = clock()
        after_wake_up()
        add(SERVER_TIME, server + clock() - started)
        add("CQ doorbell callback", rung - started)
    vars(ctrl).pop("process")
    add(PROCESS_CALLS, len(timer.samples[PROCESS]) * 1000 // repetitions)  # as a fraction


WARM_UP = 16  # commands run before the timing starts
PROCESS = "controller.process() (when called)"
SERVER_TIME = "= server time per command"
PROCESS_CALLS = "process() calls per command"


def medians(timer: PartTimer) -> dict[str, float]:
    return {part: statistics.median(ns) / 1000 for part, ns in timer.samples.items() if ns}


def breakdown(repetitions: int, seed: int = 1) -> dict[str, dict[str, float]]:
    """Median µs per part of a QD1 command: plain 4 KiB read and write, OCSSD 2.0
    1-LBA vector read, each with the C doorbell path and with doorbells in Python (and,
    for scale, the socket work of one doorbell message)."""
    rng = random.Random(seed)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-hostbench-") as tmp:
        plain_path, ocssd_path = Path(tmp) / "plain.raw", Path(tmp) / "ocssd.img"
        plain_path.write_bytes(rng.randbytes(64 << 20))
        for name, path, mode, identity in (
                ("plain 4K read", plain_path, "nvme", PLAIN_NVME_ID),
                ("plain 4K write", plain_path, "nvme", PLAIN_NVME_ID),
                ("OCSSD 1-LBA vector read", ocssd_path, "ocssd", OCSSD_ID)):
            for c_doorbells in (True, False):
                if mode == "ocssd":  # a fresh image each time: chunk 0 is written whole
                    ocssd_path.unlink(missing_ok=True)
                    create_image(ocssd_path, BREAKDOWN_GEOMETRY)
                label = f"{name}, {'C doorbells' if c_doorbells else 'doorbells in Python'}"
                results[label] = breakdown_case(Path(tmp) / f"sock{len(results)}", path, mode,
                                                identity, c_doorbells, name, repetitions, rng)
    results["doorbell message (socket work)"] = {
        "recv + reply": statistics.median(message_cost(repetitions)) / 1000}
    return results


def breakdown_case(sock: Path, path: Path, mode: str, identity: PciIdentity, c_doorbells: bool,
                   name: str, repetitions: int, rng: random.Random) -> dict[str, float]:
    timer = PartTimer()
    assembled = assemble(ServeOptions(socket=sock, image=path, mode=mode))
    ram = mmap.mmap(-1, RAM_SIZE)
    controller, device = bench_device(sock, assembled, identity, c_doorbells)
    namespace = assembled.namespaces[1]
    saved_libs = {module: module.lib for module in FAST_PATH_MODULES}
    try:
        ram_export = map_guest_ram(device, ram)
        for module in FAST_PATH_MODULES:
            module.lib = TimedLib(module.lib, timer)  # type: ignore[attr-defined]
        if controller.fast_path is not None:
            controller.fast_path.run = timer.wrap(  # type: ignore[method-assign]
                " fast path from process() (Python + C)", controller.fast_path.run)
        if isinstance(namespace, OcssdNamespace):
            prepare_chunk(namespace, rng)
            namespace.read = timer.wrap(  # type: ignore[method-assign]
                " Python path: namespace.read", namespace.read)
            submit = vector_read_submitter(ram, rng)
        else:
            assert isinstance(namespace, PlainNamespace)
            opcode = IoOpcode.READ if "read" in name else IoOpcode.WRITE
            submit = plain_submitter(ram, opcode, namespace.nlbas, rng)
        breakdown_run(device, ram, timer, submit, repetitions)
        ffi.release(ram_export)
    finally:
        for module, saved in saved_libs.items():
            module.lib = saved  # type: ignore[attr-defined]
        # The wrappers out: no cycle left that holds a view of the image.
        vars(namespace).pop("read", None)
        if controller.fast_path is not None:
            vars(controller.fast_path).pop("run", None)
        device.destroy()
        assembled.close()
    return medians(timer)


def plain_submitter(ram: mmap.mmap, opcode: int, nlbas: int,
                    rng: random.Random) -> Callable[[int, int], None]:
    lbas = [rng.randrange(nlbas) for _ in range(4096)]
    counter = iter(range(1 << 62))

    def submit(sq: int, slot: int) -> None:
        SQE_FORMAT.pack_into(ram, sq + slot * SQE_SIZE, opcode, 0, slot, 1, 0, 0, 0, DATA, 0,
                             lbas[next(counter) & 4095], 0, 0, 0, 0, 0)
    return submit


def prepare_chunk(namespace: OcssdNamespace, rng: random.Random) -> None:
    """Chunk 0 written whole (CLOSED, every sector readable), as the Python path would."""
    g = namespace.geometry
    namespace.data[:g.num_sec * g.sec_size] = rng.randbytes(g.num_sec * g.sec_size)
    namespace.chunks.written(0, g.num_sec)


def vector_read_submitter(ram: mmap.mmap, rng: random.Random) -> Callable[[int, int], None]:
    sectors = [rng.randrange(BREAKDOWN_GEOMETRY.num_sec) for _ in range(4096)]
    counter = iter(range(1 << 62))

    def submit(sq: int, slot: int) -> None:
        lba = sectors[next(counter) & 4095]  # group 0, PU 0, chunk 0: the sector field
        SQE_FORMAT.pack_into(ram, sq + slot * SQE_SIZE, IoOpcode.VECTOR_CHUNK_READ, 0, slot, 1,
                             0, 0, 0, DATA, 0, lba & 0xFFFFFFFF, lba >> 32, 0, 0, 0, 0)
    return submit


def format_breakdown(result: dict[str, dict[str, float]]) -> str:
    lines = []
    for name, parts in result.items():
        lines.append(f"{name}:")
        for part, us in parts.items():
            if part == PROCESS_CALLS:
                lines.append(f"  {part:<40}{us:>8.2f}")
            else:
                lines.append(f"  {part:<40}{us:>8.2f} µs")
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    limit = result["copy_limit_blocks_per_s"]
    lines = [f"{'job':<22}{'commands':>10}{'server cmd/s':>14}{'wall cmd/s':>12}"
             f"{'of copy limit':>15}"]
    for job in result["jobs"]:
        lines.append(f"{job['workload'] + ' QD' + str(job['queue_depth']):<22}"
                     f"{job['commands']:>10,}{job['server_commands_per_s']:>14,.0f}"
                     f"{job['wall_commands_per_s']:>12,.0f}"
                     f"{job['server_commands_per_s'] / limit:>14.1%}")
    lines.append(f"{'copy limit (C shim)':<22}{'':>10}{limit:>14,.0f}   random 4 KiB blocks/s")
    plain_read = {job["queue_depth"]: job["server_commands_per_s"] for job in result["jobs"]
                  if job["workload"] == "randread"}
    if result.get("vector_jobs"):
        lines.append("OCSSD 2.0 vector commands (64 LBAs: 256 KiB; of copy limit: 4 KiB blocks "
                     "moved; 1 LBA: server time per command / a plain 4K read's)")
    for job in result.get("vector_jobs", []):
        depth, rate = job["queue_depth"], job["server_commands_per_s"]
        if "64" in job["workload"]:
            ratio = f"{rate * VECTOR_LBAS / limit:>14.1%}"
        else:
            ratio = f"{plain_read[depth] / rate:>13.2f}x" if depth in plain_read else ""
        lines.append(f"{job['workload'] + ' QD' + str(depth):<26}{job['commands']:>6,}"
                     f"{rate:>14,.0f}{job['wall_commands_per_s']:>12,.0f}{ratio}")
    return "\n".join(lines)


# Frames that are the server's work: what libvfio-user calls, and the loop's process().
SERVER_ENTRY_POINTS = ("ocssd_bar0_access", "Controller.process")


def profile_summary(collapsed: str, top: int = 20) -> str:
    """Where the server's samples went, by function (own time, then with callees),
    from py-spy's raw (collapsed-stack) output."""
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        entry = next((i for i, frame in enumerate(frames)
                      if frame.startswith(SERVER_ENTRY_POINTS)), None)
        if entry is None or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames[entry:]):
            within[frame] += samples
    if not total:
        return "no samples in the server's entry points"
    lines = [f"{total} samples in the server's entry points; own time by function:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("with callees:")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in within.most_common(top)]
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> int:
    """Run the bench under py-spy (sampling, so the profile barely slows it) and summarise."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    collapsed = args.out / "host-profile.txt"
    status = subprocess.call([spy, "record", "--rate", "1000", "--format", "raw", "--output",
                              str(collapsed), "--", sys.executable, "-m", "ocssd_vfu.hostbench",
                              "--seconds", str(args.seconds), "--out", str(args.out),
                              "--depths", *map(str, args.depths)])
    if status != 0:
        print(f"hostbench: py-spy exited with status {status}", file=sys.stderr)
        return 1
    print(profile_summary(collapsed.read_text()))
    print(f"(collapsed stacks for flame graphs: {collapsed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocssd_vfu.hostbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per job")
    parser.add_argument("--depths", type=int, nargs="+", default=list(QUEUE_DEPTHS),
                        help="queue depths to run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="where host.json (and the profile) go")
    parser.add_argument("--breakdown", type=int, metavar="N", default=0,
                        help="time each part of a QD1 command over N commands (medians)")
    parser.add_argument("--profile", action="store_true",
                        help="run under py-spy and print where the server's time goes")
    parser.add_argument("--python-doorbells", dest="c_doorbells", action="store_false",
                        help="leave every doorbell to Python (the C doorbell path off)")
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args)
    if args.breakdown:
        print(f"Host-side QD1 breakdown: median of {args.breakdown} commands per part, µs "
              "(indented parts are inside the one above; each timing wrapper adds ~0.1 µs; "
              "a C doorbell's interrupt is inside its callback)")
        print(format_breakdown(breakdown(args.breakdown)))
        return 0
    result = measure(args.seconds, tuple(args.depths), c_doorbells=args.c_doorbells)
    print("Host-side: one core, 4 KiB commands on a plain namespace, no QEMU, doorbells "
          + ("taken in C where they can be" if args.c_doorbells else "in Python"))
    print(format_table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
