"""Print the command reference (docs/COMMANDS.md's generated part) from the parser itself.

`python scripts/command_reference.py > docs/COMMANDS.md` after changing a command;
tests/test_docs.py fails while the page differs from what this prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etl.cli.main import build_parser  # after the path is set

HEADER = """# Command reference

Generated from the parser by `python scripts/command_reference.py > docs/COMMANDS.md`
(a test keeps it current); `zendesk-audit-etl COMMAND --help` prints the same. Exit codes are
in the [README](../README.md#commands-and-exit-codes). Options are taken only as written, never
abbreviated (`--conf` is not `--config`); one that is not known is a usage error (exit 2)
naming it and the closest option known: `unknown option --confg; did you mean --config?`.
"""


def options_table(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> list[str]:
    rows = ["| option | meaning |", "|---|---|"]
    for action in parser._actions:  # argparse has no public accessor; stable since 2.7
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if skip & set(action.option_strings):  # a global option, shown once above
            continue
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        if action.metavar and action.option_strings:
            names += f" `{action.metavar}`"
        text = (action.help or "").replace("|", "\\|").replace("%%", "%")
        if action.choices and action.option_strings:
            text += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
        rows.append(f"| {names} | {text} |")
    return rows


def reference() -> str:
    parser = build_parser()
    lines = [HEADER, "## Global options", "", "Before or after the command.", ""]
    lines += options_table(parser)
    globals_ = frozenset(s for a in parser._actions for s in a.option_strings)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        lines += ["", f"## `{name}`", "", (sub.description or "").strip(), ""]
        if sub.epilog:
            lines += ["```", sub.epilog.strip(), "```", ""]
        lines += options_table(sub, globals_)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
