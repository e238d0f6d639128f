"""The docs are kept honest: the README stays a front door, every relative link resolves
(anchors included), the command reference is what the parser says, and every shell block a
user is meant to run runs here as written, or says why it cannot."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from docs_corpus import PAGES, README, ROOT
from support import SIM_OAUTH_TOKEN, recent

from zendesk_sim import SimulatedZendesk, generate_records

sys.path.insert(0, str(ROOT / "scripts"))
from command_reference import reference

LINK = re.compile(r"\]\(([^)\s]+)\)")
# The logs of measurements: each session names the code as it was when measured, so a later
# move does not make it wrong (their paths and names are not checked); their links are.
LOGS = sorted((ROOT / "docs" / "performance").glob("*.md"))
NOT_RUN = re.compile(r"<!-- not run here: (.+?) -->\n+```sh\n", re.S)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", strip_fences(markdown), re.M)
    return {re.sub(r"[^\w -]", "", h.lower().replace("`", "")).replace(" ", "-") for h in headings}


def strip_fences(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def test_the_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 150
    for page in ("INSTALL", "CONFIGURATION", "SCHEDULING", "MONITORING", "EXPORT", "QUERIES",
                 "RELIABILITY", "PERFORMANCE", "ARCHITECTURE", "TROUBLESHOOTING"):  # fmt: skip
        assert f"(docs/{page}.md)" in README, page
    assert (ROOT / "LICENSE").is_file() and (ROOT / "CHANGELOG.md").is_file()


@pytest.mark.parametrize("page", [*PAGES, *LOGS, ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(strip_fences(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not ours to check offline
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name} links {target}: no such file"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved.read_text()), f"{page.name} links {target}"


def test_the_command_reference_is_generated_from_the_parser() -> None:
    assert (ROOT / "docs" / "COMMANDS.md").read_text() == reference(), (
        "docs/COMMANDS.md is stale: python scripts/command_reference.py > docs/COMMANDS.md"
    )


# The files and modules the docs send a reader to (every page: the logs are not among them).
CODE_PATH = re.compile(
    r"(?<![\w/.$-])((?:\.ci|etl|zendesk_sim|migrations|tests|scripts|deploy)/[\w./@*-]*[\w*/])"
)
CODE_NAME = re.compile(r"(?<![\w/.-])((?:etl|zendesk_sim)(?:\.[A-Za-z_]\w*)+)")
IN_THE_WHEEL = {"etl/migrations"}  # where the wheel puts migrations/, named as such
CURRENT = PAGES


@pytest.mark.parametrize("page", CURRENT, ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(page: Path) -> None:
    for path in sorted(set(CODE_PATH.findall(page.read_text())) - IN_THE_WHEEL):
        found = any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()
        assert found, f"{page.name} names {path}, which does not exist"


def _resolves(dotted: str) -> bool:
    """Whether ``etl.a.b.name`` is a module, or a name in the longest module it starts with."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for name in parts[end:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


@pytest.mark.parametrize("page", CURRENT, ids=lambda p: p.name)
def test_every_module_and_name_the_docs_give_exists(page: Path) -> None:
    for dotted in sorted(set(CODE_NAME.findall(page.read_text()))):
        assert _resolves(dotted), f"{page.name} names {dotted}, which does not exist"


def shell_blocks() -> Iterator[tuple[str, str, str | None]]:
    """(page, block, why it is not run here or None) for every ```sh block of the docs."""
    for page in PAGES:
        text = page.read_text()
        reasons = {m.end(): m.group(1) for m in NOT_RUN.finditer(text)}
        for m in re.finditer(r"^```sh\n(.*?)^```", text, re.M | re.S):
            yield page.name, m.group(1), reasons.get(m.start() + len("```sh\n"))


BLOCKS = list(shell_blocks())
RUNNABLE = [(page, block) for page, block, why in BLOCKS if why is None]


def test_every_shell_block_runs_here_or_says_why_not() -> None:
    for page, block, why in BLOCKS:
        assert why is None or len(why) > 10, (page, block)
    assert RUNNABLE, "no shell block of the docs is run by the tests"


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """Where a reader stands: a copy of what the blocks name, the command on PATH, ETL_CONFIG
    set to a config of the simulator with SQLite."""
    home = tmp_path_factory.mktemp("reader")
    (home / "deploy").symlink_to(ROOT / "deploy")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "zendesk-audit-etl"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m etl "$@"\n')
    shim.chmod(0o755)
    end = recent(30)
    with SimulatedZendesk(generate_records(40, start=end - timedelta(days=2), end=end)) as sim:
        config = home / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\n\n'
            f'[database]\nurl = "sqlite:///{home / "audit.db"}"\nauto_migrate = true\n'
        )
        config.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_"))}
        env.update(
            PATH=f"{bin_dir}:{env['PATH']}", ETL_CONFIG=str(config),
            ZENDESK_OAUTH_TOKEN=SIM_OAUTH_TOKEN, PYTHONPATH=str(ROOT),
        )  # fmt: skip
        # The blocks are spread over the test workers in no fixed order, so none may rely on
        # another having run: the reader has synced once, as every page's first step says.
        subprocess.run(
            [str(shim), "sync"], cwd=home, env=env, check=True, capture_output=True, timeout=120
        )
        yield home, env


