"""The packages' layout: production and the simulator apart, no import circle, no table
named by hand in SQL, every module in docs/ARCHITECTURE.md; no test module imports another
test module or the conftest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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


# Modules whose SQL still names tables by hand (being rewritten by another change).
_HAND_WRITTEN_SQL: set[str] = set()
_SQL_NAMING_A_TABLE = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+zendesk_audit_\w+", re.I)


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)
    }


def test_sql_names_tables_through_the_schema_objects() -> None:
    """A table renamed in etl/storage/schema/ cannot leave a stale name in a statement's text."""
    for path in sorted((ROOT / "etl").rglob("*.py")):
        if path.name in _HAND_WRITTEN_SQL:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docstrings:
                text = node.value if isinstance(node.value, str) else ""
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert not _SQL_NAMING_A_TABLE.search(text), where


@pytest.mark.parametrize("package", ["etl", "zendesk_sim"])
def test_every_module_is_in_the_architecture_table(package: str) -> None:
    """A newcomer reading docs/ARCHITECTURE.md finds every module of the package and of
    the simulator."""
    table = "\n".join(
        line
        for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines()
        if line.startswith(f"| `{package}/")
    )
    for path in sorted((ROOT / package).rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" or name == "etl/__main__.py":
            continue
        assert f"`{name}`" in table, f"{name} is not in a module table"


def _test_modules_imported(path: Path) -> set[str]:
    """The test modules (``test_*``, beside it in tests/) and the conftest that ``path``
    imports, anywhere in it."""
    found = {m.removeprefix("tests.").split(".")[0] for m in _imports(path, "tests")}
    return {
        n
        for n in found
        if (n.startswith("test_") or n == "conftest") and (ROOT / "tests" / f"{n}.py").exists()
    }


def test_no_test_module_imports_another() -> None:
    """Helpers and fixtures two test files share live in tests/parts/ or tests/support.py:
    importing a test module couples the files and drags its fixtures along. Nor is
    anything imported from conftest, which is for fixtures and hooks: a helper found there
    couples its importers to it just the same."""
    tests = ROOT / "tests"
    for path in sorted(tests.rglob("*.py")):
        imported = _test_modules_imported(path)
        assert not imported, f"{path.relative_to(ROOT)} imports {sorted(imported)}"
