"""The C doorbell path (native/doorbell.c, nvme/native_doorbells.py): I/O doorbells
taken whole in C, and the rules that hand everything else to Python. (Every command,
queue and shadow doorbell test also runs on it: conftest.py's both_io_paths.)"""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from ocssd_vfu.app import ServeOptions
from ocssd_vfu.control.commands import build_registry
from ocssd_vfu.control.qmp import Request
from ocssd_vfu.controlled import DeviceControl
from ocssd_vfu.devices import PLAIN
from ocssd_vfu.nvme import io
from ocssd_vfu.nvme.controller import ControllerConfig
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.spec.nvme import SQE_FORMAT, Register
from ocssd_vfu.spec.status import Status
from tests.unit.fakehost import DATA, RAM_BASE, FakeHost
from tests.unit.test_vector_fastpath import (
    ADDRESS,
    LBAL,
    PRP_LIST,
    VECTOR_READ,
    VECTOR_WRITE,
    device,
)

READ, WRITE, SET_FEATURES, DBBUF = 0x02, 0x01, 0x09, 0x7C
FUA = 1 << 30
SQ1_TAIL, CQ1_HEAD = Register.DOORBELLS + 8, Register.DOORBELLS + 12
SHADOW, EVENTIDX = RAM_BASE + 0x5000, RAM_BASE + 0x6000
EXTRA = 0x800000  # a second DMA region


def ready_host(queue_size: int = 16) -> FakeHost:
    host = FakeHost(queue_size=queue_size)
    host.enable()
    host.create_io_queues()
    assert host.ctrl.native is not None and host.ctrl.native.enabled
    return host


def python_never_runs(monkeypatch: pytest.MonkeyPatch, host: FakeHost) -> None:
    def fail(*args: Any) -> None:
        pytest.fail("Python took it")
    monkeypatch.setattr(io, "dispatch", fail)
    monkeypatch.setattr(host.ctrl, "mmio_write", fail)
    monkeypatch.setattr(host.ctrl, "process", fail)


def queue(host: FakeHost, cid: int, opc: int, **fields: int) -> None:
    """Write an SQE on I/O SQ 1 without ringing."""
    sqe = SQE_FORMAT.pack(opc, 0, cid, 1, 0, 0, 0, fields.get("prp1", DATA), 0,
                          fields.get("cdw10", 0), 0, fields.get("cdw12", 0), 0, 0, 0)
    host.ram_write(host.sq_base[1] + host.tails[1] * 64, sqe)
    host.tails[1] = (host.tails[1] + 1) % host.queue_size


