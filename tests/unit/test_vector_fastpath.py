"""The OCSSD 2.0 vector fast path (native/fastpath.c, ocssd/fastpath.py) against the
Python path: any mix of vector commands completes alike on both, with the same data,
OOB, chunk log and chunk table. (test_ocssd.py runs every OCSSD test on both paths.)"""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ocssd_vfu.geometry.ocssd20 import AddressFormat, OcssdGeometry
from ocssd_vfu.media.ocssd_image import fresh_chunk_log
from ocssd_vfu.nvme.health import HOST_READ, HOST_WRITE
from ocssd_vfu.ocssd.faults import ocssd20_space
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.openchannel.faults import Fault, FaultBook
from tests.unit.fakehost import DATA, FakeHost

GEOMETRY = OcssdGeometry(num_grp=1, num_pu=2, num_chk=3, num_sec=16, ws_min=4, mw_cunits=4)
ADDRESS = AddressFormat(GEOMETRY)
LBAL = DATA - 0x1000      # LBA lists
MPTR = DATA - 0x2000      # OOB buffers
PRP_LIST = DATA - 0x3000  # data pages 1, 2, ... after DATA
VECTOR_RESET, VECTOR_WRITE, VECTOR_READ = 0x90, 0x91, 0x92
CHUNKS = GEOMETRY.num_pu * GEOMETRY.num_chk


def device(fast: bool, seed: int, write_fail: bool = False,
           doorbells: bool = False) -> tuple[FakeHost, OcssdNamespace]:
    """A device on the Python path, the fast path run from process(), or (`doorbells`)
    the fast path run by the C doorbell path as each doorbell comes."""
    g = GEOMETRY
    faults = FaultBook(ocssd20_space(g))
    if write_fail:
        faults.add(Fault("write", g.chunk_position(1), (8,)))
    ns = OcssdNamespace(1, g, memoryview(bytearray(fresh_chunk_log(g))),
                        memoryview(bytearray(g.sectors * g.sec_size)),
                        memoryview(bytearray(g.sectors * g.md_size)), faults=faults)
    FakeHost.fast_path, FakeHost.native_doorbells = fast, doorbells
    try:
        host = FakeHost(namespace=ns)
    finally:
        FakeHost.fast_path = FakeHost.native_doorbells = True
    host.enable()
    host.create_io_queues()
    rng = random.Random(seed)
    host.ram_write(DATA, rng.randbytes(64 * 4096))
    host.ram_write(MPTR, rng.randbytes(64 * 16))
    host.ram_write(PRP_LIST, struct.pack("<63Q", *(DATA + 4096 * i for i in range(1, 64))))
    return host, ns


runs = st.lists(st.tuples(st.integers(0, CHUNKS - 1),        # chunk
                          st.sampled_from([None] * 8 + [0, 3, 12]),  # None: at the WP
                          st.sampled_from([4] * 5 + [8] * 3 + [1, 3, 16])),  # sectors
                min_size=1, max_size=2)
commands = st.lists(st.fixed_dictionaries({
    "opc": st.sampled_from([VECTOR_WRITE, VECTOR_WRITE, VECTOR_READ, VECTOR_READ,
                            VECTOR_RESET]),
    "runs": runs,
    "outside": st.sampled_from([False] * 9 + [True]),
    "mptr": st.sampled_from([0, MPTR, MPTR, MPTR, 0xDEAD0000]),
    "flags": st.sampled_from([0] * 9 + [0x40]),
    "prp1": st.sampled_from([DATA] * 8 + [DATA + 3, 0xBEEF0000]),
}), min_size=1, max_size=12)


def lbas_of(command: dict, next_sector: list[int]) -> list[int]:
    """The command's LBAs; a write's runs `at the WP` follow the test's own count of
    what the writes before it should have written (right or wrong, the same on both
    paths), a read's start at sector 0."""
    lbas = []
    for chunk, start, count in command["runs"]:
        at_wp = next_sector[chunk] if command["opc"] == VECTOR_WRITE else 0
        sec = at_wp if start is None else start
        if command["opc"] == VECTOR_WRITE:
            next_sector[chunk] = sec + count
        pu, chk = divmod(chunk, GEOMETRY.num_chk)
        lbas += [ADDRESS.pack(0, pu, chk, 0) + sec + i for i in range(count)]
    if command["outside"]:
        lbas.append(ADDRESS.pack(0, 0, 3))  # chunk 3 of a PU: beyond NUM_CHK
    return lbas[:64]


