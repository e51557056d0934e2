"""The FTL on real image files through the 2.0 and 1.2 adapters: format, write,
drop everything without a shutdown (a SIGKILL leaves the mmap'd bytes), open the
image again and recover; `image info` still finds nothing wrong.

Both geometries have the shape of test_ftl.py's layout: 64 chunks of 32 sectors of
4096 + 16 bytes, ws_min 4 (1.2: 2 x 2 x 16 blocks of 8 pages x 2 planes x 2
sectors), so the same placements hold: blocks 0-3 go to chunk 2, 4-7 to chunk 32.
"""

from __future__ import annotations

from pathlib import Path

from ocssd_vfu.ftl.core import Ftl
from ocssd_vfu.ftl.media import Ocssd12Flash, Ocssd20Flash
from ocssd_vfu.ftl.recovery import open_ftl
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.imagetool import report12
from ocssd_vfu.imagetool import report20 as report
from ocssd_vfu.media import ocssd12_image, ocssd_image
from ocssd_vfu.ocssd.chunks import OPEN, RANDOM
from ocssd_vfu.ocssd.faults import ocssd20_space
from ocssd_vfu.openchannel.faults import Fault, FaultBook
from ocssd_vfu.spec.ocssd import ChunkState
from tests.unit.test_ftl import OPTIONS, ZERO, block, blocks

GEOMETRY_20 = OcssdGeometry(num_grp=2, num_pu=2, num_chk=16, num_sec=32, mw_cunits=8)
GEOMETRY_12 = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=16, num_pg=8,
                              fpg_sz=8192)


def open_20(path: Path, faults: FaultBook | None = None) -> tuple[ocssd_image.OcssdImage,
                                                                 Ocssd20Flash]:
    image = ocssd_image.OcssdImage(path)
    layout = image.description.layouts()[0]
    return image, Ocssd20Flash(layout.geometry, *image.namespace_views(layout), faults)


def open_12(path: Path) -> tuple[ocssd12_image.Ocssd12Image, Ocssd12Flash]:
    image = ocssd12_image.Ocssd12Image(path)
    layout = image.description.layouts()[0]
    return image, Ocssd12Flash(layout.geometry, *image.namespace_views(layout))


def test_an_ocssd20_image_keeps_the_ftl_across_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "ftl20.img"
    ocssd_image.create_image(path, GEOMETRY_20)
    image, flash = open_20(path)
    ftl = Ftl.format(flash, OPTIONS)
    assert ftl.logical_blocks == 1561
    ftl.write(0, blocks(0, 6))            # chunk 2 programmed, 2 sectors staged in chunk 32
    ftl.deallocate([(1, 1)])
    assert (flash.table.state[2], flash.table.wp[2], flash.table.wp[32]) == \
        (ChunkState.OPEN, 4, 0)
    del ftl, flash
    image.close()                         # only the mapping goes; nothing is shut down
    image, flash = open_20(path)
    recovered = open_ftl(flash)
    assert recovered.read(0, 6) == block(0) + ZERO + blocks(2, 4)
    assert flash.table.wp[32] == 4        # the staged unit, programmed by the recovery
    recovered.shutdown()
    image.close()
    assert report.inspect(path).problems == []


def test_an_ocssd20_program_failure_closes_the_chunk_early(tmp_path: Path) -> None:
    path = tmp_path / "ftl20.img"
    ocssd_image.create_image(path, GEOMETRY_20)
    book = FaultBook(ocssd20_space(GEOMETRY_20))
    book.add(Fault("write", GEOMETRY_20.chunk_position(2), (4,)))
    image, flash = open_20(path, book)
    ftl = Ftl.format(flash, OPTIONS)
    ftl.write(0, blocks(0, 20))           # chunk 2's second unit fails
    assert (flash.table.state[2], flash.table.wp[2]) == (ChunkState.CLOSED, 4)
    image.close()
    image, flash = open_20(path)
    assert open_ftl(flash).read(0, 20) == blocks(0, 20)
    image.close()


def test_a_random_write_chunk_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ftl20.img"
    ocssd_image.create_image(path, GEOMETRY_20)
    image, flash = open_20(path)
    flash.table.set(5, OPEN, RANDOM, 8, 0)     # a --chunk-state "type=W_RAN" line
    ftl = Ftl.format(flash, OPTIONS)
    assert ftl.logical_blocks == 1536          # (63 - 3) * 32 * 80 / 100
    assert (flash.table.state[5], flash.table.wp[5]) == (OPEN, 8)
    image.close()


def test_an_ocssd12_image_keeps_the_ftl_across_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "ftl12.img"
    ocssd12_image.create_image(path, GEOMETRY_12)
    image, flash = open_12(path)
    assert (flash.layout.chunks, flash.layout.clba, flash.layout.ws_min) == (64, 32, 4)
    ftl = Ftl.format(flash, OPTIONS)
    ftl.write(0, blocks(0, 6))
    # block 2 (plane blocks 4, 5): one page (a unit is a page on both planes)
    assert (flash.blocks.pages[4], flash.blocks.pages[5], flash.blocks.pages[64]) == (1, 1, 0)
    image.close()
    image, flash = open_12(path)
    recovered = open_ftl(flash)
    assert recovered.read(0, 6) == blocks(0, 6)
    assert flash.blocks.pages[64] == 1    # block 32: the staged page, programmed
    image.close()
    assert report12.inspect(path).problems == []
