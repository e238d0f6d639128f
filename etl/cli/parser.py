"""argparse as the command line uses it: every usage error one line (exit 2), long options
only as written, and a misspelt one named as such.

argparse would take ``--conf`` for ``--config`` (any unambiguous prefix): an abbreviation
in a cron line would come to mean another option, or none, when a later release adds
one that shares it. So none is taken (``allow_abbrev=False``). And an unknown option
before the command's name made argparse read the option's value as the command
(``--confg x status``: "invalid choice: 'x'"); ``Parser.error`` looks for the unknown
option first and names it, with the closest one known (``unknown option --confg; did you
mean --config?``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from etl.common.errors import ExitCode


class Parser(argparse.ArgumentParser):
    """The program's parser and each command's (argparse makes the commands' of its class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.given: list[str] = []  # the arguments of the last parse, for ``error``
        # the commands' parsers by name (the program's: ``build_parser`` sets it)
        self.commands: Mapping[str, argparse.ArgumentParser] = {}

    def parse_known_args(  # type: ignore[override]  # the same, typed less strictly
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: cron mails and journald stay readable.
        message = self.unknown_option() or message
        self.exit(ExitCode.CONFIG, f"{self.prog}: error: {message} (see --help)\n")

    def unknown_option(self) -> str | None:
        """ "unknown option --X" for the first long option given that neither this parser
        nor the command named takes, with the closest one that is, or None."""
        known = _option_names(self)
        for token in self.given:
            if token in self.commands:
                known |= _option_names(self.commands[token])
                break
        for token in self.given:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name.startswith("--") and name not in known:
                # the one option it abbreviates, else the closest by spelling, if close
                close = [known_name for known_name in known if known_name.startswith(name)]
                if len(close) != 1:
                    import difflib  # here: a command's start does not pay for it

                    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
                return f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else "")
        return None


def _option_names(parser: argparse.ArgumentParser) -> set[str]:
    # argparse keeps no public list of a parser's options; this table is the one it reads
    return {name for name in parser._option_string_actions if name.startswith("--")}