def run_batches(fast: bool, seed: int, batches: list[list[dict]], write_fail: bool,
                doorbells: bool = False) -> tuple:
    host, ns = device(fast, seed, write_fail, doorbells)
    next_sector = [0] * CHUNKS
    results = []
    for batch in batches:
        # Every list in place before the first doorbell (the C doorbell path runs each
        # command as it comes, and the 9th list overlaps the first data page).
        lists = [lbas_of(command, next_sector) for command in batch]
        for cid, lbas in enumerate(lists):
            if len(lbas) > 1:
                host.ram_write(LBAL + cid * 512, struct.pack(f"<{len(lbas)}Q", *lbas))
        for cid, (command, lbas) in enumerate(zip(batch, lists, strict=True)):
            where = lbas[0] if len(lbas) == 1 else LBAL + cid * 512
            host.submit(1, command["opc"], cid=cid, nsid=1, prp1=command["prp1"],
                        prp2=DATA + 4096 if len(lbas) == 2 else PRP_LIST,
                        mptr=command["mptr"], flags=command["flags"],
                        cdw10=where & 0xFFFFFFFF, cdw11=where >> 32, cdw12=len(lbas) - 1)
        host.ctrl.process()
        results.append(host.completions(1))
    host.ctrl.pause_native()  # C's counts folded, as before any reader
    health = host.ctrl.health
    return (results, bytes(host.ram), bytes(ns.data), bytes(ns.oob), bytes(ns.chunks.log),
            ns.chunks.state, ns.chunks.wp, ns.chunks.readable,
            [health.commands[HOST_READ], health.commands[HOST_WRITE],
             health.transferred[HOST_READ], health.transferred[HOST_WRITE]],
            {key: n for key, n in host.ctrl.opcode_counts.items() if n}, list(ns.pu_operations))


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(commands, min_size=1, max_size=3), seed=st.integers(0, 2**16),
       write_fail=st.sampled_from([False, False, True]))
def test_both_paths_complete_every_vector_command_alike(batches: list[list[dict]], seed: int,
                                                         write_fail: bool) -> None:
    python = run_batches(False, seed, batches, write_fail)
    assert run_batches(True, seed, batches, write_fail) == python
    assert run_batches(True, seed, batches, write_fail, doorbells=True) == python


def test_the_fast_path_serves_writes_at_the_wp_and_reads_of_written_sectors() -> None:
    host, ns = device(True, 1)
    assert host.ctrl.fast_path is not None
    sq = host.ctrl.sqs[1]
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=3)
    host.ram_write(LBAL, struct.pack("<4Q", 0, 1, 2, 3))
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1
    assert (ns.chunks.state[0], ns.chunks.wp[0], ns.chunks.readable[0]) == (4, 4, 0)
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL + 512,
                cdw12=11)
    host.ram_write(LBAL + 512, struct.pack("<12Q", *range(4, 16)))
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1
    assert (ns.chunks.state[0], ns.chunks.wp[0], ns.chunks.readable[0]) == (2, 16, 16)
    assert bytes(ns.oob[:16]) == b"\xff" * 16  # no MPTR: erased OOB
    host.submit(1, VECTOR_READ, nsid=1, prp1=DATA + 32 * 4096, cdw10=15)
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1
    assert host.ram_read(DATA + 32 * 4096, 4096) == host.ram_read(DATA + 11 * 4096, 4096)
    assert [c[5] for c in host.completions(1)] == [0, 0, 0]


def test_the_fast_path_leaves_the_open_chunks_write_cache_to_python() -> None:
    host, ns = device(True, 1)
    host.ram_write(LBAL, struct.pack("<8Q", *range(8)))
    assert host.command(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL,
                        cdw12=7)[5] == 0
    host.submit(1, VECTOR_READ, nsid=1, prp1=DATA, cdw10=4)  # WP 8 - MW_CUNITS 4: cached
    assert host.ctrl.fast_path.run(host.ctrl, host.ctrl.sqs[1]) == 0
    host.ctrl.process()
    assert host.completions(1)[0][5] == 0


def test_with_a_space_reserver_python_opens_the_chunk_and_c_writes_on() -> None:
    host, ns = device(True, 1)
    reserved: list[int] = []
    ns.reserve = lambda chunk: reserved.append(chunk) is None
    sq = host.ctrl.sqs[1]
    host.ram_write(LBAL, struct.pack("<8Q", *range(8)))
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=3)
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 0   # a FREE chunk: Python reserves
    host.ctrl.process()
    assert reserved == [0]
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL + 32, cdw12=3)
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1   # OPEN now: C writes on
    assert (ns.chunks.state[0], ns.chunks.wp[0]) == (4, 8)
    assert reserved == [0]
    assert [c[5] for c in host.completions(1)] == [0, 0]


def test_the_fast_path_counts_each_chunk_it_reads_or_writes_per_pu() -> None:
    host, ns = device(True, 1)
    sq = host.ctrl.sqs[1]
    chunk_on_pu1 = ADDRESS.pack(0, 1, 0, 0)
    host.ram_write(LBAL, struct.pack("<8Q", *range(4), *range(chunk_on_pu1, chunk_on_pu1 + 4)))
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=7)
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1
    assert ns.pu_operations == [1, 1]


def test_commands_the_fast_path_runs_count_per_opcode() -> None:
    host, ns = device(True, 1)
    sq = host.ctrl.sqs[1]
    host.ram_write(LBAL, struct.pack("<4Q", *range(4)))
    host.submit(1, VECTOR_WRITE, nsid=1, prp1=DATA, prp2=PRP_LIST, cdw10=LBAL, cdw12=3)
    assert host.ctrl.fast_path.run(host.ctrl, sq) == 1
    assert host.ctrl.opcode_counts[(False, VECTOR_WRITE)] == 1