@pytest.mark.parametrize(
    "page, block", RUNNABLE, ids=[f"{p}:{i}" for i, (p, _) in enumerate(RUNNABLE)]
)
def test_each_runnable_shell_block_runs_as_written(
    page: str, block: str, user_dir: tuple[Path, dict[str, str]]
) -> None:
    home, env = user_dir
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=home, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"{page}:\n{block}\n{done.stdout}\n{done.stderr}"


def test_the_install_page_installs_as_the_readme_does() -> None:
    """INSTALL.md's steps made /etc only, while the SQLite URL it gives is under /var/lib,
    and left CREDENTIALS_DIRECTORY unset, which the README's smallest config needs: a
    newcomer following that page got exit 2 twice. Both pages say the same steps."""
    install = (ROOT / "docs" / "INSTALL.md").read_text()
    for text in (README, install):
        assert "install -d -m 700 /etc/zendesk-audit-etl /var/lib/zendesk-audit-etl\n" in text
        assert (
            "export ETL_CONFIG=/etc/zendesk-audit-etl/config.toml "
            "CREDENTIALS_DIRECTORY=/etc/zendesk-audit-etl\n"
        ) in text


# PERFORMANCE.md grew into a 2,182-line log of every measuring session; the sessions moved
# to docs/performance/, and the page says what is measured now, how, and against what.
PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"


def test_the_performance_page_is_current_and_its_history_a_dated_log() -> None:
    page = PERFORMANCE.read_text()
    assert len(page.splitlines()) <= 300, (
        "PERFORMANCE.md is the current page: sessions go to its history"
    )
    assert LOGS and "(performance/HISTORY.md" in page
    for log in LOGS:
        # a session appended on a branch is moved here whole: its heading says when it was
        for heading in re.findall(r"^### (.+)$", strip_fences(log.read_text()), re.M):
            assert re.search(r"\b20\d\d-\d\d-\d\d\b", heading), f"{log.name}: undated {heading}"


def _help(script: str) -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip


