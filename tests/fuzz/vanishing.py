"""The vanishing-memory fuzzer: guest memory that shrinks and an image that is truncated
under the controller, among random plain Reads, Writes and Identifies (C fast path, Python
path, admin). tests/fuzz/test_vanishing_memory.py runs a few seeds, `make fuzz` many.

The host side is the shell's: guest memory and the image are watched (native/guard.h)
and, after each command, the server's checks run (vfu/server.py: guest memory gone ->
Controller Fatal Status; the image file changed -> every later I/O a media error).
Properties, after every command: a spec status, never Internal Error; a transfer that
touches the lost part of guest memory is a Data Transfer Error, one elsewhere succeeds
(until the controller is fatal); an image truncated under a transfer gives a media
error with DNR; once the image is failed, every I/O command gets one.
"""

from __future__ import annotations

import mmap
import os
import random
from pathlib import Path

from ocssd_vfu.dma.native import ffi, lib
from ocssd_vfu.media.raw import RawImage
from ocssd_vfu.media.watch import Monitor
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import Register
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, FakeHost

D, D_SIZE = 0x40_0000_0000, 0x40000    # guest memory on a memfd the client can shrink
NLBAS = 1024
READ, WRITE, IDENTIFY = 0x02, 0x01, 0x06
MEDIA = {WRITE: Status.WRITE_FAULT | DNR, READ: Status.UNRECOVERED_READ | DNR}
SPEC = {int(s) for s in Status} - {Status.INTERNAL_ERROR}


class Client:
    def __init__(self, host: FakeHost) -> None:
        self.fd = os.memfd_create("fuzz-guest")
        os.ftruncate(self.fd, D_SIZE)
        self.map = mmap.mmap(self.fd, D_SIZE)
        self.size = D_SIZE
        export = ffi.from_buffer(self.map)
        self.address = ffi.cast("void *", export)
        ffi.release(export)
        host.memory.add(D, memoryview(self.map))
        lib.ocssd_guard_watch(self.address, D_SIZE, lib.OCSSD_GUARD_GUEST)

    def shrink(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        self.size = min(self.size, size)


def check_after(host: FakeHost, monitor: Monitor) -> None:
    """What the server does after each wake-up, and (here after every command too) once
    a second: look at the image file."""
    if monitor.guest_memory_lost():
        host.ctrl.fatal("guest_memory_gone", "fuzz: shrunk")
    monitor.image_faulted()
    problem = monitor.image_problem()
    if problem:
        host.ctrl.fail_media(problem)


def run_vanishing(rng: random.Random, workdir: Path) -> int:
    """One seed's worth: 20-80 actions on a fresh controller and image file under
    WORKDIR; the commands submitted (an AssertionError on a broken property)."""
    path = workdir / f"disk-{rng.getrandbits(32):08x}.raw"
    with path.open("wb") as f:
        f.truncate(NLBAS * 4096)
    image = RawImage(path, 4096)
    host = FakeHost(namespace=PlainNamespace(1, image.view, 4096, allocation=image))
    client = Client(host)
    monitor = Monitor()
    image_size = NLBAS * 4096
    commands = 0
    try:
        host.enable()
        host.create_io_queues()
        for _ in range(rng.randrange(20, 80)):
            action = rng.random()
            if action < 0.08:
                client.shrink(rng.randrange(0, client.size + 1, 4096))
                continue
            if action < 0.14:
                image_size = min(image_size, rng.randrange(0, NLBAS * 4096 + 1, 4096))
                os.truncate(path, image_size)
                continue
            in_d = rng.random() < 0.6
            buffer = D + rng.randrange(0, D_SIZE - 0x10000, 4096) if in_d else DATA
            nlb = rng.randrange(1, 9)
            if action < 0.22:
                opc, length, fields = IDENTIFY, 4096, {"cdw10": 1}
                qid = 0
            else:
                opc, qid = rng.choice((READ, WRITE)), 1
                length = nlb * 4096
                slba = rng.randrange(0, NLBAS - nlb)
                fields = {"nsid": 1, "cdw10": slba, "cdw12": nlb - 1}
            prp2 = buffer + 4096 if length > 4096 else 0
            if length > 8192:  # a PRP list in the host's own memory
                host.ram_write(DATA + 0x30000, b"".join(
                    (buffer + 4096 * i).to_bytes(8, "little") for i in range(1, nlb)))
                prp2 = DATA + 0x30000
            failed = host.ctrl.media_failure is not None
            commands += 1
            host.submit(qid, opc, prp1=buffer, prp2=prp2, **fields)
            host.ctrl.process()
            check_after(host, monitor)
            if host.ctrl.mmio_read(Register.CSTS, 4) & 0x2:
                # guest memory went under a Python access: fatal, as in the server
                return commands
            (*_, status), = host.completions(qid)
            assert status in SPEC or status & ~DNR in SPEC, hex(status)
            assert host.ctrl.internal_errors == 0
            lost = in_d and buffer - D + length > client.size
            if qid and failed:
                assert status in (MEDIA[opc], Status.DATA_TRANSFER_ERROR), hex(status)
            elif lost:
                assert status in (Status.DATA_TRANSFER_ERROR, MEDIA.get(opc)), hex(status)
            elif qid and (fields["cdw10"] + nlb) * 4096 > image_size:
                assert status == MEDIA[opc], hex(status)
            else:
                assert status == 0, hex(status)
        return commands
    finally:
        host.ctrl.release_native()  # C lets go of the image before it closes
        lib.ocssd_guard_unwatch(client.address)
        host.memory.remove(D)
        image.close()
        client.map.close()
        os.close(client.fd)
        path.unlink(missing_ok=True)
