"""A sparse image on a full file system: the write that finds no space fails with
Capacity Exceeded | DNR, before any byte lands; the process lives, earlier data stays.

The file system is a small tmpfs this test mounts (the machine's tests run as root);
where mounting is not allowed the test is skipped and says so.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.media.ocssd12_image import Ocssd12Image
from ocssd_vfu.media.ocssd_image import OcssdImage
from ocssd_vfu.media.raw import RawImage
from ocssd_vfu.nvme.command import Command
from ocssd_vfu.ocssd.namespace import OcssdNamespace
from ocssd_vfu.ocssd12.namespace import Ocssd12Namespace
from ocssd_vfu.plain.namespace import PlainNamespace
from tests.conftest import RunCli, mounted_tmpfs
from tests.unit.fakehost import DATA, FakeHost

CAPACITY_EXCEEDED_DNR = 0x4081


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs, unmounted afterwards."""
    with mounted_tmpfs(tmp_path, "6m") as mount:
        yield mount


@pytest.mark.parametrize("fast_path", [True, False])
def test_plain_writes_past_the_free_space_fail_with_capacity_exceeded(
        small_fs: Path, fast_path: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeHost, "fast_path", fast_path)
    path = small_fs / "disk.raw"
    with path.open("wb") as f:
        f.truncate(64 << 20)   # 16384 blocks of 4 KiB, on 6 MiB
    image = RawImage(path, 4096)
    try:
        host = FakeHost(namespace=PlainNamespace(1, image.view, 4096, allocation=image))
        host.enable()
        host.create_io_queues()
        statuses = []
        for lba in range(0, 2048, 32):   # 128 KiB writes, 8 MiB in all
            host.ram_write(DATA, bytes([lba % 251 + 1]) * 0x20000)
            pages = struct.pack("<31Q", *range(DATA + 0x1000, DATA + 0x20000, 0x1000))
            host.ram_write(DATA + 0x30000, pages)
            statuses.append(host.command(1, 0x01, nsid=1, prp1=DATA, prp2=DATA + 0x30000,
                                         cdw10=lba, cdw12=31)[5])
        ok = statuses.index(CAPACITY_EXCEEDED_DNR)
        assert 30 <= ok <= 48 and set(statuses[ok:]) == {CAPACITY_EXCEEDED_DNR}, statuses
        # What was written before reads back.
        assert host.command(1, 0x02, nsid=1, prp1=DATA, cdw10=32, cdw12=0)[5] == 0
        assert host.ram_read(DATA, 4096) == bytes([33]) * 4096
    finally:
        host.ctrl.release_native()  # C lets go of the image before it closes
        image.close()


def test_an_ocssd_chunk_that_cannot_be_reserved_stays_free(small_fs: Path,
                                                          ocssd_vfu: RunCli) -> None:
    path = small_fs / "ocssd.img"
    assert ocssd_vfu("image", "create", str(path), "--num-grp", "2", "--num-pu", "2",
                     "--num-chk", "16", "--num-sec", "1024").status == 0
    image = OcssdImage(path)
    try:
        (layout,) = image.description.layouts()
        ns = OcssdNamespace(1, image.description.geometry, *image.namespace_views(layout),
                            reserve=image.chunk_reserver(layout))
        memory = GuestMemory()
        ram = bytearray(0x20000)
        memory.add(0x10000, ram)
        ram[0x2000:0x2018] = struct.pack("<3Q", 0x21000, 0x22000, 0x23000)  # PRP list
        ram[0x10000:0x14000] = b"\x5A" * 0x4000
        write = Command(0x91, 0, 1, 1, 0, 0, 0, 0x20000, 0x12000, 0, 0, 3, 0, 0, 0)

        def sectors(chunk: int, first: int) -> list[int]:  # ws_min is 4
            return [chunk << 10 | sec for sec in range(first, first + 4)]
        assert ns.write(memory, 4096, sectors(0, 0), write) == (0, 0)  # chunk 0: 4 MiB
        assert ns.write(memory, 4096, sectors(1, 0), write) == (CAPACITY_EXCEEDED_DNR, 0xF)
        assert ns.chunks.state[1] == 1 and ns.chunks.wp[1] == 0         # still free
        assert ns.write(memory, 4096, sectors(0, 4), write) == (0, 0)  # chunk 0 goes on
        assert bytes(ns.data[:8]) == b"\x5A" * 8
    finally:
        image.close()


def test_ocssd12_page_programs_past_the_free_space_fail_before_landing(
        small_fs: Path, ocssd_vfu: RunCli) -> None:
    path = small_fs / "ocssd12.img"
    assert ocssd_vfu("image", "create", "--spec", "1.2", str(path), "--num-ch", "2",
                     "--num-lun", "2", "--num-pln", "2", "--num-blk", "12", "--num-pg", "64",
                     "--fpg-sz", "8192").status == 0
    image = Ocssd12Image(path)
    try:
        (layout,) = image.description.layouts()
        ns = Ocssd12Namespace(1, image.description.geometry, *image.namespace_views(layout),
                              reserve=image.sector_reserver(layout))
        host = FakeHost(namespace=ns)
        host.enable()
        host.create_io_queues()
        free = os.statvfs(small_fs)
        filler = small_fs / "filler"
        filler.write_bytes(bytes(free.f_bavail * free.f_frsize - 0x10000))  # 64 KiB left
        def program(pg: int) -> int:   # both sectors of page pg, plane 0: 8 KiB + OOB
            host.ram_write(DATA - 0x1000, struct.pack("<2Q", pg << 2, pg << 2 | 1))
            host.ram_write(DATA, bytes([pg + 1]) * 0x2000)
            return host.command(1, 0x91, nsid=1, prp1=DATA, prp2=DATA + 0x1000,
                                cdw10=DATA - 0x1000, cdw12=1)[5]
        ok = 0
        while (status := program(ok)) == 0:
            ok += 1
        assert status == CAPACITY_EXCEEDED_DNR and 4 <= ok <= 8, (ok, hex(status))
        assert program(ok) == CAPACITY_EXCEEDED_DNR        # the same page again: still full
        assert ns.blocks.pages[0] == ok                     # the failed programs left no page
        assert bytes(ns.data[:8]) == b"\x01" * 8
    finally:
        host.ctrl.release_native()  # C lets go of the image before it closes
        image.close()
