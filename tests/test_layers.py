"""The layering is enforced, not reviewed: the import-linter contracts of
pyproject.toml (layers, and no circle among the modules of a package), and no
import circle anywhere in ocssd_vfu, type-checking imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def circles(graph: grimp.ImportGraph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_anywhere() -> None:
    graph = grimp.build_graph("ocssd_vfu", exclude_type_checking_imports=False)
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert circles(graph) == [{"a", "b"}]


def test_the_core_and_the_kinds_need_no_libvfio_user() -> None:
    """With the libvfio-user binding unimportable, the controller and every namespace kind
    still import: they need the dma layer's C module only."""
    probe = ("import sys; sys.modules['ocssd_vfu.vfu._libvfio_user'] = None\n"
             "import ocssd_vfu.nvme.controller, ocssd_vfu.plain, ocssd_vfu.ocssd, "
             "ocssd_vfu.ocssd12, ocssd_vfu.devices\n"
             "try:\n    import ocssd_vfu.vfu.binding\nexcept ImportError:\n    print('ok')\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
