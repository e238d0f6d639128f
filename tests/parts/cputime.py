"""Where the suite's CPU goes, per test and per file: opt-in, ``pytest --cputime``.

On two cores with three or four workers the suite is bound by CPU seconds, not by a
test's wall time (a test that sleeps on a paced simulator costs nothing while another
worker fills the wait), so ``--durations`` points at the wrong tests. This plugin
records, for each phase (setup, call, teardown) of each test in the process that runs
it, the process's own CPU (``RUSAGE_SELF``: the test code, the in-process CLI, the
simulator's threads, the client side of the databases) and its reaped children's
(``RUSAGE_CHILDREN``: the CLI and Python processes a test starts and waits for). The
database servers' own CPU is not counted (their backends are not this process's
children). A module-scoped fixture is charged to the first test that sets it up.

With xdist each worker measures its own tests and sends the figures in the reports'
``user_properties``; the controller sums them and prints the heaviest tests and every
file at the session's end, and with ``--cputime-out PATH`` writes every test as
tab-separated values (nodeid, self, children, wall seconds).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEY = "cputime"  # the user_properties entry a phase's figures travel in
TOP_TESTS = 25


@dataclass(frozen=True)
class Cpu:
    """CPU seconds (user + system) of the process and of its reaped children, and wall."""

    own: float = 0.0
    children: float = 0.0
    wall: float = 0.0

    @property
    def total(self) -> float:
        return self.own + self.children

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.own + other.own, self.children + other.children, self.wall + other.wall)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children, self.wall - other.wall)


def now() -> Cpu:
    """This process's CPU so far, its reaped children's, and a monotonic clock."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cpu(own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, time.monotonic())


def add_options(parser: pytest.Parser) -> None:
    """``--cputime`` and ``--cputime-out`` (conftest's ``pytest_addoption``: ``-p`` would
    import this module before the ``tests`` folder is on the path)."""
    group = parser.getgroup("cputime")
    group.addoption(
        "--cputime",
        action="store_true",
        help="record each test's CPU seconds and print the heaviest tests and files",
    )
    group.addoption(
        "--cputime-out",
        default=None,
        help="also write each test's CPU seconds (own, children, wall) to this TSV file",
    )


def install(config: pytest.Config) -> None:
    """Record only when asked: off, the suite pays nothing."""
    if config.getoption("cputime") or config.getoption("cputime_out"):
        config.pluginmanager.register(_Recorder(config), "cputime-recorder")


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def per_file(tests: dict[str, Cpu]) -> dict[str, Cpu]:
    """The tests' figures summed by the file that holds them."""
    files: dict[str, Cpu] = {}
    for nodeid, cpu in tests.items():
        files[file_of(nodeid)] = files.get(file_of(nodeid), Cpu()) + cpu
    return files


def table(title: str, rows: Iterable[tuple[str, Cpu]]) -> list[str]:
    """Rows heaviest first: total, own and children's CPU seconds, wall seconds, name."""
    lines = [title, f"{'cpu s':>8} {'own':>8} {'children':>8} {'wall s':>8}  name"]
    for name, cpu in sorted(rows, key=lambda row: -row[1].total):
        lines.append(f"{cpu.total:8.2f} {cpu.own:8.2f} {cpu.children:8.2f} {cpu.wall:8.2f}  {name}")
    return lines


def summary(tests: dict[str, Cpu], top: int = TOP_TESTS) -> list[str]:
    """The heaviest ``top`` tests, every file, and the sum over all."""
    total = sum(tests.values(), Cpu())
    heaviest = sorted(tests.items(), key=lambda row: -row[1].total)[:top]
    return [
        *table(f"CPU seconds, the {len(heaviest)} heaviest of {len(tests)} tests", heaviest),
        "",
        *table("CPU seconds by file", per_file(tests).items()),
        "",
        f"all: {total.total:.2f} cpu s ({total.own:.2f} own, "
        f"{total.children:.2f} children), {total.wall:.2f} wall s",
    ]


class _Recorder:
    """Measures the phases where the tests run; sums and prints where the reports land."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.mark = Cpu()
        self.tests: dict[str, Cpu] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        # Called in the process that runs the test, just before its setup.
        self.mark = now()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        current = now()
        spent = current - self.mark
        self.mark = current
        # A new list: the report's is the item's own, shared by its three phases.
        report.user_properties = [
            *report.user_properties,
            (KEY, [spent.own, spent.children, spent.wall]),
        ]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == KEY:
                assert isinstance(value, (list, tuple))  # a list, or a JSON array via xdist
                spent = Cpu(*(float(figure) for figure in value))
                self.tests[report.nodeid] = self.tests.get(report.nodeid, Cpu()) + spent

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput") or not self.tests:
            return  # an xdist worker: the controller prints
        for line in summary(self.tests):
            terminalreporter.write_line(line)
        out = self.config.getoption("cputime_out")
        if out:
            rows = sorted(self.tests.items(), key=lambda row: -row[1].total)
            Path(out).write_text(
                "".join(
                    f"{nodeid}\t{cpu.own:.3f}\t{cpu.children:.3f}\t{cpu.wall:.3f}\n"
                    for nodeid, cpu in rows
                )
            )
