"""Wear (--pe-cycles) and Chunk Notifications through the controller: the D0h log page
and the vendor-specific AER that points at it."""

from __future__ import annotations

import struct

from ocssd_vfu.ocssd.wear import CHUNK_NOTIFICATION_AEN
from ocssd_vfu.spec.ocssd import CHUNK_DESCRIPTOR_FORMAT, NotificationState
from ocssd_vfu.spec.status import DNR, Status
from tests.unit.fakehost import DATA
from tests.unit.test_ocssd import VECTOR_RESET, Device, lba, run

AER, GET_LOG_PAGE, IDENTIFY = 0x0C, 0x02, 0x06
AEN_D0 = 0x00D00007   # vendor specific (7), info 0, log page D0h


def read_log(dev: Device, lid: int, length: int) -> bytes:
    done = dev.host.command(0, GET_LOG_PAGE, cid=9, nsid=1, prp1=DATA,
                            cdw10=lid | (length // 4 - 1) << 16)
    assert done[5] == 0, done
    return dev.host.ram_read(DATA, length)


def arm(dev: Device, cid: int) -> None:
    dev.host.submit(0, AER, cid=cid)
    dev.host.ctrl.process()


def test_the_aen_names_the_vendor_type_and_the_d0h_log() -> None:
    assert CHUNK_NOTIFICATION_AEN == AEN_D0


def test_a_chunk_wears_out_after_its_cycles_and_the_host_is_told() -> None:
    dev = Device(pe_cycles=3)
    arm(dev, cid=7)
    assert dev.host.completions(0) == []                 # the AER waits
    wlis = []
    for _ in range(3):
        assert dev.write(run(0, 32, chk=4))[0] == 0
        assert dev.vector(VECTOR_RESET, [lba(0, 0, 4)]) == (0, 0)
        wlis.append(dev.chunk(0, 0, 4)[2])
    assert wlis == [85, 170, 255]
    assert dev.write(run(0, 32, chk=4))[0] == 0                  # still writable
    assert dev.vector(VECTOR_RESET, [lba(0, 0, 4)]) == (Status.OFFLINE_CHUNK | DNR, 1)
    assert dev.chunk(0, 0, 4) == (8, 1, 255, lba(0, 0, 4), 32, 0xFFFF)   # OFFLINE
    # The AER completed with the D0h pointer; the log holds the worn-out chunk.
    assert dev.host.completions(0) == [(AEN_D0, 0, 3, 0, 7, 0)]   # SQ head: after the AER
    entry = read_log(dev, 0xD0, 64)
    assert struct.unpack_from("<QQIHB", entry) == (1, lba(0, 0, 4), 1, 0x100, 0x2)
    assert entry[23:] == bytes(41)
    # The erase count is kept in the image's reserved bytes, never shown to the host.
    assert struct.unpack_from("<I", dev.log, 4 * 32 + 4) == (3,)
    chunk_log = read_log(dev, 0xCA, 5 * 32)
    assert CHUNK_DESCRIPTOR_FORMAT.unpack_from(chunk_log, 4 * 32) == dev.chunk(0, 0, 4)
    assert chunk_log[4 * 32 + 3:4 * 32 + 8] == bytes(5)


def test_without_pe_cycles_wli_counts_resets_and_the_log_keeps_no_count() -> None:
    dev = Device()
    for _ in range(2):
        assert dev.write(run(0, 8, pu=1))[0] == 0
        assert dev.vector(VECTOR_RESET, [lba(0, 1, 0)]) == (0, 0)
    assert dev.chunk(0, 1, 0)[2] == 2
    index = 1 * 12
    assert dev.log[index * 32 + 3:index * 32 + 8] == bytes(5)


def test_many_notifications_keep_the_controller_working() -> None:
    dev = Device()
    for event in range(200):
        arm(dev, cid=100 + event % 50)
        dev.ns.notify(lba(0, 1, event % 12), NotificationState.REFRESHED)
        dev.host.ctrl.post_async_event(CHUNK_NOTIFICATION_AEN)
        (completion,) = dev.host.completions(0)
        assert (completion[0], completion[4], completion[5]) == (AEN_D0, 100 + event % 50, 0)
    newest = read_log(dev, 0xD0, 64 * 64)
    # A ring of 64: the 200th entry went to slot 7, the oldest kept (the 137th) is in 8.
    assert [struct.unpack_from("<Q", newest, slot * 64)[0] for slot in (7, 8)] == [200, 137]
    # Unanswered events do not pile up: one waits for the next AER.
    for _ in range(10):
        dev.host.ctrl.post_async_event(CHUNK_NOTIFICATION_AEN)
    assert dev.host.ctrl.async_events == [AEN_D0]
    arm(dev, cid=3)
    assert dev.host.completions(0)[0][0] == AEN_D0
    # Admin and I/O still work.
    assert dev.host.command(0, IDENTIFY, cid=4, prp1=DATA, cdw10=1)[5] == 0
    assert dev.write(run(0, 8, pu=1, chk=3))[0] == 0
