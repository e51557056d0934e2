"""The flash timing model with a fake clock: every `now` is a literal, every expected time
worked out by hand.

Parameters unless a test says otherwise: tRD 50 µs, tPROG 500 µs, tBERS 1 ms, 4096-byte
sectors, 4 sectors per page, 800 MB/s channels (one sector crosses in 5,120 ns, a page of
4 in 20,480 ns), a write buffer of 8 sectors per PU, 2 channels x 2 PUs (PUs 0 and 1 share
channel 0, PUs 2 and 3 channel 1).
"""

from __future__ import annotations

import dataclasses

import pytest

from ocssd_vfu.timing.model import Channel, FlashModel, FlashPage, program_units
from ocssd_vfu.timing.parameters import (
    Layout,
    TimingError,
    TimingParameters,
    default_buffer_sectors,
    ocssd12_cache_units,
)

PARAMETERS = TimingParameters(read_ns=50_000, program_ns=500_000, erase_ns=1_000_000,
                              sector_bytes=4096, page_sectors=4, buffer_sectors_per_pu=8)
LAYOUT = Layout(channels=2, pus_per_channel=2)


def model(**changes: int) -> FlashModel:
    return FlashModel(dataclasses.replace(PARAMETERS, **changes), LAYOUT)


def page(block: int, number: int = 0, plane: int = 0) -> FlashPage:
    return FlashPage(block, number, plane)


# -- parameters -----------------------------------------------------------------------------
def test_transfer_time_rounds_up_to_whole_nanoseconds() -> None:
    assert PARAMETERS.transfer_ns(1) == 5_120
    assert PARAMETERS.transfer_ns(4) == 20_480
    assert dataclasses.replace(PARAMETERS, channel_mbps=333).transfer_ns(1) == 12_301


def test_default_buffer_is_the_cache_window_plus_one_write_unit() -> None:
    assert default_buffer_sectors(mw_cunits=24, ws_opt=8) == 32   # qemu-nvme's defaults
    assert default_buffer_sectors(mw_cunits=0, ws_opt=8) == 16    # two units, as NVMeVirt
    assert ocssd12_cache_units(sec_per_pg=4) == 32
    assert default_buffer_sectors(ocssd12_cache_units(4), ws_opt=8) == 40


@pytest.mark.parametrize(("changes", "message"), [
    ({"read_ns": -1}, "read_ns=-1: must not be negative"),
    ({"channel_mbps": 0}, "channel_mbps=0: must be at least 1"),
    ({"buffer_sectors_per_pu": 3}, "buffer_sectors_per_pu=3: must be 0 or hold one program "
                                   "unit of all planes (4 sectors)"),
    ({"buffer_sectors_per_pu": 4, "planes": 2}, "buffer_sectors_per_pu=4: must be 0 or hold "
                                                "one program unit of all planes (8 sectors)"),
])
def test_impossible_parameters_are_named(changes: dict[str, int], message: str) -> None:
    with pytest.raises(TimingError) as excinfo:
        dataclasses.replace(PARAMETERS, **changes)
    assert str(excinfo.value) == message


def test_layout_numbers_pus_channel_after_channel() -> None:
    assert LAYOUT.pus == 4
    assert [LAYOUT.channel_of(pu) for pu in range(4)] == [0, 0, 1, 1]


# -- reads ----------------------------------------------------------------------------------
def test_reads_on_one_pu_queue_behind_each_other() -> None:
    m = model()
    assert m.read(0, 0, [(page(0), 1)]) == 55_120            # 50,000 sensing + 5,120 bus
    assert m.read(0, 0, [(page(1), 1)]) == 110_240           # starts when the first ends
    assert m.read(200_000, 0, [(page(2), 1)]) == 255_120    # the PU is idle again


def test_reads_on_pus_of_different_channels_overlap() -> None:
    m = model()
    assert m.read(0, 0, [(page(0), 1)]) == 55_120
    assert m.read(0, 2, [(page(0), 1)]) == 55_120


def test_transfers_on_one_channel_serialise() -> None:
    m = model()
    assert m.read(0, 0, [(page(0), 4)]) == 70_480    # bus 50,000-70,480
    assert m.read(0, 1, [(page(0), 4)]) == 90_960    # sensed at 50,000, bus free at 70,480
    assert m.read(0, 2, [(page(0), 4)]) == 70_480    # the other channel is free


