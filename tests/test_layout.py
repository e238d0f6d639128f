"""The packages' import graph: production and the simulator apart, no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path, package: str) -> set[str]:
    """Absolute module names ``path`` imports, type-checking-only imports included."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            if node.module == package:  # `from pkg import mod` may name a module
                modules.update(f"{package}.{alias.name}" for alias in node.names)
    return modules


def _graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (the package itself left out)."""
    paths = {
        ".".join((package, *path.relative_to(ROOT / package).with_suffix("").parts)): path
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }
    return {name: _imports(path, package) & paths.keys() - {name} for name, path in paths.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(module: str, trail: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported == trail[0]:
                found.append([*trail, imported])
            elif imported not in trail and imported > trail[0]:  # each circle once
                walk(imported, [*trail, imported])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_production_and_the_simulator_do_not_import_each_other() -> None:
    """The wheel has no zendesk_sim; the simulator stands apart from what it tests."""
    for path in sorted((ROOT / "etl").rglob("*.py")):
        assert not {m for m in _imports(path, "etl") if m.split(".")[0] == "zendesk_sim"}, path
    for path in sorted((ROOT / "zendesk_sim").rglob("*.py")):
        assert not {m for m in _imports(path, "zendesk_sim") if m.split(".")[0] == "etl"}, path


def test_the_simulator_has_no_import_circle() -> None:
    assert _circles(_graph("zendesk_sim")) == []


def test_a_circle_is_found() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert _circles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
