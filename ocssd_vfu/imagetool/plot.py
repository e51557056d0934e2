"""`ocssd-vfu image plot IMAGE -o FILE.png`: the chunk-state map and the wear heat map.

One row per parallel unit (2.0: PU within its group; 1.2: LUN within its channel), one
column per chunk (1.2: block), groups (channels) stacked with a line between them, so
even 256 groups stay one picture; cells keep at least one pixel and at most
MAX_CELL_PIXELS. Left: state colours; right: wear (WLI for 2.0, the highest erase
count of a block's planes for 1.2). Read with the `image info` code, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ocssd_vfu.imagetool import report12
from ocssd_vfu.imagetool import report20 as report
from ocssd_vfu.media import ocssd12_image
from ocssd_vfu.media.raw import ImageError

STATE_COLOURS = {"FREE": "#d9d9d9", "OPEN": "#ffbf00", "CLOSED": "#1f77b4",
                 "OFFLINE": "#d62728", "UNKNOWN": "#000000"}
STATE_ORDER = ("FREE", "OPEN", "CLOSED", "OFFLINE", "UNKNOWN")
MAX_CELL_PIXELS = 16
PANEL_PIXELS = (720, 900)      # width, height the cells of one panel aim for at most
DPI = 100


@dataclass(frozen=True)
class Grid:
    """What is drawn: per row (a PU), per column (a chunk), a state and a wear value."""

    title: str
    group_name: str             # "grp" or "ch"
    unit_name: str              # "PU" or "LUN"
    column_name: str            # "chunk" or "block"
    groups: int
    rows_per_group: int
    states: list[list[str]]     # [row][column], rows group after group
    wear: list[list[int]]
    wear_name: str


@dataclass(frozen=True)
class PanelBox:
    """Where the state map's cells lie in the PNG, in pixels from its top-left corner."""

    left: float
    top: float
    right: float
    bottom: float
    rows: int
    columns: int


def grid_of(path: Path, nsid: int = 1) -> Grid:
    if ocssd12_image.spec_version(path) == ocssd12_image.SPEC_12:
        return _grid_12(path, nsid)
    return _grid_20(path, nsid)


def _grid_20(path: Path, nsid: int) -> Grid:
    found = report.inspect(path)
    g = found.description.geometry
    chunks = [c for c in found.chunks if c.nsid == nsid]
    if not chunks:
        raise ImageError(f"{path}: no namespace {nsid}")
    rows = g.num_grp * g.num_pu
    states = [["FREE"] * g.num_chk for _ in range(rows)]
    wear = [[0] * g.num_chk for _ in range(rows)]
    for c in chunks:
        states[c.grp * g.num_pu + c.pu][c.chk] = c.state_name
        wear[c.grp * g.num_pu + c.pu][c.chk] = c.wli
    title = (f"{path.name}: OCSSD 2.0, namespace {nsid}: {g.num_grp} groups x {g.num_pu} PUs "
             f"x {g.num_chk} chunks x {g.num_sec} sectors")
    return Grid(title, "grp", "PU", "chunk", g.num_grp, g.num_pu, states, wear, "WLI")


def _grid_12(path: Path, nsid: int) -> Grid:
    found = report12.inspect(path)
    g = found.description.geometry
    blocks = [b for b in found.blocks if b.nsid == nsid]
    if not blocks:
        raise ImageError(f"{path}: no namespace {nsid}")
    rows = g.num_ch * g.num_lun
    states = [["FREE"] * g.num_blk for _ in range(rows)]
    wear = [[0] * g.num_blk for _ in range(rows)]
    for b in blocks:
        states[b.ch * g.num_lun + b.lun][b.blk] = b.state_name
        wear[b.ch * g.num_lun + b.lun][b.blk] = max(b.erases)
    title = (f"{path.name}: OCSSD 1.2, namespace {nsid}: {g.num_ch} channels x {g.num_lun} "
             f"LUNs x {g.num_blk} blocks x {g.num_pln} planes x {g.num_pg} pages")
    return Grid(title, "ch", "LUN", "block", g.num_ch, g.num_lun, states, wear, "erases")


