"""Inputs the fuzzer found, as the literal submission queue entries that failed."""

from __future__ import annotations

from ocssd_vfu.spec.nvme import Register
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import ASQ, DATA, FakeHost


def submit_raw(host: FakeHost, sqe: bytes) -> tuple[int, ...]:
    """Put 64 literal bytes in the admin SQ, ring, process; the one completion."""
    host.ram_write(ASQ, sqe)
    host.ctrl.mmio_write(Register.DOORBELLS, 4, 1)
    host.ctrl.process()
    (completion,) = host.completions(0)
    return completion


def test_get_log_page_beyond_mdts_is_refused_without_allocating_it() -> None:
    # Get Log Page (02h), LID 3, NUMDL 1, NUMDU 0xf008: NUMD 0xf0080002 dwords (15 GiB),
    # far more than MDTS (512 KiB) allows; the server used to build the whole page in
    # memory (the fuzzer's case, with NUMDU 0x2d08, took 33 s and 2.8 GiB).
    sqe = bytes.fromhex(
        "02000100" "00000000" "00000000" "00000000"   # opc, cid 1, nsid 0, cdw2, cdw3
        "0000000000000000"                           # mptr
        "0000110000000000" "00f0110000000000"         # prp1, prp2
        "03000100" "08f03ddd" "00000000" "00000000"   # cdw10 (LID 3, NUMDL 1), cdw11, 12, 13
        "00000000" "00000000")                        # cdw14, cdw15
    assert DATA == 0x110000
    host = FakeHost()
    host.enable()
    assert submit_raw(host, sqe)[5] == Status.INVALID_FIELD | DNR