def test_a_read_of_several_pages_on_one_pu_senses_them_in_turn() -> None:
    m = model()
    # page 1 is sensed after page 0's sectors have left the PU's data register
    assert m.read(0, 0, [(page(0, 0), 4), (page(0, 1), 4)]) == 140_960


def test_a_transfer_fits_into_an_idle_gap_before_a_later_reservation() -> None:
    m = model()
    assert m.erase(0, 0) == 1_000_000
    assert m.program(0, 0, [(page(5), 4)]) == 0      # programs at 1,000,000: bus to 1,020,480
    assert m.read(0, 1, [(page(0), 1)]) == 55_120    # same channel, long before that


def test_a_channel_reserves_the_first_gap_long_enough() -> None:
    channel = Channel()
    assert channel.reserve(100, 50) == 100                  # 100-150
    assert channel.reserve(300, 50) == 300                  # 300-350
    assert channel.reserve(120, 100) == 150                 # fits 150-250
    assert channel.reserve(200, 60) == 350                  # 250-300 is too short
    assert channel.reserve(0, 100) == 0                     # 0-100 before everything
    channel.forget_before(250)
    assert channel.intervals == [(300, 350), (350, 410)]


# -- erases ---------------------------------------------------------------------------------
def test_erases_queue_per_pu_and_use_no_channel() -> None:
    m = model()
    assert m.erase(0, 0) == 1_000_000
    assert m.erase(0, 0) == 2_000_000
    assert m.erase(0, 1) == 1_000_000
    assert m.read(0, 1, [(page(0), 1)]) == 1_055_120   # behind the erase on PU 1


# -- the write buffer -----------------------------------------------------------------------
def test_a_buffered_write_completes_at_once_and_programs_in_the_background() -> None:
    m = model()
    assert m.program(0, 0, [(page(0, 0), 4)]) == 0
    assert m.buffered_sectors(0, 0) == 4
    # the PU is busy: bus 0-20,480, program to 520,480; a read of another page waits
    assert m.read(10_000, 0, [(page(1), 1)]) == 575_600
    assert m.buffered_sectors(0, 520_480) == 0


def test_a_write_waits_while_the_buffer_is_full() -> None:
    m = model()
    assert m.program(0, 0, [(page(0, 0), 4)]) == 0          # programmed 0 - 520,480
    assert m.program(1_000, 0, [(page(0, 1), 4)]) == 1_000  # programmed 520,480 - 1,040,960
    assert m.program(2_000, 0, [(page(0, 2), 4)]) == 520_480  # space frees at 520,480
    assert m.flush(3_000) == 1_561_440                      # the third: 1,040,960 + 520,480


def test_writes_are_admitted_in_order_on_one_pu() -> None:
    m = model()
    m.program(0, 0, [(page(0, 0), 4)])
    m.program(0, 0, [(page(0, 1), 4)])
    assert m.program(0, 0, [(page(0, 2), 4)]) == 520_480
    assert m.program(0, 0, [(page(0, 3), 4)]) == 1_040_960  # behind the waiting one
    assert m.program(0, 1, [(page(0, 0), 4)]) == 0          # PU 1 has its own buffer


def test_a_read_of_data_still_in_the_buffer_costs_nothing() -> None:
    m = model()
    m.program(0, 0, [(page(0, 0), 4)])
    assert m.read(10_000, 0, [(page(0, 0), 1)]) == 10_000
    assert m.read(520_479, 0, [(page(0, 0), 4)]) == 520_479
    # programmed at 520,480: the next read senses the page
    assert m.read(600_000, 0, [(page(0, 0), 1)]) == 655_120


def test_a_read_mixing_buffered_and_programmed_pages_senses_only_the_programmed() -> None:
    m = model()
    m.program(0, 0, [(page(0, 0), 4)])
    assert m.read(10_000, 0, [(page(0, 0), 4), (page(7, 0), 1)]) == 575_600


def test_a_partly_filled_unit_waits_for_flush() -> None:
    m = model()
    assert m.program(0, 0, [(page(0, 0), 2)]) == 0
    assert m.read(50, 0, [(page(3), 1)]) == 55_170           # nothing is programming
    assert m.program(60, 0, [(page(0, 0), 1)]) == 60          # still 3 of 4
    # flush at 100: the PU is busy with the read until 55,170; then the padded unit
    assert m.flush(100) == 575_650
    assert m.flush(600_000) == 600_000                        # nothing left


