"""The command line in tests: in process where the behaviour is not about the process
(fast: no interpreter start, no imports again), in a real process where it is (signals,
kills, exit without a traceback); the one error line a failure prints; the commands."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from support import SIM_OAUTH_TOKEN, wait_until

from etl.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
# The environment a command sees: none of the caller's Zendesk settings, the simulator's token.
CLI_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))},
    "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN,
}
_QUIETED = ("urllib3", "alembic", "sqlalchemy", "psycopg")


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _logging_restored() -> Iterator[None]:
    """The CLI configures logging for its process; put the test's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in _QUIETED}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``zendesk-audit-etl ARGS`` in this process, as ``subprocess.run`` would report it:
    exit code, stdout, stderr. ``env`` adds to the environment a command sees."""
    return run_cli_in(args, {**CLI_ENV, **(env or {})})


def run_cli_in(args: Sequence[str], environ: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``run_cli`` with exactly ``environ`` as the environment the command sees (for a
    test whose command must not see the simulator's token, or anything else of CLI_ENV)."""
    # Text streams over bytes, as a process has: some commands write bytes (export).
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    with (
        _environment(environ),
        _logging_restored(),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        try:
            code = cli_main.main(list(args))
        except SystemExit as exit:  # argparse: --help, --version, bad arguments
            code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
    return subprocess.CompletedProcess(["zendesk-audit-etl", *args], code, _text(out), _text(err))


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", errors="replace")


def cli_command(config: Path, *args: str) -> list[str]:
    """The command line that runs ``python -m etl --config CONFIG ARGS`` in a new process."""
    return [sys.executable, "-m", "etl", "--config", str(config), *args]


class CliProcess:
    """The CLI in a real process (``subprocess.Popen``), its stderr read line by line as
    it comes, for tests about the process itself: signals, kills, exit codes."""

    def __init__(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cli_command(config, *args),
            env={**CLI_ENV, **(env or {})},
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str) -> None:
        """Until a line holding ``text`` is on stderr (or the process ended: then fail)."""
        wait_until(
            lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
            f"{text!r} on stderr",
        )
        assert any(text in line for line in self.lines), self.stderr

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def cli(
    config: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The command, in this process (``run_cli``), with ``--config CONFIG`` if given: what it
    does is the subject. ``CliProcess`` starts a real one where the process is the point."""
    del timeout  # in process, a hang fails the test run's own timeout
    config_args = ["--config", str(config)] if config is not None else []
    return run_cli(*config_args, *args, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Expected failures print exactly one line on stderr, and never a traceback."""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("zendesk-audit-etl")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The parser of each command, by name."""
    # argparse has no public accessor for sub-commands; _actions is stable since 2.7.
    parser = cli_main.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)
