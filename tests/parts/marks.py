"""Tests grouped by what they need, marked automatically: ``pure``, ``http``, ``db``, ``process``.

- ``process``: starts the CLI (or Python) in a new process: signals, kills, the installed
  command. The slow group.
- ``db``: uses a database (any fixture giving one, or opens one itself).
- ``http``: serves HTTP on loopback (the simulated Zendesk, a hand-made server).
- ``pure``: none of these: plain functions on values, in milliseconds.

A test may carry several. The marks are read from the test's fixtures and from the code
it reaches in its own module and the test modules it imports from (the test function,
the helpers and fixtures it names, their helpers...): a test that names
``subprocess.Popen`` somewhere down that chain is ``process``. What the reading cannot
see is checked when the test runs: a test that starts a Python process or serves HTTP
without its mark fails and says which mark to add (``@pytest.mark.process``), so the
groups stay honest as tests are added. ``make test-fast`` is ``-m "not db and not
process"``; ``make test-sqlite`` is ``-m "not process"`` on SQLite.
"""

from __future__ import annotations

import ast
import functools
import socketserver
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

GROUPS = ("pure", "http", "db", "process")
TESTS = Path(__file__).resolve().parents[1]

# Fixtures that give a test a database (fixture closures are transitive: ``store`` pulls
# in ``db_url``, so naming the roots is enough; tests' own fixtures are read like code).
DB_FIXTURES = {"db_url", "sqlite_url", "migrated_url", "pg_url", "kill_db_url", "mysql_url"}
HTTP_FIXTURES = {"make_sim", "shared_sim"}
# Fixtures from tests/parts that conftest registers are not read like a module's own code
# (an autouse one would mark every test): those that start a simulator, by name. Only as
# fixtures: a variable of that name is no simulator.
SIM_FIXTURES = {"zendesk", "built", "stored"}
PROCESS_FIXTURES = {"built_wheel"}  # runs pip
# Names that, reached from a test, mean what they say.
PROCESS_CALLS = {
    ("subprocess", "Popen"),
    ("subprocess", "run"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("os", "fork"),
    ("sys", "executable"),
}
PROCESS_NAMES = {"Popen", "CliProcess", "multiprocessing"}
HTTP_NAMES = {"SimulatedZendesk", "LoopbackServer", "HTTPServer", "ThreadingHTTPServer"}
HTTP_NAMES |= HTTP_FIXTURES
DB_NAMES = {"open_engine", "fresh_store", "create_engine", "Store", "migrate_from_template"}
DB_TEXT = ("sqlite:///", "postgresql+", "mysql+")


class _Module:
    """One test module read once: what each top-level name reaches, and where imported
    names come from."""

    def __init__(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        self.defs: dict[str, set[str]] = {}
        self.imports: dict[str, tuple[str, str]] = {}
        self.top: set[str] = set()  # the module's own top-level code (marks, constants)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defs[node.name] = _tokens(node)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                for name in names:
                    self.defs[name] = _tokens(node)


def _tokens(node: ast.AST) -> set[str]:
    """Every name ``node`` mentions, ``module.attribute`` pairs, ``.attribute`` (not
    followed as a definition of this module), and database URLs."""
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(f".{child.attr}")  # http.server.HTTPServer names HTTPServer too
            if isinstance(child.value, ast.Name):
                found.add(f"{child.value.id}.{child.attr}")
        elif isinstance(child, ast.Constant) and any(text in str(child.value) for text in DB_TEXT):
            found.add("sqlite:///")
    return found


@functools.cache
def _module(name: str) -> _Module | None:
    """A module of tests/ by import name (``support``, ``parts.cli``); None if not ours."""
    base = TESTS.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return _Module(path)
    return None


def _reached(module: str, names: Iterable[str]) -> set[str]:
    """Every token reachable from ``names`` in ``module``, following its own definitions
    and names imported from other test modules."""
    seen: set[tuple[str, str]] = set()
    tokens: set[str] = set()
    todo = [(module, name) for name in names]
    while todo:
        where, name = todo.pop()
        if (where, name) in seen:
            continue
        seen.add((where, name))
        mod = _module(where)
        if mod is None:
            continue
        if name in mod.imports:
            todo.append(mod.imports[name])
            continue
        found = mod.defs.get(name, set())
        tokens |= found
        todo += [(where, t) for t in found if "." not in t]
    return tokens


def groups_of(item: pytest.Item) -> set[str]:
    """The groups a collected test belongs to."""
    fixtures = frozenset(getattr(item, "fixturenames", ()))
    start = {getattr(item, "originalname", item.name), *fixtures}
    cls = getattr(item, "cls", None)
    if cls is not None:
        start.add(cls.__name__)
    return set(_groups(item.path.stem, frozenset(start), fixtures))


@functools.cache  # parametrized tests share it
def _groups(module: str, start: frozenset[str], fixtures: frozenset[str]) -> frozenset[str]:
    tokens = _reached(module, start) | (fixtures & DB_FIXTURES)
    tokens |= fixtures & HTTP_FIXTURES
    found: set[str] = set()
    pairs = {tuple(t.split(".", 1)) for t in tokens if "." in t}
    tokens |= {t[1:] for t in tokens if t.startswith(".")}
    if pairs & PROCESS_CALLS or tokens & PROCESS_NAMES or fixtures & PROCESS_FIXTURES:
        found.add("process")
    if tokens & HTTP_NAMES or fixtures & SIM_FIXTURES:
        found.add("http")
    if tokens & (DB_NAMES | DB_FIXTURES | {"sqlite:///"}):
        found.add("db")
    return frozenset(found or {"pure"})


def mark_by_need(items: list[pytest.Item]) -> None:
    """Add each test's group marks (unless it carries one of them already, by hand)."""
    for item in items:
        given = {mark.name for mark in item.iter_markers() if mark.name in GROUPS}
        for group in given or groups_of(item):
            item.add_marker(group)


# -- the check at run time -------------------------------------------------------------------

_running: list[pytest.Item] = []  # the test being set up, run or torn down


def _check(group: str, what: str) -> None:
    if _running and _running[-1].get_closest_marker(group) is None:
        pytest.fail(
            f"{_running[-1].nodeid} {what} but is not marked {group!r}: add "
            f"@pytest.mark.{group} (see tests/parts/marks.py)",
            pytrace=False,
        )


def _guarded(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(self, *args, **kwargs)

    return guarded


def _check_process(args: Any = None, *_: Any, **kwargs: Any) -> None:
    args = kwargs.get("args", args)
    first = args if isinstance(args, str | Path) else (list(args or [""]) or [""])[0]
    # Python itself (the CLI, a venv's pip): other programs (openssl, ldconfig) are tools.
    if str(first) == sys.executable or Path(str(first)).name.startswith("python"):
        _check("process", "starts a Python process")


def _check_http(*_: Any, **__: Any) -> None:
    _check("http", "serves HTTP")


def install_checks() -> None:
    """Wrap process starts and server binds once for the session (see the module doc)."""
    popen: Any = subprocess.Popen
    popen.__init__ = _guarded(popen.__init__, _check_process)
    server: Any = socketserver.TCPServer
    server.server_bind = _guarded(server.server_bind, _check_http)


def running(item: pytest.Item | None) -> None:
    """Say which test runs now (None: between tests)."""
    _running[:] = [item] if item is not None else []
