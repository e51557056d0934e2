"""What a 1.2 block's bad-block value allows (ocssd12/block_states.py): one test per row,
driven through a namespace as the commands drive it (2 planes, 4 pages of 2 sectors)."""

from __future__ import annotations

import pytest

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry, PpaFormat12
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.ocssd12.bad_blocks import ocssd12_space
from ocssd_vfu.ocssd12.block_states import BLOCK_TRANSITIONS, UNUSABLE, BlockEvent
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.openchannel.faults import Fault, FaultBook

G = Ocssd12Geometry(num_ch=1, num_lun=1, num_pln=2, num_blk=4, num_pg=4, fpg_sz=8192)
GOOD, FACTORY, GROWN, DEVICE, HOST = 0, 1, 2, 4, 8
WRITE_FAIL_DNR = 0x40FF     # OCSSD 1.2 write fail (Linux NVM_RSP_ERR_FAILWRITE)
RAM = 0x10000
POINTERS = Command(opc=0, flags=0, cid=0, nsid=1, cdw2=0, cdw3=0, mptr=0, prp1=RAM,
                   prp2=RAM + 0x1000, cdw10=0, cdw11=0, cdw12=0, cdw13=0, cdw14=0, cdw15=0)


def namespace(value: int, erase_fails: bool = False) -> tuple[Ocssd12Namespace, GuestMemory]:
    """Plane block 0 (block 0, plane 0) holds `value`."""
    sectors = G.sectors
    book = FaultBook(ocssd12_space(G))
    if erase_fails:
        book.add(Fault("reset", (0, 0, 0), ()))
    ns = Ocssd12Namespace(1, G, memoryview(bytearray(G.num_blk * G.num_pln)),
                          memoryview(bytearray(4 * G.num_blk * G.num_pln)),
                          memoryview(bytearray(sectors * G.sec_size)),
                          memoryview(bytearray(sectors * G.md_size)),
                          faults=book)
    ns.blocks.mark(0, value)
    memory = GuestMemory()
    memory.add(RAM, bytearray(0x2000))
    return ns, memory


def page_ppas(page: int) -> list[int]:
    fmt = PpaFormat12(G)
    return [fmt.pack(ch=0, lun=0, blk=0, pl=0, pg=page, sec=sec) for sec in range(2)]


def program(value: int) -> tuple[int, int]:
    ns, memory = namespace(value)
    status, _ = ns.write(memory, 4096, page_ppas(0), POINTERS, 0)
    return status, ns.blocks.value(0)


def erase(value: int) -> tuple[int, int]:
    ns, _ = namespace(value)
    status, _ = ns.erase(page_ppas(0)[:1], 0)
    return status, ns.blocks.value(0)


def failing_erase(value: int) -> tuple[int, int]:
    ns, _ = namespace(value, erase_fails=True)
    status, _ = ns.erase(page_ppas(0)[:1], 0)
    return status, ns.blocks.value(0)


ACTIONS = {BlockEvent.PROGRAM: program, BlockEvent.ERASE: erase,
           BlockEvent.ERASE_FAILS: failing_erase}
# (event, value before) -> (status, value after)
ROWS: dict[tuple[BlockEvent, int], tuple[int, int]] = {
    (BlockEvent.PROGRAM, GOOD): (0, GOOD),
    (BlockEvent.PROGRAM, DEVICE): (0, DEVICE),
    (BlockEvent.PROGRAM, HOST): (0, HOST),
    (BlockEvent.PROGRAM, FACTORY): (WRITE_FAIL_DNR, FACTORY),
    (BlockEvent.PROGRAM, GROWN): (WRITE_FAIL_DNR, GROWN),
    (BlockEvent.ERASE, GOOD): (0, GOOD),
    (BlockEvent.ERASE, DEVICE): (0, DEVICE),
    (BlockEvent.ERASE, HOST): (0, HOST),
    (BlockEvent.ERASE, FACTORY): (WRITE_FAIL_DNR, FACTORY),
    (BlockEvent.ERASE, GROWN): (WRITE_FAIL_DNR, GROWN),
    (BlockEvent.ERASE_FAILS, GOOD): (WRITE_FAIL_DNR, GROWN),
    (BlockEvent.ERASE_FAILS, DEVICE): (WRITE_FAIL_DNR, GROWN),
    (BlockEvent.ERASE_FAILS, HOST): (WRITE_FAIL_DNR, GROWN),
}


def test_every_row_has_its_test() -> None:
    assert set(ROWS) == set(BLOCK_TRANSITIONS)


def test_unusable_values() -> None:
    assert UNUSABLE == FACTORY | GROWN


@pytest.mark.parametrize("row", list(ROWS), ids=lambda row: f"{row[0].name}-{row[1]}")
def test_row(row: tuple[BlockEvent, int]) -> None:
    event, value = row
    assert ACTIONS[event](value) == ROWS[row]
