"""`image plot`: the state map's cells have the colours of the chunks' states."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

from ocssd_vfu.cli import main
from ocssd_vfu.geometry.ocssd12 import Ocssd12Geometry
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.imagetool.plot import PanelBox, grid_of, plot
from ocssd_vfu.media import ocssd12_image
from ocssd_vfu.media.ocssd_image import OcssdImage, create_image
from ocssd_vfu.ocssd.chunks import CLOSED, OFFLINE, OPEN, SEQUENTIAL, ChunkTable
from ocssd_vfu.ocssd12 import bad_blocks

COLOURS = {(0xD9, 0xD9, 0xD9): "FREE", (0xFF, 0xBF, 0x00): "OPEN",
           (0x1F, 0x77, 0xB4): "CLOSED", (0xD6, 0x27, 0x28): "OFFLINE"}


def cell_states(png: Path, box: PanelBox) -> list[list[str]]:
    """The state colour at the centre of every cell of the state map."""
    pixels = plt.imread(png)
    cell_w = (box.right - box.left) / box.columns
    cell_h = (box.bottom - box.top) / box.rows
    states = []
    for row in range(box.rows):
        y = int(box.top + (row + 0.5) * cell_h)
        line = []
        for column in range(box.columns):
            x = int(box.left + (column + 0.5) * cell_w)
            rgb = tuple(int(round(channel * 255)) for channel in pixels[y, x][:3])
            line.append(COLOURS.get(rgb, f"unexpected colour {rgb}"))
        states.append(line)
    return states


def test_state_map_pixels_match_the_chunks(tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    g = OcssdGeometry(num_grp=2, num_pu=3, num_chk=6, num_sec=16, ws_min=4, ws_opt=8,
                      mw_cunits=8)
    create_image(image, g)
    served = OcssdImage(image)
    table = ChunkTable(served.namespace_views(served.description.layouts()[0])[0], g)
    for index, state, wp in ((1, OPEN, 8), (7, OPEN, 4), (2, CLOSED, 16), (20, CLOSED, 16),
                             (33, CLOSED, 16), (35, OFFLINE, 0)):
        table.set(index, state, SEQUENTIAL, wp, 3)
    served.sync()
    served.close()
    png = tmp_path / "small.png"
    box = plot(grid_of(image), png)
    states = cell_states(png, box)
    assert Counter(s for row in states for s in row) == {
        "FREE": 30, "OPEN": 2, "CLOSED": 3, "OFFLINE": 1}
    assert states[0] == ["FREE", "OPEN", "CLOSED", "FREE", "FREE", "FREE"]
    assert states[5] == ["FREE", "FREE", "FREE", "CLOSED", "FREE", "OFFLINE"]


def test_a_12_image_shows_its_bad_blocks_offline(tmp_path: Path) -> None:
    image = tmp_path / "small12.img"
    g = Ocssd12Geometry(num_ch=2, num_lun=2, num_pln=2, num_blk=12, num_pg=8)
    table = bad_blocks.bad_block_table(g, bad_blocks.generated_bad_blocks(g, 10))
    ocssd12_image.create_image(image, g, table)
    png = tmp_path / "small12.png"
    assert main(["image", "plot", str(image), "-o", str(png)]) == 0
    states = cell_states(png, plot(grid_of(image), tmp_path / "again.png"))
    # Every 10th of the 96 plane blocks is factory bad: entries 9, 19, ... 89, 9 blocks.
    assert Counter(s for row in states for s in row) == {"FREE": 39, "OFFLINE": 9}
