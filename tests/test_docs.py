"""The README stays true: every command, option and exit code is documented."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from docs_corpus import DOCS
from parts.cli import subcommands

from etl.cli import metrics
from etl.cli.main import build_parser
from etl.cli.output import PROG
from etl.common.errors import ExitCode
from etl.common.settings import FILTER_KEYS
from etl.config import loader as config
from etl.config.ledger import LEDGER_KEYS
from etl.config.secrets import CREDENTIAL_KEYS

README_DIR = Path(__file__).resolve().parent.parent
README = DOCS  # the README and the docs pages it links


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


STOP = ("&&", "||", ">", "|", ";")  # where a shell line's command ends


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.M | re.S)


def _splits(text: str) -> bool:
    try:
        shlex.split(text)
    except ValueError:
        return False
    return True


def readme_invocations() -> list[list[str]]:
    """The arguments of every ``zendesk-audit-etl`` command the README runs (shell blocks and
    inline examples), and of each inline example that starts with a command's name and gives
    an option its value (``status --max-lag 1h``), placeholders filled."""
    lines = [
        line for block in code_blocks("sh") + code_blocks("cron") for line in block.splitlines()
    ]
    prose = re.sub(r"^```.*?^```", "", README, flags=re.M | re.S)
    prose = re.sub(r"^#.*$", "", prose, flags=re.M)  # a heading names a command, runs none
    spans = [span for span in re.findall(r"`([^`\n]+)`", prose) if "…" not in span]
    spans = [span for span in spans if _splits(span)]  # a SQL or TOML fragment is no command
    found: list[list[str]] = []
    for line in lines + spans:
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word.endswith(f"/bin/{PROG}") or (word == PROG and (i == 0 or words[i - 1] == "&&")):
                args = list(itertools.takewhile(lambda w: w not in STOP, words[i + 1 :]))
                args = ["sync" if a == "COMMAND" else a for a in args]  # `PROG COMMAND --help`
                if args:  # else the path is named, not run
                    found.append(args)
    for span in spans:
        words = shlex.split(re.sub(r"\bT\b", "2026-01-01", span))  # `--since T`
        if len(words) >= 3 and words[0] in subcommands():
            found.append(words)
    return found


@pytest.mark.parametrize("args", readme_invocations(), ids=" ".join)
def test_every_command_line_in_the_readme_parses(args: list[str]) -> None:
    if args[-1] == "--help":  # argparse exits on --help: the command must exist
        assert args[0] in subcommands()
        return
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"README runs `{PROG} {' '.join(args)}`, which the parser refuses")


def test_the_readme_finds_its_command_lines() -> None:
    commands = {args[0] for args in readme_invocations() if args and not args[0].startswith("-")}
    assert {"check", "migrate", "sync", "status", "init", "export", "resync"} <= commands


def test_the_several_accounts_example_is_a_valid_config() -> None:
    (example,) = [b for b in code_blocks("toml") if "[[accounts]]" in b]
    settings = config.parse(
        tomllib.loads(example),
        environ={"SANDBOX_TOKEN": "token"},
        source="README",
        require_credentials=["sandbox"],
    )
    acme, sandbox = settings.accounts
    assert (acme.name, sandbox.name) == ("acme", "sandbox")
    assert (
        sandbox.sync.overlap == timedelta(minutes=30) and acme.sync.overlap != sandbox.sync.overlap
    )
    assert sandbox.sync.filters == {"action": ("create", "destroy", "update")}


METRIC_TABLES = (metrics.HELP, metrics.LEDGER_HELP, metrics.STREAM_HELP, metrics.EXPORT_HELP)


def test_the_readme_names_every_metric() -> None:
    named = set(re.findall(r"`(?:zendesk_audit_etl)?_([a-z_]+)`", README))
    written = set().union(*METRIC_TABLES)
    assert written <= named, f"undocumented metrics: {sorted(written - named)}"


def test_every_metric_the_docs_name_is_written() -> None:
    """A metric renamed or dropped leaves no alert rule or page naming the old one."""
    written = set().union(*METRIC_TABLES)
    named = set(re.findall(rf"\b{metrics.PREFIX}_([a-z_]+)", README))
    assert named <= written, f"the docs name metrics no run writes: {sorted(named - written)}"


def test_every_config_key_is_in_the_configuration_page() -> None:
    """docs/CONFIGURATION.md names every key a config may hold: the credentials in their
    table (a secret's ``_file`` and ``_env`` forms are the page's one rule for every secret),
    the rest as ``[section] key`` rows."""
    page = (README_DIR / "docs" / "CONFIGURATION.md").read_text()
    variants = {f"{key}_{how}" for key in config.SECRET_KEYS for how in ("file", "env")}
    for key in sorted(CREDENTIAL_KEYS - variants):
        assert f"`{key}`" in page or f"] {key}`" in page, f"[zendesk] {key}"
    sections = {
        "zendesk": config.ZENDESK_KEYS - CREDENTIAL_KEYS,
        "sync": config.SYNC_KEYS - {"filters"},  # its own row: `[sync.filters] …`
        "database": config.DATABASE_KEYS,
        "monitoring": config.MONITORING_KEYS,
        "ledger": LEDGER_KEYS,
    }
    for section, keys in sections.items():
        rows = [line for line in page.splitlines() if line.startswith(f"| `[{section}] ")]
        for key in sorted(keys):
            named = (f"] {key}`", f"`{key}`")
            assert any(n in row for row in rows for n in named), f"no row for [{section}] {key}"


def configuration_rows() -> list[tuple[str, list[str], str]]:
    """(section, keys, default) of each row of docs/CONFIGURATION.md's table of keys."""
    page = (README_DIR / "docs" / "CONFIGURATION.md").read_text()
    rows = []
    for line in page.splitlines():
        found = re.match(r"\| (`\[([\w.]+)\] [^|]*) \| ([^|]*) \|", line)
        if found:
            keys = re.findall(r"`(?:\[[\w.]+\] )?(\w+)`", found.group(1))
            rows.append((found.group(2), keys, found.group(3).strip()))
    return rows


