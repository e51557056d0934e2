"""The C fast path (native/fastpath.c) against the Python path: the same commands
give the same completions, data and guest memory, whichever path runs them."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocssd_vfu.nvme import io
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA, FakeHost, prp_list

PAGE = 4096
FUA = 1 << 30
DATA_PAGES = 256
LIST_PAGE = DATA + 200 * PAGE  # a PRP list naming data pages 10, 11, 12, ...


def hosts_with(fast: bool, seed: int, doorbells: bool = False) -> FakeHost:
    """A host on the Python path, the fast path run from process(), or (`doorbells`) the
    fast path run by the C doorbell path as each doorbell comes."""
    FakeHost.fast_path, FakeHost.native_doorbells = fast, doorbells
    try:
        host = FakeHost(queue_size=8)
    finally:
        FakeHost.fast_path = FakeHost.native_doorbells = True
    host.enable()
    host.create_io_queues()
    rng = random.Random(seed)
    host.ram_write(DATA, rng.randbytes(DATA_PAGES * PAGE))
    host.storage[:] = rng.randbytes(len(host.storage))
    host.ram_write(LIST_PAGE, prp_list([DATA + (10 + i) * PAGE for i in range(128)]))
    return host


commands = st.lists(st.fixed_dictionaries({
    "opc": st.sampled_from([0x01, 0x02, 0x02, 0x01, 0x00, 0x05]),
    "nsid": st.sampled_from([1, 1, 1, 2]),
    "flags": st.sampled_from([0, 0, 0, 0x40, 0x01]),
    "slba": st.integers(0, 260),
    "nlb": st.sampled_from([0, 0, 1, 2, 7, 127, 128]),
    "fua": st.sampled_from([0, 0, 0, FUA]),
    "prp1": st.sampled_from([DATA, DATA + PAGE, DATA + 0x200, DATA + 3, 0xDEAD0000]),
    "prp2": st.sampled_from([0, LIST_PAGE, DATA + 5 * PAGE, 0xBEEF0000]),
}), min_size=1, max_size=7)


@settings(max_examples=200, deadline=None)
@given(batch=commands, seed=st.integers(0, 2**16))
def test_both_paths_complete_every_command_alike(batch: list[dict[str, int]], seed: int) -> None:
    results, interrupts = [], []
    for fast, doorbells in ((True, False), (False, False), (True, True)):
        host = hosts_with(fast, seed, doorbells)
        for cid, c in enumerate(batch):
            host.submit(1, c["opc"], cid=cid, nsid=c["nsid"], prp1=c["prp1"], prp2=c["prp2"],
                        cdw10=c["slba"], cdw12=c["nlb"] | c["fua"], flags=c["flags"])
        host.ctrl.process()
        ctrl = host.ctrl
        results.append((host.completions(1), bytes(host.storage), bytes(host.ram),
                        ctrl.sqs[1].head, ctrl.cqs[1].tail, ctrl.doorbell_writes,
                        list(ctrl.health.commands), list(ctrl.health.transferred),
                        {key: n for key, n in ctrl.opcode_counts.items() if n}))
        # The C doorbell path interrupts per doorbell it takes, Python once per batch.
        interrupts.append(host.interrupts if not doorbells else sorted(set(host.interrupts)))
    assert results[0] == results[1] == results[2]
    assert interrupts[0] == interrupts[1]
    assert interrupts[2] == sorted(set(interrupts[1]))


def test_plain_reads_and_writes_never_reach_the_python_handlers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = hosts_with(True, 1)
    monkeypatch.setattr(io, "dispatch", lambda *args: pytest.fail("Python path used"))
    payload = bytes(range(256)) * 16
    host.ram_write(DATA, payload)
    assert host.command(1, 0x01, cid=7, nsid=1, prp1=DATA, cdw10=9)[4:] == (7, Status.SUCCESS)
    assert host.storage[9 * PAGE:10 * PAGE] == payload
    assert host.command(1, 0x02, cid=8, nsid=1, prp1=DATA + 0x20000, cdw10=9)[4:] == \
        (8, Status.SUCCESS)
    assert host.ram_read(DATA + 0x20000, PAGE) == payload



def test_commands_the_fast_path_runs_count_per_opcode(monkeypatch: pytest.MonkeyPatch) -> None:
    host = hosts_with(True, 1)
    monkeypatch.setattr(io, "dispatch", lambda *args: pytest.fail("Python path used"))
    host.command(1, 0x01, nsid=1, prp1=DATA, cdw10=9)
    host.command(1, 0x02, nsid=1, prp1=DATA, cdw10=9)
    host.command(1, 0x02, nsid=1, prp1=DATA, cdw10=9)
    assert (host.ctrl.opcode_counts[(False, 0x01)], host.ctrl.opcode_counts[(False, 0x02)]) \
        == (1, 2)

def test_the_first_command_it_does_not_serve_goes_to_python_and_the_rest_follow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = hosts_with(True, 2)
    seen = []
    python_dispatch = io.dispatch

    def dispatch(ctrl, sq, cmd):  # type: ignore[no-untyped-def]
        seen.append(cmd.cid)
        return python_dispatch(ctrl, sq, cmd)

    monkeypatch.setattr(io, "dispatch", dispatch)
    host.interrupts.clear()
    host.submit(1, 0x02, cid=1, nsid=1, prp1=DATA)
    host.submit(1, 0x01, cid=2, nsid=1, prp1=DATA, cdw12=FUA)    # FUA: Python decides
    host.submit(1, 0x02, cid=3, nsid=1, prp1=DATA, cdw10=300)    # out of range: Python's status
    host.submit(1, 0x02, cid=4, nsid=1, prp1=DATA)
    host.ctrl.process()
    assert [(e[2], e[4], e[5]) for e in host.completions(1)] == [
        (1, 1, Status.SUCCESS), (2, 2, Status.SUCCESS),
        (3, 3, Status.LBA_OUT_OF_RANGE | DNR), (4, 4, Status.SUCCESS)]
    assert seen == [2, 3]
    assert host.interrupts == [1]  # one interrupt for the batch
