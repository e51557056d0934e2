"""`make hostbench`: the server's command path measured without QEMU or a guest.

A plain namespace is assembled as `serve` assembles it (a raw image, mmap'd),
with a real libvfio-user context on a private socket. Guest RAM is an anonymous
shared mapping handed to the device through the DMA-register callback, and the
host side (this module) rings doorbells through the BAR0 callback, the same C
entry points libvfio-user calls; after each batch of doorbells it calls
`controller.process()` as the server's loop does. Interrupts are not sent (no
client has given libvfio-user an eventfd): a real run adds one
`vfu_irq_trigger` (an eventfd write) per CQ per batch.

Per queue depth, 4 KiB random reads and then writes: commands per second of
server time (doorbell callbacks + processing, the host's own Python work not
counted) and of wall time (the host's work included). Beside them, the copy
limit of one core in the same run: the C shim copying random 4 KiB blocks
between guest RAM and the image, 128 per call so the call's cost vanishes.
"""

from __future__ import annotations

import argparse
import json
import mmap
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.devices import PLAIN_NVME_ID
from ocssd_vfu.dma import native as dma
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.nvme.controller import Controller
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


@dataclass
class Figure:
    workload: str
    queue_depth: int
    commands: int
    server_commands_per_s: float
    wall_commands_per_s: float


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
        buf = ffi.new("uint8_t[]", value.to_bytes(width, "little"))
        if lib.ocssd_bar0_access(self.device.ctx, ffi.cast("char *", buf), width, register,
                                 True) != width:
            raise RuntimeError(f"BAR0 write of {value:#x} at {register:#x} refused")

    def doorbell(self, register: int, value: int) -> None:
        """A 4-byte doorbell write as libvfio-user hands it over, timed as server time."""
        self.word[0] = value
        started = time.perf_counter()
        lib.ocssd_bar0_access(self.device.ctx, ffi.cast("char *", self.word), 4, register, True)
        self.server_time += time.perf_counter() - started

    def process(self) -> None:
        started = time.perf_counter()
        self.ctrl.process()
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
        entries = max(2 * queue_depth, 16)
        cq = self.offset(IO_CQ)
        self.ram[cq:cq + entries * CQE_SIZE] = bytes(entries * CQE_SIZE)  # no stale phase tags
        self.admin(AdminOpcode.CREATE_IO_CQ, 1 | (entries - 1) << 16, 1 | 1 << 1 | 1 << 16,
                   IO_CQ)
        self.admin(AdminOpcode.CREATE_IO_SQ, 1 | (entries - 1) << 16, 1 | 1 << 16, IO_SQ)
        opcode = IoOpcode.READ if workload == "randread" else IoOpcode.WRITE
        sq = self.offset(IO_SQ)
        sq_doorbell, cq_doorbell = Register.DOORBELLS + 8, Register.DOORBELLS + 12
        pack, unpack = SQE_FORMAT.pack_into, CQE_FORMAT.unpack_from
        lbas = [rng.randrange(nlbas) for _ in range(8192)]
        tail = head = 0
        phase = 1
        outstanding = submitted = completed = errors = 0
        self.server_time = 0.0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            more = queue_depth - outstanding if time.perf_counter() < deadline else 0
            for _ in range(more):
                slot = tail
                lba = lbas[submitted & 8191]
                pack(self.ram, sq + slot * SQE_SIZE, opcode, 0, slot, 1, 0, 0, 0,
                     DATA + (slot % queue_depth) * BLOCK, 0, lba, 0, 0, 0, 0, 0)
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


def map_guest_ram(device: VfuDevice, ram: mmap.mmap) -> Any:
    """Hand `ram` to the device as QEMU's DMA_MAP would: through the register callback.
    Returns the export of `ram` the region's address comes from: keep it while the
    device may touch guest RAM."""
    host = ffi.from_buffer(ram)
    info = ffi.new("vfu_dma_info_t *")
    info.iova.iov_base = ffi.cast("void *", RAM_IOVA)
    info.iova.iov_len = len(ram)
    info.vaddr = ffi.cast("void *", host)
    info.mapping.iov_base, info.mapping.iov_len = info.vaddr, len(ram)
    info.page_size = mmap.PAGESIZE
    info.prot = mmap.PROT_READ | mmap.PROT_WRITE
    lib.ocssd_dma_register(device.ctx, info)
    return host


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
            seed: int = 1) -> dict[str, Any]:
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
        controller = Controller(GuestMemory(), assembled.namespaces, lambda vector: None,
                                assembled.config)
        device = VfuDevice(str(Path(tmp) / "sock"), controller, PLAIN_NVME_ID)
        controller.interrupt = lambda vector: None  # no client, no eventfd: not sent
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
    return {"seconds_per_job": seconds, "block_bytes": BLOCK,
            "copy_limit_blocks_per_s": limit, "jobs": [asdict(f) for f in figures]}


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
    parser.add_argument("--profile", action="store_true",
                        help="run under py-spy and print where the server's time goes")
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args)
    result = measure(args.seconds, tuple(args.depths))
    print("Host-side: one core, 4 KiB commands on a plain namespace, no QEMU")
    print(format_table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
