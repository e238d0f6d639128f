"""A misspelt or abbreviated long option (``etl.cli.parser``): one line naming it, with the
closest option known, exit 2. Before, ``--confg x status`` read ``x`` as the command
("invalid choice: 'x'"), and ``--conf`` silently meant ``--config``: an abbreviation that
a later option could make mean another."""

from __future__ import annotations

import argparse

import pytest
from parts.cli import run_cli

from etl.cli.main import build_parser
from etl.common.errors import ExitCode


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--confg", "x", "status"], "unknown option --confg; did you mean --config?"),
        (["--confg=x", "status"], "unknown option --confg; did you mean --config?"),
        (["--conf", "x", "status"], "unknown option --conf; did you mean --config?"),
        (["--verb", "status"], "unknown option --verb; did you mean --verbose?"),
        (["status", "--max-la", "1h"], "unknown option --max-la; did you mean --max-lag?"),
        (["status", "--jsn"], "unknown option --jsn; did you mean --json?"),
        (
            ["resync", "--sinc", "2026-01-01T00:00:00Z"],
            "unknown option --sinc; did you mean --since?",
        ),
        (["verify", "--public", "k.pub"], "unknown option --public; did you mean --public-key?"),
        (["--bogus", "status"], "unknown option --bogus"),  # nothing close: no guess
        (["status", "--since", "1h"], "unknown option --since"),  # resync's, not status's
    ],
)
def test_an_unknown_option_is_named_in_one_line(args: list[str], said: str) -> None:
    result = run_cli(*args)
    assert result.returncode == ExitCode.CONFIG
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(f"error: {said} (see --help)"), line


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        name
        for action in parser._actions
        for name in action.option_strings
        if name.startswith("--")
    ]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_no_abbreviation_of_a_long_option_is_taken_for_it() -> None:
    """Every command's every long option cut short (by one character, and to half) is
    refused as unknown, never parsed as the option."""
    parser = build_parser()
    tried = 0
    for name, command in _commands(parser).items():
        for option in _long_options(command):
            if option in ("--help", "--version"):
                continue
            for cut in {option[:-1], option[: max(3, len(option) // 2)]}:
                if cut in _long_options(command):  # a whole option of its own
                    continue
                result = run_cli(name, cut, "x")
                assert result.returncode == ExitCode.CONFIG, (name, cut)
                assert f"error: unknown option {cut}" in result.stderr, (name, cut, result.stderr)
                tried += 1
    assert tried > 50
