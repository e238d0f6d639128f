"""The README stays true: every command, option and exit code is documented."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from etl.cli import build_parser
from etl.errors import ExitCode

README_DIR = Path(__file__).resolve().parent.parent
README = (README_DIR / "README.md").read_text()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    # argparse has no public accessor for sub-commands; _actions is stable since 2.7.
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_is_in_the_readme_with_help(name: str) -> None:
    assert re.search(rf"\| `{name}` \|", README), f"README's command table lacks `{name}`"
    main_help = build_parser().format_help()
    assert re.search(rf"^\s+{name}\s+\S", main_help, re.M), f"`{name}` has no help line"


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_option_is_in_the_readme(name: str) -> None:
    for action in subcommands()[name]._actions:
        for option in action.option_strings:
            if option in ("-h", "--help"):
                continue
            assert option in README, f"README does not mention {name} {option}"
            assert action.help, f"{name} {option} has no help text"


def test_every_exit_code_is_in_the_readme() -> None:
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", README, re.M), f"exit code {code} undocumented"


def test_readme_shows_the_two_setup_commands() -> None:
    assert "make demo" in README
    assert "make test" in README


def test_make_help_lists_every_target_of_the_makefile() -> None:
    makefile = README_DIR / "Makefile"
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile.read_text(), re.M))
    shown = subprocess.run(
        ["make", "--no-print-directory", "-C", str(README_DIR), "help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = set(re.findall(r"^make (\S+)", shown, re.M))
    assert listed == targets, f"make help misses {targets - listed} or invents {listed - targets}"