def test_every_key_the_configuration_page_names_is_one_the_loader_takes() -> None:
    accepted = {
        "zendesk": config.ZENDESK_KEYS, "sync": config.SYNC_KEYS,
        "database": config.DATABASE_KEYS, "monitoring": config.MONITORING_KEYS,
        "ledger": LEDGER_KEYS, "sync.filters": set(FILTER_KEYS),
    }  # fmt: skip
    rows = configuration_rows()
    assert len(rows) >= 20
    for section, keys, _ in rows:
        for key in keys:
            assert key in accepted[section], f"CONFIGURATION.md: no [{section}] {key} is taken"
    # the credentials' table: | method | keys | notes |
    page = (README_DIR / "docs" / "CONFIGURATION.md").read_text()
    table = page.split("## Credentials", 1)[1].split("\n## ", 1)[0]
    methods = re.findall(r"^\| [^|]+ \| (`[^|]+`) \|", table, re.M)
    assert len(methods) == 4
    for key in re.findall(r"`(\w+)`", " ".join(methods)):
        assert key in CREDENTIAL_KEYS, f"CONFIGURATION.md: no [zendesk] {key} is taken"


def test_each_default_the_configuration_page_gives_is_the_loaders() -> None:
    """A default written as a number, a duration, a word or a quoted value is the one a config
    without the key gets (the others, such as "from subdomain", are read by eye)."""
    settings = config.parse(
        {"zendesk": {"subdomain": "acme", "oauth_token": "token"}}, environ={}, source="test"
    )
    (account,) = settings.accounts
    where = {
        "zendesk": (account.zendesk, account.zendesk.credentials), "sync": (account.sync,),
        "database": (settings.database,), "ledger": (settings.ledger,),
    }  # fmt: skip
    checked = 0
    for section, keys, default in configuration_rows():
        given = re.fullmatch(r"`?\"?([\w:/.]+)\"?`?(?: \(\d+\))?", default)
        if section not in where or len(keys) != 1 or default == "none" or default == "subdomain":
            continue  # none: unset; subdomain: the name is the subdomain's value
        listed = re.fullmatch(r"`(\[.*\])`", default)  # a TOML list
        if not given and not listed:
            continue
        holder = next(h for h in where[section] if hasattr(h, keys[0]))
        value = getattr(holder, keys[0])
        checked += 1
        if listed:
            assert value == tuple(tomllib.loads(f"v = {listed.group(1)}")["v"]), (section, keys)
            continue
        assert given
        text = given.group(1)
        if isinstance(value, timedelta):
            assert value == config.parse_duration(text), (section, keys[0], default)
        elif keys[0] in ("timeout", "retry_budget"):  # seconds, as floats
            assert value == config.parse_duration(text).total_seconds(), (section, keys[0])
        elif isinstance(value, bool):
            assert str(value).lower() == text, (section, keys[0], default)
        else:  # `"auto"` (64): the number stands for the word
            shown = re.search(r"\((\d+)\)", default)
            assert str(value) == (shown.group(1) if shown else text), (section, keys[0], default)
    assert checked >= 12


def test_the_wheel_the_readme_names_is_this_version() -> None:
    from etl.common.version import VERSION as version

    assert f"zendesk_audit_etl-{version}-py3-none-any.whl" in README


# The scripts with options (`make bench`, `make bench-export` and their pieces): --help only.
SCRIPTS_WITH_OPTIONS = ("bench.py", "bench_dlt.py", "bench_envelope.py", "bench_export.py",
                        "bench_load.py", "bench_reference.py", "bench_startup.py")  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS_WITH_OPTIONS)
def test_every_script_option_has_help_text(script: str) -> None:
    shown = subprocess.run(
        [sys.executable, str(README_DIR / "scripts" / script), "--help"],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    ).stdout  # fmt: skip
    options = shown.split("\noptions:\n", 1)[1].splitlines()
    for line, after in itertools.pairwise([*options, ""]):
        if not line.startswith("  -"):
            continue
        # argparse puts the help after the option, or on the next line, indented further
        helped = re.search(r"\S {2,}\S", line.strip()) or re.match(r" {4,}\S", after)
        assert helped, f"{script}: {line.strip()} has no help text"


def test_the_bench_finds_the_checkout_and_the_dlt_pipeline() -> None:
    """scripts/benchkit/ is a folder below the commands: its ``ROOT`` (the jobs' working
    directory, the package it compiles) is still the checkout, and the dlt pipeline
    ``bench_dlt.py`` starts is a file. ``--help`` alone reads neither."""
    found = subprocess.run(
        [sys.executable, "-c", "import bench_dlt, benchkit.support as s; "
         "print(s.ROOT); print(bench_dlt.PIPELINE.is_file())"],
        capture_output=True, text=True, check=True, timeout=60, cwd=README_DIR / "scripts",
    ).stdout.split("\n")  # fmt: skip
    assert found[:2] == [str(README_DIR), "True"]
