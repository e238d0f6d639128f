"""The package's modules import one another one way: no circle, deferred imports included;
the layers themselves are import-linter's contracts in pyproject.toml (``make lint``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ETL = ROOT / "etl"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ETL.rglob("*.py")}


def etl_imports(path: Path) -> set[str]:
    """The ``etl`` modules ``path`` imports anywhere in it (a package's name stands for it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("etl"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("etl.")}
    return found & MODULES.keys()


def test_no_module_of_etl_imports_one_that_imports_it_back() -> None:
    graph = {name: etl_imports(path) - {name} for name, path in MODULES.items()}
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
    assert "etl.sync.account" not in graph["etl.sync.backfill"]
    # pure: no threads, no I/O
    assert graph["etl.sync.plan"] <= {"etl.common.settings", "etl.sync.slices", "etl.sync.window"}


def test_every_package_init_imports_nothing() -> None:
    """A command loads only what it needs: no package drags its modules in at import."""
    inits = sorted(ETL.rglob("__init__.py"))
    assert len(inits) >= 9
    for path in inits:
        tree = ast.parse(path.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert imports == [], path


# scripts/ too: its commands stay in the folder the docs run them from, what they share is in
# scripts/benchkit/ (issue 22).
@pytest.mark.parametrize(
    "package",
    [ETL, ROOT / "zendesk_sim", ROOT / "migrations", ROOT / "scripts"],
    ids=["etl", "zendesk_sim", "migrations", "scripts"],
)
def test_no_folder_holds_more_than_fifteen_modules(package: Path) -> None:
    for folder in {p.parent for p in package.rglob("*.py")}:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 15, folder


@pytest.mark.parametrize(
    "package",
    [ETL, ROOT / "zendesk_sim", ROOT / "migrations", ROOT / "scripts"],
    ids=["etl", "zendesk_sim", "migrations", "scripts"],
)
def test_no_module_is_longer_than_350_lines(package: Path) -> None:
    """Modules stay around 300 lines (docs/DEVELOPMENT.md); 350 is where one must be split."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in package.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 350
    }
    assert long == {}


def test_the_version_is_written_once() -> None:
    """pyproject.toml reads it from etl.common.version (hatch's dynamic version)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'path = "etl/common/version.py"' in pyproject
    from etl.common.version import VERSION

    done = subprocess.run(
        [sys.executable, "-m", "etl", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["zendesk-audit-etl", VERSION]


def test_an_import_that_goes_up_a_layer_breaks_a_contract(tmp_path: Path) -> None:
    """The layers are enforced: lint-imports fails on a storage module importing zendesk."""
    lint = Path(sys.executable).parent / "lint-imports"
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["cp", "-r", str(ETL), str(tree / "etl")], check=True)
    (tree / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    kept = subprocess.run([str(lint)], cwd=tree, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout
    bad = tree / "etl" / "storage" / "upward.py"
    bad.write_text("from etl.zendesk import client\n")
    broken = subprocess.run([str(lint)], cwd=tree, capture_output=True, text=True)
    assert broken.returncode != 0
    assert "etl.storage.upward" in broken.stdout