def test_an_io_doorbell_of_plain_commands_is_taken_whole_in_c(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = ready_host()
    python_never_runs(monkeypatch, host)
    host.interrupts.clear()
    host.ram_write(DATA, b"\x5A" * 4096)
    host.submit(1, WRITE, cid=7, nsid=1, prp1=DATA, cdw10=3)
    assert host.interrupts == [1]
    assert not host.ctrl.needs_processing()
    assert host.completions(1) == [(0, 0, 1, 1, 7, Status.SUCCESS)]
    assert bytes(host.storage[3 * 4096:4 * 4096]) == b"\x5A" * 4096
    assert host.ctrl.native is not None and host.ctrl.native.enabled


def test_after_an_unmap_c_never_reaches_the_region_through_a_stale_table() -> None:
    host = ready_host()
    extra = bytearray(0x10000)
    host.memory.add(EXTRA, extra)
    host.ctrl.process()                # armed while both regions are mapped
    host.memory.remove(EXTRA)          # even with no pause, C reads the current table
    assert host.memory.dma_map.count == 1
    host.submit(1, READ, cid=5, nsid=1, prp1=EXTRA)
    assert host.ctrl.needs_processing()  # left at the head for Python
    host.ctrl.process()
    assert [(e[4], e[5]) for e in host.completions(1)] == [(5, Status.DATA_TRANSFER_ERROR)]
    assert extra == bytearray(0x10000)


def test_the_first_command_c_does_not_serve_goes_to_python_mid_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = ready_host()
    seen: list[int] = []
    python_dispatch = io.dispatch

    def dispatch(ctrl, sq, cmd):  # type: ignore[no-untyped-def]
        seen.append(cmd.cid)
        return python_dispatch(ctrl, sq, cmd)
    monkeypatch.setattr(io, "dispatch", dispatch)
    host.interrupts.clear()
    queue(host, 1, READ)
    queue(host, 2, WRITE, cdw12=FUA)     # FUA: Python's
    queue(host, 3, READ)
    host.doorbell(SQ1_TAIL, host.tails[1])
    assert (seen, host.ctrl.sqs[1].head, host.interrupts) == ([], 1, [1])
    assert host.ctrl.needs_processing()
    host.ctrl.process()
    assert seen == [2]                  # then the fast path from process() took cid 3
    assert [(e[2], e[4], e[5]) for e in host.completions(1)] == [
        (1, 1, Status.SUCCESS), (2, 2, Status.SUCCESS), (3, 3, Status.SUCCESS)]
    assert not host.ctrl.needs_processing()


def test_a_command_that_waits_for_cq_room_runs_at_the_cq_doorbell_in_c(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = ready_host(queue_size=4)     # 3 CQEs fit
    for cid in (1, 2, 3):
        queue(host, cid, READ)
    host.doorbell(SQ1_TAIL, host.tails[1])
    host.submit(1, READ, cid=4, nsid=1, prp1=DATA)  # the CQ is full: Python's turn
    host.ctrl.process()                 # which can do nothing, and turns C on again
    assert host.ctrl.sqs[1].head == 3 and not host.ctrl.needs_processing()
    python_never_runs(monkeypatch, host)
    host.interrupts.clear()
    assert [e[4] for e in host.completions(1)] == [1, 2, 3]  # the CQ doorbell runs cid 4
    assert host.interrupts == [1]
    assert [(e[2], e[4]) for e in host.completions(1)] == [(0, 4)]


def shadow_host() -> FakeHost:
    host = FakeHost()
    host.enable()
    assert host.command(0, DBBUF, prp1=SHADOW, prp2=EVENTIDX)[5] == 0
    host.create_io_queues()
    return host


def eventidx(host: FakeHost) -> tuple[int, int]:
    """SQ 1's and CQ 1's EventIdx."""
    sq, cq = struct.unpack("<2I", host.ram_read(EVENTIDX + 8, 8))
    return sq, cq


def test_with_shadow_doorbells_c_takes_the_shadow_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    host = shadow_host()
    python_never_runs(monkeypatch, host)
    queue(host, 1, READ)
    queue(host, 2, READ)
    host.ram_write(SHADOW + 8, struct.pack("<I", 2))
    host.doorbell(SQ1_TAIL, 1)          # the MMIO value is older than the shadow's
    assert [e[4] for e in host.completions(1)] == [1, 2]
    host.ctrl.after_wake_up()
    assert eventidx(host) == (2, 0xFFFFFFFF)


def test_submissions_during_the_wake_up_ring_nothing_and_run_at_its_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As with Python's processing at the end of a wake-up: the EventIdx stays where it
    # was until the wake-up's messages are done, so the host's next submissions meanwhile
    # need no MMIO (Linux: nvme_dbbuf_need_event), and the end of the wake-up runs them.
    host = shadow_host()
    python_never_runs(monkeypatch, host)
    queue(host, 1, READ)
    host.ram_write(SHADOW + 8, struct.pack("<I", 1))
    host.doorbell(SQ1_TAIL, 1)
    assert eventidx(host) == (0, 0xFFFFFFFF)  # 0: where the last processing left it
    queue(host, 2, READ)
    queue(host, 3, READ)
    host.ram_write(SHADOW + 8, struct.pack("<I", 3))  # 0 is not in [1, 3): no MMIO
    host.interrupts.clear()
    host.ctrl.after_wake_up()
    assert host.interrupts == [1]
    assert [e[4] for e in host.completions(1)] == [1, 2, 3]
    assert eventidx(host) == (3, 0xFFFFFFFF)


def test_the_rearm_race_is_caught_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    # cid 2 reads LBA 0 into the shadow doorbell page: a shadow SQ tail of 3 lands while
    # C runs at the end of the wake-up, before it arms EventIdx, as a host CPU's write
    # without MMIO would.
    host = shadow_host()
    host.storage[0:16] = struct.pack("<4I", 0, 0, 3, 0)
    python_never_runs(monkeypatch, host)
    queue(host, 1, READ)
    host.ram_write(SHADOW + 8, struct.pack("<I", 1))
    host.doorbell(SQ1_TAIL, 1)
    queue(host, 2, READ, prp1=SHADOW)
    queue(host, 3, READ, cdw10=1)
    host.ram_write(SHADOW + 8, struct.pack("<I", 2))
    host.ctrl.after_wake_up()
    assert [e[4] for e in host.completions(1)] == [1, 2, 3]
    assert eventidx(host) == (3, 0xFFFFFFFF)


def test_coalescing_leaves_the_queue_to_python() -> None:
    host = ready_host()
    assert host.command(0, SET_FEATURES, cdw10=0x08, cdw11=0x0A03)[5] == 0
    host.ctrl.process()
    native = host.ctrl.native
    assert native is not None and not native.enabled
    host.submit(1, READ, cid=9, nsid=1, prp1=DATA)
    assert native.table.doorbell_writes == 0 and host.ctrl.needs_processing()


def test_what_c_counted_is_folded_into_pythons_counters() -> None:
    host = ready_host()
    native = host.ctrl.native
    assert native is not None
    for opc in (READ, READ, WRITE):
        host.submit(1, opc, nsid=1, prp1=DATA, prp2=DATA + 4096, cdw12=1)  # 2 blocks each
        host.completions(1)
    assert host.ctrl.health.commands[HOST_READ] == 0     # not folded yet
    assert (host.ctrl.doorbell_writes, host.ctrl.python_doorbell_writes) == (10, 4)
    native.table.irq_errors, native.table.irq_errno = 2, errno.EAGAIN
    host.ctrl.pause_native()
    health = host.ctrl.health
    assert (health.commands[HOST_READ], health.commands[HOST_WRITE]) == (2, 1)
    assert (health.transferred[HOST_READ], health.transferred[HOST_WRITE]) == (16384, 8192)
    assert (host.ctrl.opcode_counts[(False, READ)], host.ctrl.opcode_counts[(False, WRITE)]) \
        == (2, 1)
    assert (host.ctrl.doorbell_writes, host.ctrl.python_doorbell_writes) == (10, 10)
    assert host.ctrl.guest_errors["irq_fd"] == 2
    assert not native.enabled and not native.armed


def test_an_ocssd_write_in_c_reaches_the_chunk_table_when_folded() -> None:
    host, ns = device(True, 1, doorbells=True)
    host.ram_write(LBAL, struct.pack("<4Q", *(ADDRESS.pack(0, 1, 2, 0) + i for i in range(4))))
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=3)
    chunk = 1 * 3 + 2                   # PU 1, chunk 2
    assert host.completions(1)[0][5] == Status.SUCCESS
    assert (ns.chunks.state[chunk], ns.chunks.wp[chunk], ns.pu_operations) == (1, 0, [0, 0])
    host.ctrl.pause_native()
    assert (ns.chunks.state[chunk], ns.chunks.wp[chunk], ns.pu_operations) == (4, 4, [0, 1])


def test_ocssd_reads_in_c_count_per_pu_without_filling_the_written_list() -> None:
    """Reads change no chunk: C counts them per PU only, so a long stream of them (more than
    the list of written chunks holds, 4096) stays in C."""
    host, ns = device(True, 1, doorbells=True)
    for first in (0, 4):                 # 8 sectors of PU 1's chunk 2: 4 readable in C
        host.ram_write(LBAL, struct.pack("<4Q", *(ADDRESS.pack(0, 1, 2, first + i)
                                                  for i in range(4))))
        host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=3)
        assert host.completions(1)[0][5] == Status.SUCCESS
    for n in range(5000):
        host.submit(1, VECTOR_READ, nsid=1, prp1=DATA, cdw10=ADDRESS.pack(0, 1, 2, n % 4))
        assert host.completions(1)[0][5] == Status.SUCCESS
    assert not host.ctrl.needs_processing()     # C took every doorbell
    assert ns.pu_operations == [0, 0]
    host.ctrl.pause_native()
    assert ns.pu_operations == [0, 5002]
    assert host.ctrl.opcode_counts[(False, VECTOR_READ)] == 5000


@pytest.mark.parametrize("config", [ControllerConfig(native_doorbells=False),
                                    ControllerConfig(fast_path=False)])
def test_the_c_doorbell_path_can_be_turned_off(config: ControllerConfig) -> None:
    FakeHost.fast_path, FakeHost.native_doorbells = config.fast_path, config.native_doorbells
    try:
        host = FakeHost()
    finally:
        FakeHost.fast_path = FakeHost.native_doorbells = True
    assert host.ctrl.native is None and host.ctrl.needs_processing()


def test_a_control_command_sees_what_c_ran() -> None:
    host = ready_host()
    for _ in range(3):
        host.submit(1, READ, nsid=1, prp1=DATA)
        host.completions(1)
    control = DeviceControl(PLAIN, ServeOptions(socket=Path("unused"), image=Path("unused")),
                            host.ctrl, sync=lambda: None, stop=lambda: None)

    async def query() -> dict[str, Any]:
        reply, _ = await build_registry(control).execute(Request("query-stats", {}))
        return reply
    stats = trio.run(query)["return"]
    assert (stats["smart"]["host_read_commands"], stats["read_bytes"],
            stats["doorbell_writes"]) == (3, 12288, 10)
    assert host.ctrl.native is not None and not host.ctrl.native.enabled