def bench_commands() -> Iterator[tuple[str, list[str]]]:
    """(script, the options given it) of each command line in PERFORMANCE.md's shell blocks;
    ``make TARGET VAR="..."`` gives VAR's options to the script that target's recipe runs."""
    makefile = (ROOT / "Makefile").read_text()
    for block in re.findall(r"^```sh\n(.*?)^```", PERFORMANCE.read_text(), re.M | re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["make"]:
                recipe = re.search(rf"^{words[1]}:.*\n((?:\t.*\n)*)", makefile, re.M)
                assert recipe, f"PERFORMANCE.md runs `make {words[1]}`: no such target"
                for assignment in words[2:]:
                    name, _, value = assignment.partition("=")
                    runs = [s for s in recipe.group(1).splitlines() if f"$({name})" in s]
                    assert runs, f"`make {words[1]}` does not pass {name} to a script"
                    script = re.search(r"scripts/\w+\.py", runs[0])
                    assert script, runs[0]
                    yield script.group(), shlex.split(value)
            elif words:
                assert words[0] == ".venv/bin/python" and words[1].startswith("scripts/"), line
                yield words[1], words[2:]


@pytest.mark.parametrize("script, args", list(bench_commands()), ids=lambda v: str(v))
def test_each_benchmark_the_performance_page_runs_takes_its_options(
    script: str, args: list[str]
) -> None:
    shown = _help(script)
    for i, option in enumerate(args):
        if not option.startswith("--"):
            continue
        assert re.search(rf"(?<![\w-]){re.escape(option)}\b", shown), f"{script}: no {option}"
        values = list(itertools.takewhile(lambda a: not a.startswith("--"), args[i + 1 :]))
        if len(values) > 1:  # the usage shows `--opt X [X ...]` for an option of several
            several = rf"{re.escape(option)} (\w+) \[\1 \.\.\.\]"
            assert re.search(several, shown), f"{script} {option} takes one value, not {values}"


def helps_the_pages_name() -> list[str]:
    """Each ``scripts/NAME.py --help`` a page sends its reader to, in prose or a block."""
    named = {m for page in PAGES for m in re.findall(r"(scripts/\w+\.py) --help", page.read_text())}
    return sorted(named)


def test_the_pages_name_script_helps() -> None:
    assert "scripts/envelope_slots.py" in helps_the_pages_name()


@pytest.mark.parametrize("script", helps_the_pages_name())
def test_each_script_help_a_page_names_is_an_answer(script: str) -> None:
    # `--help` is asked for, not a usage error: exit 0 and the usage on standard output
    shown = _help(script)
    assert shown.strip(), f"{script} --help printed nothing on standard output"


def test_the_ledger_bench_runs_as_often_as_its_help_and_the_page_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bench_ledger_load

    seen: list[Any] = []

    def kept(args: Any, *_: Any) -> int:  # the bench itself is not run: its arguments kept
        seen.append(args)
        return 0

    monkeypatch.setattr(bench_ledger_load, "run_bench", kept)
    assert bench_ledger_load.main([]) == 0
    (args,) = seen
    shown = _help("scripts/bench_ledger_load.py")
    assert f"runs per figure (default {args.runs})" in shown
    assert f"(default {','.join(args.databases)})" in shown
    assert re.search(rf"\b{args.runs}\s+runs unless `--runs`", PERFORMANCE.read_text())


def printable_texts() -> list[str]:
    """Every string literal of etl/, an f-string's replacement fields as NUL: what a message
    can say."""
    texts: list[str] = []
    for path in sorted((ROOT / "etl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.JoinedStr):
                parts = [v.value if isinstance(v, ast.Constant) else "\0" for v in node.values]
                texts.append("".join(str(part) for part in parts))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return texts


# Quoted by TROUBLESHOOTING.md, but the driver's words, which the job's message passes on.
FROM_DRIVERS = {"invalid sslmode value"}
# What stands for a value in a quote: an ellipsis, a number, a placeholder (X, --Y).
VALUE = re.compile(r"…|(?:--)?\b[A-Z]\b|\d+")


def test_each_message_the_troubleshooting_page_quotes_is_one_the_code_prints() -> None:
    """The symptoms a reader searches the page for are the job's words as it prints them: a
    quote the code no longer says (``cursor repeats``) finds nothing."""
    page = (ROOT / "docs" / "TROUBLESHOOTING.md").read_text()
    section = page.split("## Symptoms", 1)[1].split("\n## ", 1)[0]
    symptoms = [row.split("|")[1] for row in section.splitlines() if row.startswith("| ")]
    quotes = [quote for cell in symptoms for quote in re.findall(r'"([^"]+)"', cell)]
    assert len(quotes) >= 20
    texts = printable_texts()
    for quote in quotes:
        ours = re.sub("|".join(FROM_DRIVERS), "…", quote)
        pieces = [piece.strip() for piece in VALUE.split(ours) if len(piece.strip()) >= 4]
        assert pieces, quote
        # each piece in a literal of its own: a message may be joined from several
        unsaid = [piece for piece in pieces if not any(piece in text for text in texts)]
        assert not unsaid, f"TROUBLESHOOTING.md quotes {quote!r}: etl/ never says {unsaid}"


def _section(page: str, heading: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_pages_name_every_table_and_column_the_schema_has() -> None:
    """QUERIES.md's list of the tables is the schema's (Alembic's own table besides), with
    every column of the audit log's; ACCESS_LOGS.md's table is the access log's columns; and
    the uninstall drops every table (it once left the access log's two behind)."""
    from etl.storage.schema.every_table import metadata

    tables = set(metadata.tables)
    listed = _section("QUERIES.md", "## The tables")
    named = set(re.findall(r"`(zendesk_\w+)`", listed))
    assert named == tables | {"zendesk_audit_alembic_version"}, named ^ tables
    audit_logs = listed.strip().split("\n\n", 1)[0]
    for column in metadata.tables["zendesk_audit_logs"].columns:
        assert f"`{column.name}`" in audit_logs, f"QUERIES.md: zendesk_audit_logs.{column.name}"
    table = _section("ACCESS_LOGS.md", "## The table: `zendesk_access_logs`").strip()
    rows = table.split("\n\n")[0].splitlines()[2:]  # below the heading and its rule
    documented = {c for row in rows for c in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == {c.name for c in metadata.tables["zendesk_access_logs"].columns}
    dropped = re.findall(r"`(zendesk_[\w*]+)`", _section("INSTALL.md", "## Uninstall"))
    for table in sorted(tables):
        assert any(fnmatch.fnmatchcase(table, name) for name in dropped), f"INSTALL.md: {table}"
