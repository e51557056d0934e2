"""Admin commands beyond the core: Format NVM, the Commands Supported and Effects and
SMART / Health logs, Get/Set Features (table, SEL), and the optional-command bits of
Identify Controller. Expected values are the spec's, written out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.media.raw import RawImage
from ocssd_vfu.plain.namespace import PlainNamespace
from ocssd_vfu.spec.nvme import (
    CommandsSupportedAndEffectsLog,
    IdentifyController,
    IdentifyNamespace,
    Register,
    SmartHealthLog,
)
from tests.unit.fakehost import DATA, FakeHost
from tests.unit.test_ocssd import Device, lba

pytestmark = pytest.mark.usefixtures("both_io_paths")

GET_LOG_PAGE, IDENTIFY, SET_FEATURES, GET_FEATURES, FORMAT_NVM = 0x02, 0x06, 0x09, 0x0A, 0x80
WRITE, READ, COMPARE, WRITE_ZEROES, WRITE_UNCORRECTABLE = 0x01, 0x02, 0x05, 0x08, 0x04
ALL = 0xFFFFFFFF

SUCCESS = 0x0000
INVALID_OPCODE_DNR = 0x4001
INVALID_FIELD_DNR = 0x4002
INVALID_NAMESPACE_DNR = 0x400B
INVALID_LOG_PAGE_DNR = 0x4109
INVALID_FORMAT_DNR = 0x410A
FEATURE_NOT_SAVEABLE_DNR = 0x410D
LBA_OUT_OF_RANGE_DNR = 0x4080


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def raw_host(tmp_path: Path) -> Iterator[FakeHost]:
    """A plain namespace of 64 4096-byte blocks on a sparse file."""
    path = tmp_path / "disk.raw"
    with path.open("wb") as f:
        f.truncate(64 * 4096)
    image = RawImage(path, 4096)
    host = FakeHost(namespace=PlainNamespace(1, image.view, 4096, allocation=image),
                    clock=Clock())
    host.enable()
    host.create_io_queues()
    yield host
    os.close(image.fd)


def log_page(host: FakeHost, lid: int, size: int, nsid: int = ALL) -> tuple[int, bytes]:
    status = host.command(0, GET_LOG_PAGE, nsid=nsid, prp1=DATA,
                          cdw10=lid | (size // 4 - 1) << 16)[5]
    return status, host.ram_read(DATA, size)


def identify_controller(host: FakeHost) -> object:
    assert host.command(0, IDENTIFY, prp1=DATA, cdw10=1)[5] == SUCCESS
    return IdentifyController.parse(host.ram_read(DATA, 4096))


# -- Identify Controller ----------------------------------------------------------------------
def test_plain_controller_advertises_its_optional_commands(raw_host: FakeHost) -> None:
    ident = identify_controller(raw_host)
    assert ident.oncs == 0x1F       # Compare, Write Unc., DSM, Write Zeroes, Save/Select
    assert ident.oacs == 0x102      # Format NVM, Doorbell Buffer Config
    assert ident.lpa == 0x06        # effects log, extended Get Log Page data
    assert ident.kas == 0           # no Keep Alive on PCIe
    assert ident.fna == 0           # format and erase per namespace, no crypto erase
    assert (ident.wctemp, ident.cctemp) == (343, 373)


def test_ocssd_controller_advertises_its_optional_commands() -> None:
    ident = identify_controller(Device().host)
    assert ident.oncs == 0x14       # DSM, Save/Select
    assert ident.oacs == 0x100      # Doorbell Buffer Config


# -- Commands Supported and Effects --------------------------------------------------------------
def effects(host: FakeHost) -> object:
    status, page = log_page(host, 0x05, 4096)
    assert status == SUCCESS
    return CommandsSupportedAndEffectsLog.parse(page)


def test_effects_of_a_plain_controller(raw_host: FakeHost) -> None:
    log = effects(raw_host)
    acs = {opc: value for opc, value in enumerate(log.acs) if value}
    assert acs == {0x00: 1, 0x01: 1, 0x02: 1, 0x04: 1, 0x05: 1, 0x06: 1, 0x08: 1, 0x09: 1,
                   0x0A: 1, 0x0C: 1, 0x7C: 1,   # Doorbell Buffer Config
                   0x80: 0x20007}   # Format NVM: CSUPP, LBCC, NCC, CSE all namespaces
    iocs = {opc: value for opc, value in enumerate(log.iocs) if value}
    assert iocs == {0x00: 1, 0x01: 3, 0x02: 1, 0x04: 3, 0x05: 1, 0x08: 3, 0x09: 3}


def test_effects_of_an_ocssd_controller() -> None:
    log = effects(Device().host)
    assert log.acs[0xE2] == 1 and log.acs[0x80] == 0
    iocs = {opc: value for opc, value in enumerate(log.iocs) if value}
    assert iocs == {0x00: 1, 0x01: 3, 0x02: 1, 0x09: 3, 0x90: 3, 0x91: 3, 0x92: 1}


def _answers(host: FakeHost, qid: int, opc: int) -> bool:
    """Whether the controller takes `opc` (anything but Invalid Opcode; a deferred
    completion counts as taken)."""
    host.submit(qid, opc, nsid=1)
    host.ctrl.process()
    done = host.completions(qid)
    return not done or done[0][5] != INVALID_OPCODE_DNR


@pytest.mark.parametrize("kind", ["plain", "ocssd"])
def test_every_opcode_is_taken_exactly_when_the_effects_log_says_so(kind: str,
                                                                   tmp_path: Path) -> None:
    host = FakeHost() if kind == "plain" else Device().host
    if kind == "plain":
        host.enable()
        host.create_io_queues()
    log = effects(host)
    for qid, table in ((0, log.acs), (1, log.iocs)):
        for opc in range(256):
            if opc in (0x00, 0x04) and qid == 0:
                continue   # deleting queue 0 is refused, but would not tell the opcode apart
            assert _answers(host, qid, opc) == bool(table[opc] & 1), (qid, hex(opc))


# -- SMART / Health -----------------------------------------------------------------------------
def smart(host: FakeHost, nsid: int = ALL) -> object:
    status, page = log_page(host, 0x02, 512, nsid)
    assert status == SUCCESS
    return SmartHealthLog.parse(page)


def test_fresh_smart_log(raw_host: FakeHost) -> None:
    log = smart(raw_host)
    assert (log.critical_warning, log.composite_temperature) == (0, 313)
    assert (log.available_spare, log.available_spare_threshold) == (100, 10)
    assert (log.data_units_read, log.data_units_written) == (0, 0)
    assert (log.host_read_commands, log.host_write_commands) == (0, 0)
    assert (log.power_cycles, log.power_on_hours, log.unsafe_shutdowns) == (0, 0, 0)


def rw(host: FakeHost, opc: int, slba: int, nlb: int, **fields: int) -> int:
    return host.command(1, opc, nsid=1, prp1=DATA, prp2=DATA + 4096, cdw10=slba,
                        cdw12=nlb - 1, **fields)[5]


def test_data_units_are_thousands_of_512_byte_units_rounded_up(raw_host: FakeHost) -> None:
    assert rw(raw_host, WRITE, 0, 1) == SUCCESS                # 8 units
    assert smart(raw_host).data_units_written == 1
    for _ in range(124):                                       # 125 x 8 = 1000 units
        assert rw(raw_host, WRITE, 0, 1) == SUCCESS
    log = smart(raw_host)
    assert (log.data_units_written, log.host_write_commands) == (1, 125)
    assert rw(raw_host, WRITE, 0, 2) == SUCCESS                # 1016 units
    log = smart(raw_host)
    assert (log.data_units_written, log.host_write_commands) == (2, 126)


def test_reads_and_compares_count_as_reads_only_when_they_succeed(raw_host: FakeHost) -> None:
    assert rw(raw_host, READ, 0, 2) == SUCCESS
    raw_host.ram_write(DATA, bytes(8192))
    assert rw(raw_host, COMPARE, 0, 2) == SUCCESS
    raw_host.ram_write(DATA, b"x")
    assert rw(raw_host, COMPARE, 0, 1) == 0x4285               # Compare Failure: not counted
    assert rw(raw_host, READ, 63, 2) == LBA_OUT_OF_RANGE_DNR   # not counted
    log = smart(raw_host)
    assert (log.host_read_commands, log.data_units_read) == (2, 1)   # 32 units
    assert (log.host_write_commands, log.data_units_written) == (0, 0)


def test_write_zeroes_and_uncorrectable_do_not_count(raw_host: FakeHost) -> None:
    assert rw(raw_host, WRITE_ZEROES, 0, 8) == SUCCESS
    assert rw(raw_host, WRITE_UNCORRECTABLE, 0, 8) == SUCCESS
    log = smart(raw_host)
    assert (log.host_write_commands, log.data_units_written) == (0, 0)


def test_ocssd_vector_commands_count() -> None:
    device = Device()
    assert device.write([lba(0, 0, 0, s) for s in range(16)])[0] == SUCCESS   # 128 units
    assert device.read([lba(0, 0, 0, s) for s in range(4)])[0] == SUCCESS     # 32 units
    log = smart(device.host)
    assert (log.host_write_commands, log.data_units_written) == (1, 1)
    assert (log.host_read_commands, log.data_units_read) == (1, 1)


def test_power_on_hours_cycles_and_unsafe_shutdowns(raw_host: FakeHost) -> None:
    clock = raw_host.ctrl.clock
    assert isinstance(clock, Clock)
    clock.now += 2 * 3600 + 3599
    assert smart(raw_host).power_on_hours == 2
    raw_host.ctrl.device_reset()                      # enabled, no shutdown: unsafe
    raw_host.restart()
    raw_host.ctrl.mmio_write(Register.CC, 4, raw_host.ctrl.regs.cc | 1 << 14)
    (request,) = raw_host.ctrl.take_sync_requests()
    raw_host.ctrl.complete_deferred(request, SUCCESS)
    raw_host.ctrl.device_reset()                      # after a completed shutdown: safe
    raw_host.ctrl.device_reset()                      # disabled: nothing to lose
    raw_host.restart()
    log = smart(raw_host)
    assert (log.power_cycles, log.unsafe_shutdowns) == (3, 1)


def test_smart_log_is_for_the_controller_only(raw_host: FakeHost) -> None:
    assert log_page(raw_host, 0x02, 512, nsid=0)[0] == SUCCESS
    assert log_page(raw_host, 0x02, 512, nsid=1)[0] == INVALID_FIELD_DNR


def test_firmware_slot_log_shows_slot_1_active(raw_host: FakeHost) -> None:
    status, page = log_page(raw_host, 0x03, 512)
    assert status == SUCCESS
    assert page[0] == 1                              # AFI: slot 1 active
    assert page[8:16] == b"0.1     "                 # FRS1: the firmware revision
    assert page[1:8] == bytes(7) and page[16:] == bytes(496)


@pytest.mark.parametrize("lid", [0x04, 0x06, 0x70, 0x80, 0xC0])
def test_unsupported_log_pages(raw_host: FakeHost, lid: int) -> None:
    assert log_page(raw_host, lid, 512)[0] == INVALID_LOG_PAGE_DNR


@pytest.mark.parametrize(("cdw11", "warning"), [
    (314, 0x00),                  # over-temperature threshold above the composite 313 K
    (313, 0x02),                  # at it: "greater than or equal to"
    (0xF << 16 | 300, 0x02),      # TMPSEL Fh: all sensors, the composite one included
    (1 << 20 | 312, 0x00),        # under-temperature threshold below 313 K
    (1 << 20 | 313, 0x02),        # at it: "less than or equal to"
])
def test_temperature_threshold_raises_the_critical_warning(raw_host: FakeHost, cdw11: int,
                                                           warning: int) -> None:
    assert smart(raw_host).critical_warning == 0x00
    assert raw_host.command(0, SET_FEATURES, cdw10=0x04, cdw11=cdw11)[5] == SUCCESS
    assert smart(raw_host).critical_warning == warning


# -- Features -------------------------------------------------------------------------------------
def get_feature(host: FakeHost, fid: int, sel: int = 0, cdw11: int = 0) -> tuple[int, int]:
    done = host.command(0, GET_FEATURES, cdw10=fid | sel << 8, cdw11=cdw11)
    return done[5], done[0]


@pytest.mark.parametrize(("fid", "cdw11", "value"), [
    (0x01, 0, 0),               # Arbitration
    (0x02, 0, 0),               # Power Management: state 0
    (0x04, 0, 343),             # Temperature Threshold: over, composite = WCTEMP
    (0x04, 1 << 20, 0),         # under
    (0x05, 0, 0),               # Error Recovery
    (0x06, 0, 1),               # Volatile Write Cache enabled
    (0x07, 0, 0x003F003F),      # Number of Queues: 64 each, 0-based
    (0x0B, 0, 0),               # Async Event Configuration
])
def test_feature_defaults(fid: int, cdw11: int, value: int) -> None:
    host = FakeHost()
    host.enable()
    for sel in (0, 1, 2):       # current, default, saved (nothing is saveable: the default)
        assert get_feature(host, fid, sel, cdw11) == (SUCCESS, value)


@pytest.mark.parametrize(("fid", "capabilities"), [
    (0x01, 0x4), (0x02, 0x4), (0x04, 0x4), (0x05, 0x6), (0x06, 0x4), (0x07, 0x4), (0x0B, 0x4),
])
def test_feature_capabilities(fid: int, capabilities: int) -> None:
    host = FakeHost()
    host.enable()
    assert get_feature(host, fid, sel=3) == (SUCCESS, capabilities)


@pytest.mark.parametrize(("fid", "cdw11", "current"), [
    (0x01, 0x00030201, 0x00030201),
    (0x02, 0x20, 0x20),         # workload hint 1 in power state 0
    (0x04, 330, 330),
    (0x06, 0, 0),
    (0x0B, 0x102, 0x102),
])
def test_set_feature_changes_current_not_default(fid: int, cdw11: int, current: int) -> None:
    host = FakeHost()
    host.enable()
    default = get_feature(host, fid, sel=1)
    assert host.command(0, SET_FEATURES, cdw10=fid, cdw11=cdw11)[5] == SUCCESS
    assert get_feature(host, fid) == (SUCCESS, current)
    assert get_feature(host, fid, sel=1) == default
    assert get_feature(host, fid, sel=2) == default


@pytest.mark.parametrize(("cdw10", "cdw11", "status"), [
    (0x03, 0, INVALID_FIELD_DNR),             # LBA Range Type: not supported
    (0x0F, 0, INVALID_FIELD_DNR),             # Keep Alive Timer: KAS is 0
    (0x02, 1, INVALID_FIELD_DNR),             # power state 1: NPSS is 0
    (0x02, 3 << 5, INVALID_FIELD_DNR),        # workload hint 3: reserved
    (0x04, 1 << 16 | 330, INVALID_FIELD_DNR),  # TMPSEL 1: no such sensor
    (0x04, 2 << 20 | 330, INVALID_FIELD_DNR),  # THSEL 2: reserved
    (0x06 | 1 << 31, 1, FEATURE_NOT_SAVEABLE_DNR),
])
def test_set_feature_errors(cdw10: int, cdw11: int, status: int) -> None:
    host = FakeHost()
    host.enable()
    assert host.command(0, SET_FEATURES, cdw10=cdw10, cdw11=cdw11)[5] == status


@pytest.mark.parametrize(("fid", "sel", "cdw11"), [
    (0x0F, 0, 0), (0x03, 0, 0), (0x06, 4, 0), (0x06, 7, 0),
    (0x04, 0, 0xF << 16),       # TMPSEL Fh is for Set Features only
    (0x04, 0, 3 << 20),
])
def test_get_feature_errors(fid: int, sel: int, cdw11: int) -> None:
    host = FakeHost()
    host.enable()
    assert get_feature(host, fid, sel, cdw11)[0] == INVALID_FIELD_DNR


def test_keep_alive_command_is_not_offered() -> None:
    host = FakeHost()
    host.enable()
    assert host.command(0, 0x18)[5] == INVALID_OPCODE_DNR


# -- Format NVM -----------------------------------------------------------------------------------
def identify_namespace(host: FakeHost) -> object:
    assert host.command(0, IDENTIFY, nsid=1, prp1=DATA, cdw10=0)[5] == SUCCESS
    return IdentifyNamespace.parse(host.ram_read(DATA, 4096))


@pytest.mark.parametrize(("nsid", "cdw10", "status"), [
    (1, 8, INVALID_FORMAT_DNR),               # LBAF 8: only 0-7 exist
    (1, 15, INVALID_FORMAT_DNR),
    (1, 4 | 1 << 5, INVALID_FORMAT_DNR),      # PI type 1: no protection information
    (1, 4 | 2 << 9, INVALID_FIELD_DNR),       # SES 2: no cryptographic erase
    (1, 4 | 7 << 9, INVALID_FIELD_DNR),       # SES 7: reserved
    (2, 4, INVALID_NAMESPACE_DNR),
    (0, 4, INVALID_NAMESPACE_DNR),
])
def test_format_errors_change_nothing(raw_host: FakeHost, nsid: int, cdw10: int,
                                      status: int) -> None:
    assert raw_host.command(0, FORMAT_NVM, nsid=nsid, cdw10=cdw10)[5] == status
    ident = identify_namespace(raw_host)
    assert (ident.flbas, ident.nsze) == (4, 64)


def test_format_switches_the_lba_format(raw_host: FakeHost) -> None:
    raw_host.ram_write(DATA, b"w" * 4096)
    assert rw(raw_host, WRITE, 0, 1) == SUCCESS
    assert raw_host.command(0, FORMAT_NVM, nsid=1, cdw10=1)[5] == SUCCESS   # 512 + 8
    ident = identify_namespace(raw_host)
    assert (ident.flbas, ident.nsze) == (1, 262144 // 520)
    assert rw(raw_host, READ, 0, 1, mptr=DATA + 0x8000) == SUCCESS          # no erase: kept
    assert raw_host.ram_read(DATA, 512) == b"w" * 512
    assert rw(raw_host, READ, 503, 1, mptr=DATA + 0x8000) == SUCCESS        # the last block
    assert rw(raw_host, READ, 504, 1, mptr=DATA + 0x8000) == LBA_OUT_OF_RANGE_DNR


def test_format_with_mset_and_user_data_erase(raw_host: FakeHost) -> None:
    raw_host.ram_write(DATA, b"w" * 4096)
    assert rw(raw_host, WRITE, 0, 1) == SUCCESS
    assert rw(raw_host, WRITE_UNCORRECTABLE, 5, 1) == SUCCESS
    assert raw_host.command(0, FORMAT_NVM, nsid=ALL, cdw10=6 | 1 << 4 | 1 << 9)[5] == SUCCESS
    ident = identify_namespace(raw_host)
    assert (ident.flbas, ident.nsze) == (0x16, 262144 // 4112)
    raw_host.ram_write(DATA, b"\xff" * 4112)
    assert rw(raw_host, READ, 0, 1) == SUCCESS                              # 4112 bytes
    assert raw_host.ram_read(DATA, 4112) == bytes(4112)
    assert rw(raw_host, READ, 5, 1) == SUCCESS                              # no longer bad
    assert raw_host.command(0, SET_FEATURES, cdw10=0x05, cdw11=1 << 16)[5] == SUCCESS
    assert rw(raw_host, READ, 0, 1) == 0x4287                               # erased: holes


def test_format_is_for_plain_namespaces_only() -> None:
    assert Device().host.command(0, FORMAT_NVM, nsid=1, cdw10=0)[5] == INVALID_OPCODE_DNR


# -- the declarations against the spec's byte offsets ------------------------------------------
def test_smart_health_log_layout() -> None:
    page = SmartHealthLog.parse(bytes(512))
    page.update(dict(critical_warning=0x1F, composite_temperature=0x0102, available_spare=3,
                     data_units_read=0x11, data_units_written=0x12, host_read_commands=0x13,
                     host_write_commands=0x14, power_cycles=0x15, power_on_hours=0x16,
                     unsafe_shutdowns=0x17, warning_composite_temperature_time=0x18))
    raw = SmartHealthLog.build(page)
    assert len(raw) == 512
    assert raw[0:4] == b"\x1f\x02\x01\x03"                 # bytes 0, 2:1, 3
    offsets = {32: 0x11, 48: 0x12, 64: 0x13, 80: 0x14, 112: 0x15, 128: 0x16, 144: 0x17}
    for offset, value in offsets.items():                  # 16-byte little-endian counters
        assert raw[offset:offset + 16] == bytes([value]) + bytes(15), offset
    assert raw[192:196] == b"\x18\x00\x00\x00"


def test_effects_log_layout() -> None:
    page = CommandsSupportedAndEffectsLog.parse(bytes(4096))
    page.acs[0x80] = 0x00020007
    page.iocs[0x09] = 0x3
    raw = CommandsSupportedAndEffectsLog.build(page)
    assert len(raw) == 4096
    assert raw[0x80 * 4:0x80 * 4 + 4] == b"\x07\x00\x02\x00"     # ACS: bytes 1023:0
    assert raw[1024 + 0x09 * 4:1024 + 0x09 * 4 + 4] == b"\x03\x00\x00\x00"  # IOCS: 2047:1024


def test_log_page_longer_than_mdts_is_refused(raw_host: FakeHost) -> None:
    # NUMDU FFFFh: 16 GiB asked for; MDTS allows 512 KiB.
    done = raw_host.command(0, GET_LOG_PAGE, nsid=ALL, prp1=DATA, cdw10=0x02 | 0xFFFF << 16,
                            cdw11=0xFFFF)
    assert done[5] == INVALID_FIELD_DNR
