"""The package's modules import one another one way: no circle, deferred imports included."""

from __future__ import annotations

import ast
from pathlib import Path

ETL = Path(__file__).resolve().parent.parent / "etl"


def etl_imports(path: Path) -> set[str]:
    """The ``etl`` modules ``path`` imports anywhere in it, as ``etl.<module>``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("etl"):
            if node.module == "etl":
                found |= {f"etl.{alias.name}" for alias in node.names}
            else:
                found.add(".".join(node.module.split(".")[:2]))
        elif isinstance(node, ast.Import):
            found |= {
                ".".join(alias.name.split(".")[:2])
                for alias in node.names
                if alias.name.startswith("etl.")
            }
    return found


def test_no_module_of_etl_imports_one_that_imports_it_back() -> None:
    graph = {f"etl.{p.stem}": etl_imports(p) - {f"etl.{p.stem}"} for p in ETL.glob("*.py")}
    circles: list[list[str]] = []
    explored: set[str] = set()  # no circle runs through these

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in explored:
                visit(imported, [*path, imported])
        explored.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert circles == []
    assert "etl.sync" not in graph["etl.backfill"]
    assert graph["etl.plan"] <= {"etl.settings", "etl.window"}  # pure: no threads, no I/O