def test_a_unit_filled_by_two_writes_programs_when_full() -> None:
    m = model()
    assert m.program(0, 0, [(page(0, 0), 2)]) == 0
    assert m.program(1_000, 0, [(page(0, 0), 2)]) == 1_000
    assert m.flush(2_000) == 521_480                          # 1,000 + 20,480 + 500,000


def test_partly_filled_units_that_fill_the_buffer_are_programmed_oldest_first() -> None:
    m = model()
    for block in range(4):
        assert m.program(0, 0, [(page(block), 2)]) == 0
    # full of partial units: block 0's is programmed padded at 0, its space frees at 520,480
    assert m.program(0, 0, [(page(4), 2)]) == 520_480
    assert m.read(520_480, 0, [(page(0), 1)]) == 575_600     # no longer buffered
    assert m.read(520_480, 0, [(page(1), 1)]) == 520_480     # still buffered


def test_without_a_buffer_a_write_completes_when_programmed() -> None:
    m = model(buffer_sectors_per_pu=0)
    assert m.program(0, 0, [(page(0, 0), 4), (page(0, 1), 4)]) == 1_040_960
    assert m.flush(0) == 0


def test_flush_waits_for_every_pu() -> None:
    m = model()
    m.program(0, 0, [(page(0, 0), 4)])
    m.program(0, 3, [(page(0, 0), 4), (page(0, 1), 2)])
    # PU 3: unit 0 to 520,480; the half unit programs padded from 520,480 to 1,040,960
    assert m.flush(10) == 1_040_960


# -- OCSSD 1.2 planes -----------------------------------------------------------------------
PLANES = dict(page_sectors=2, planes=2, buffer_sectors_per_pu=0)   # 2 sectors a plane page


def test_program_units_group_the_planes_of_a_page_only_in_multi_plane_mode() -> None:
    pages = [(page(0, 0, 0), 2), (page(0, 0, 1), 2), (page(0, 1, 0), 2)]
    assert program_units(pages, multi_plane=True) == {
        (page(0, 0, 0), page(0, 0, 1)): 4, (page(0, 1, 0),): 2}
    assert program_units(pages, multi_plane=False) == {
        (page(0, 0, 0),): 2, (page(0, 0, 1),): 2, (page(0, 1, 0),): 2}


def test_a_multi_plane_program_covers_its_planes_in_one_tprog() -> None:
    both = [(page(0, 0, 0), 2), (page(0, 0, 1), 2)]
    assert model(**PLANES).program(0, 0, both, multi_plane=True) == 520_480
    assert model(**PLANES).program(0, 0, both) == 1_020_480   # 2 x (10,240 + 500,000)


def test_a_multi_plane_read_senses_its_planes_once() -> None:
    both = [(page(0, 0, 0), 2), (page(0, 0, 1), 2)]
    assert model(**PLANES).read(0, 0, both, multi_plane=True) == 70_480
    assert model(**PLANES).read(0, 0, both) == 120_480        # 2 x (50,000 + 10,240)


def test_a_buffered_multi_plane_unit_needs_all_its_planes() -> None:
    m = model(**dict(PLANES, buffer_sectors_per_pu=8))
    assert m.program(0, 0, [(page(0, 0, 0), 2), (page(0, 0, 1), 2)], multi_plane=True) == 0
    assert m.read(1_000, 0, [(page(0, 0, 1), 2)]) == 1_000     # served from the buffer
    assert m.flush(1_000) == 520_480


def test_each_pu_adds_up_its_busy_time() -> None:
    flash = model()
    # PU 0: sense 50 µs, then 2 sectors cross (10,240 ns); then an erase of 1 ms after it.
    assert flash.read(0, 0, [(page(0), 2)]) == 60_240
    assert flash.pus[0].busy_ns == 60_240
    assert flash.erase(0, 0) == 1_060_240
    assert flash.pus[0].busy_ns == 1_060_240
    # PU 1 shares channel 0: its page crosses in the gap before PU 0's transfer, then programs.
    assert flash.program(0, 1, [(page(0), 4)]) == 0
    assert flash.pus[1].busy_until == 520_480
    assert flash.pus[1].busy_ns == 520_480
    # Waiting for a busy PU is not busy time: PU 1 is free again at 520,480.
    flash.program(100_000, 1, [(page(0, 1), 4)])
    assert flash.pus[1].busy_ns == 1_040_960
    assert flash.pus[2].busy_ns == flash.pus[3].busy_ns == 0
