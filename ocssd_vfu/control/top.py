"""`ocssd-vfu top --control PATH`: a live view of a served device, refreshed every second.

One row per PU (1.2: LUN), one cell per chunk (block), groups one under the other:
coloured by state, with a glyph per state too (`·` FREE, `o` OPEN, `█` CLOSED, `X`
OFFLINE), or as a wear heat map (`·░▒▓█`, WLI or erases). Above: IOPS, read and write
bandwidth, guest errors, and the FTL's WAF when the device has an FTL.

Keys: `s` states, `w` wear, `q` (or Ctrl-C) quits. A terminal wide enough shows both
maps side by side; a narrow one (80x24) shows the chosen map only. When the chunks do
not fit the width, one cell stands for several chunks and shows the most severe state
among them (OFFLINE > OPEN > CLOSED > FREE) or the highest wear; when the rows do not
fit the height, the same holds for PUs, and the header says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ocssd_vfu.control.client import ControlClient, ControlError

REFRESH_SECONDS = 1.0
STATE_GLYPHS = {"FREE": ("·", "grey50"), "CLOSED": ("█", "blue"), "OPEN": ("o", "yellow"),
                "OFFLINE": ("X", "bold red")}
SEVERITY = ("FREE", "CLOSED", "OPEN", "OFFLINE")   # a merged cell shows the last present
WEAR_GLYPHS = (("·", "grey50"), ("░", "green"), ("▒", "yellow"), ("▓", "dark_orange"),
               ("█", "red"))
LABEL_WIDTH = 8
CHROME_ROWS = 5     # title, figures, blank, legend, and one spare


@dataclass
class Snapshot:
    """What one refresh shows, and what the rates are computed from."""

    device: dict[str, Any]
    unit: str                           # "chunk" or "block"
    units: list[dict[str, Any]]
    stats: dict[str, Any]
    taken: float


@dataclass
class Rates:
    iops: float = 0.0
    read_bps: float = 0.0
    write_bps: float = 0.0


def rates(before: Snapshot | None, now: Snapshot) -> Rates:
    if before is None or now.taken <= before.taken:
        return Rates()
    elapsed = now.taken - before.taken

    def delta(stats_key: str) -> float:
        return max(0, now.stats.get(stats_key, 0) - before.stats.get(stats_key, 0)) / elapsed

    commands = (sum(now.stats.get("commands", {}).values())
                - sum(before.stats.get("commands", {}).values()))
    return Rates(max(0, commands) / elapsed, delta("read_bytes"), delta("written_bytes"))


@dataclass
class Layout:
    """The units arranged as rows: one per PU (LUN), groups in order."""

    row_labels: list[str]
    group_starts: set[int]
    cells: list[list[dict[str, Any]]] = field(default_factory=list)


def arrange(units: list[dict[str, Any]], unit: str) -> Layout:
    group_key, pu_key, col_key = ("grp", "pu", "chk") if unit == "chunk" else ("ch", "lun", "blk")
    rows: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for item in units:
        rows.setdefault((item[group_key], item[pu_key]), []).append(item)
    layout = Layout([], set())
    for index, (group, pu) in enumerate(sorted(rows)):
        if pu == min(p for g, p in rows if g == group):
            layout.group_starts.add(index)
        layout.row_labels.append(f"{group_key}{group} {pu:>2}")
        layout.cells.append(sorted(rows[(group, pu)], key=lambda item: item[col_key]))
    return layout


def _buckets(count: int, limit: int) -> list[range]:
    """`count` items in at most `limit` consecutive buckets."""
    per = max(1, -(-count // max(1, limit)))
    return [range(start, min(start + per, count)) for start in range(0, count, per)]


def _erases(item: dict[str, Any]) -> int:
    """A unit's erase count: one number, or the highest of its planes'."""
    erases = item.get("erases", 0)
    return max(erases or [0]) if isinstance(erases, list) else int(erases)


def _wear_level(item: dict[str, Any], unit: str, highest: int) -> int:
    if unit == "chunk":
        return min(4, -(-item.get("wli", 0) * 4 // 255))
    return min(4, -(-_erases(item) * 4 // max(1, highest)))


def render_map(layout: Layout, unit: str, view: str, width: int, height: int) -> Text:
    columns = max((len(row) for row in layout.cells), default=0)
    col_buckets = _buckets(columns, width - LABEL_WIDTH - 1)
    row_buckets = _buckets(len(layout.cells), height)
    highest = max((_erases(item) for row in layout.cells for item in row), default=0)
    text = Text(no_wrap=True, overflow="crop")
    for rows in row_buckets:
        label = layout.row_labels[rows[0]] + ("+" if len(rows) > 1 else "")
        text.append(f"{label:<{LABEL_WIDTH}} ", style="bold" if rows[0] in layout.group_starts
                    else "")
        for cols in col_buckets:
            items = [layout.cells[r][c] for r in rows for c in cols if c < len(layout.cells[r])]
            if view == "wear":
                level = max((_wear_level(item, unit, highest) for item in items), default=0)
                glyph, style = WEAR_GLYPHS[level]
            else:
                present = {item["state"] for item in items}
                state = max(present, key=lambda s: SEVERITY.index(s) if s in SEVERITY else 0,
                            default="FREE")
                glyph, style = STATE_GLYPHS.get(state, ("?", "magenta"))
            text.append(glyph, style=style)
        text.append("\n")
    text.rstrip()
    return text


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.1f} MB/s"


def render(snapshot: Snapshot, rate: Rates, view: str, width: int, height: int,
           path: Path) -> RenderableType:
    device = snapshot.device
    title = Text(f"ocssd-vfu top  {device.get('kind', '?')} {device.get('spec', '')}  "
                 f"{path}", style="bold", no_wrap=True, overflow="ellipsis")
    stats = snapshot.stats
    errors = sum(stats.get("guest_errors", {}).values())
    figures = (f"IOPS {rate.iops:,.0f}  read {_megabytes(rate.read_bps)}  "
               f"write {_megabytes(rate.write_bps)}  guest errors {errors}")
    waf = stats.get("ftl", {}).get("waf")
    if waf is not None:
        figures += f"  WAF {waf:.2f}"
    layout = arrange(snapshot.units, snapshot.unit)
    map_height = max(1, height - CHROME_ROWS)
    both = width >= 2 * (LABEL_WIDTH + 1 + max((len(r) for r in layout.cells), default=0)) + 3
    if both:
        half = (width - 3) // 2
        maps: RenderableType = Table.grid(padding=(0, 3))
        assert isinstance(maps, Table)
        maps.add_row(render_map(layout, snapshot.unit, "state", half, map_height),
                     render_map(layout, snapshot.unit, "wear", half, map_height))
    else:
        maps = render_map(layout, snapshot.unit, view, width, map_height)
    legend = Text(no_wrap=True, overflow="crop")
    if both or view == "state":
        for name, (glyph, style) in STATE_GLYPHS.items():
            legend.append(f"{glyph} {name} ", style=style)
    if both or view == "wear":
        legend.append("wear ")
        for glyph, style in WEAR_GLYPHS:
            legend.append(glyph, style=style)
        legend.append(" ")
    legend.append(" q quit  s states  w wear", style="bold")
    return Group(title, Text(figures, no_wrap=True, overflow="ellipsis"), maps, Text(""), legend)


def take_snapshot(client: ControlClient, device: dict[str, Any], unit: str | None) -> Snapshot:
    units = client.execute(f"query-{unit}s") if unit else []
    return Snapshot(device, unit or "chunk", units, client.execute("query-stats"),
                    time.monotonic())


def terminal_size(console: Console) -> tuple[int, int]:
    """The terminal's real size (rich prefers $COLUMNS and $LINES, which a parent
    process may have exported for another terminal), followed at every refresh."""
    with contextlib.suppress(OSError):
        size = os.get_terminal_size(sys.stdout.fileno())
        console.size = (size.columns, size.lines)
    width, height = console.size
    return width, height


@contextlib.contextmanager
def keys_without_echo() -> Iterator[None]:
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_key(timeout: float) -> str | None:
    ready, _, _ = select.select([sys.stdin], [], [], max(0.0, timeout))
    if not ready:
        return None
    data = os.read(sys.stdin.fileno(), 32)
    return data.decode(errors="replace")[-1:] if data else "q"   # EOF: as if q


def run(args: argparse.Namespace) -> int:
    console = Console()
    try:
        client = ControlClient(args.control)
    except (OSError, ValueError, ControlError) as exc:
        print(f"ocssd-vfu top: {args.control}: {exc}", file=sys.stderr)
        return 1
    view = "state"
    try:
        with client, keys_without_echo(), Live(console=console, screen=True,
                                               auto_refresh=False) as live:
            names = {command["name"] for command in client.execute("query-commands")}
            unit = next((u for u in ("chunk", "block") if f"query-{u}s" in names), None)
            device = client.execute("query-device")
            before: Snapshot | None = None
            while True:
                snapshot = take_snapshot(client, device, unit)
                width, height = terminal_size(console)
                live.update(render(snapshot, rates(before, snapshot), view, width, height,
                                   args.control), refresh=True)
                before = snapshot
                deadline = snapshot.taken + REFRESH_SECONDS
                while (remaining := deadline - time.monotonic()) > 0:
                    key = read_key(remaining)
                    if key == "q":
                        return 0
                    if key in ("s", "w"):
                        view = "state" if key == "s" else "wear"
                        break
    except KeyboardInterrupt:
        return 0
    except (OSError, ControlError) as exc:
        print(f"ocssd-vfu top: {args.control}: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("top", help="live view of a served device (q quits)",
                       description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__
                       else None)
    p.add_argument("--control", type=Path, required=True,
                   help="the control socket of `ocssd-vfu serve --control PATH`")
    p.set_defaults(func=run)