def _cell_pixels(count: int, budget: int) -> float:
    return max(1.0, min(float(MAX_CELL_PIXELS), budget / count))


def plot(grid: Grid, output: Path) -> PanelBox:
    """Draw `grid` into a PNG; where the state map's cells are (for checks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    rows, columns = len(grid.states), len(grid.states[0])
    width = columns * _cell_pixels(columns, PANEL_PIXELS[0])
    height = rows * _cell_pixels(rows, PANEL_PIXELS[1])
    margin_left, margin_right, margin_top, margin_bottom, gap = 90, 110, 70, 60, 90
    fig_w = margin_left + 2 * width + gap + margin_right
    fig_h = margin_top + height + margin_bottom
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    try:
        boxes = [(margin_left / fig_w, margin_bottom / fig_h, width / fig_w, height / fig_h),
                 ((margin_left + width + gap) / fig_w, margin_bottom / fig_h, width / fig_w,
                  height / fig_h)]
        state_ax, wear_ax = fig.add_axes(boxes[0]), fig.add_axes(boxes[1])
        codes = [[STATE_ORDER.index(s if s in STATE_COLOURS else "UNKNOWN") for s in row]
                 for row in grid.states]
        colours = ListedColormap([STATE_COLOURS[name] for name in STATE_ORDER])
        state_ax.imshow(codes, cmap=colours, vmin=-0.5, vmax=len(STATE_ORDER) - 0.5,
                        interpolation="nearest", aspect="auto", resample=False)
        heat = wear_ax.imshow(grid.wear, cmap="inferno", interpolation="nearest",
                              aspect="auto", vmin=0,
                              vmax=max(1, max(max(row) for row in grid.wear)))
        counts = Counter(s for row in grid.states for s in row)
        state_ax.set_title("state: " + ", ".join(
            f"{name} {counts[name]}" for name in STATE_ORDER if counts[name]), fontsize=8)
        wear_ax.set_title(f"wear ({grid.wear_name})", fontsize=8)
        colour_bar = fig.add_axes(((margin_left + 2 * width + gap + 12) / fig_w,
                                   margin_bottom / fig_h, 14 / fig_w, height / fig_h))
        fig.colorbar(heat, cax=colour_bar)
        _label(state_ax, grid, "black")
        _label(wear_ax, grid, "white")
        fig.suptitle(grid.title, fontsize=9)
        fig.savefig(output, dpi=DPI)
        fig_height = fig.get_size_inches()[1] * DPI
        extent = state_ax.get_window_extent()
        return PanelBox(extent.x0, fig_height - extent.y1, extent.x1, fig_height - extent.y0,
                        rows, columns)
    finally:
        plt.close(fig)


def _label(ax: object, grid: Grid, separator: str) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    ax.set_xlabel(grid.column_name, fontsize=8)
    ax.set_ylabel(f"{grid.group_name} / {grid.unit_name}", fontsize=8)
    step = max(1, grid.groups // 16)   # at most ~16 labels
    ax.set_yticks([g * grid.rows_per_group + (grid.rows_per_group - 1) / 2
                   for g in range(0, grid.groups, step)])
    ax.set_yticklabels([f"{grid.group_name} {g}" for g in range(0, grid.groups, step)],
                       fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    for g in range(1, grid.groups):
        ax.axhline(g * grid.rows_per_group - 0.5, color=separator, linewidth=0.8)


def _run(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("ocssd-vfu image plot: needs matplotlib (pip install matplotlib)",
              file=sys.stderr)
        return 1
    try:
        plot(grid_of(args.path, args.nsid), args.output)
    except (ImageError, OSError) as exc:
        print(f"ocssd-vfu image plot: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: written")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "plot", help="draw the chunk-state map and the wear heat map into a PNG",
        description="Draw an OCSSD image's chunks (2.0) or blocks (1.2), one row per PU "
        "(LUN), groups (channels) stacked: coloured by state, and as a wear heat map.")
    p.add_argument("path", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    p.add_argument("--nsid", type=int, default=1, help="namespace (default 1)")
    p.set_defaults(func=_run)
