"""``list --stream access_logs``: the stored access log, filtered, on all three databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parts.cli import one_error_line, run_cli
from parts.configs import write_config
from parts.exports import access, store_access
from support import fresh_store

RECORDS = [
    access(1, minutes=0, url="/api/v2/tickets/7.json"),
    access(2, minutes=10, url="/api/v2/tickets/7/comments.json?page=2", user_id="42"),
    access(3, minutes=20, url="/api/v2/tickets/70.json", ip_address="203.0.113.7"),
    access(4, minutes=30, url=None, graphql="query { ticket(id: 7) { id } }", user_id=42),
    access(5, minutes=40, url="/api/v2/users/7.json", ip_address="2001:db8::1"),
]


def listed(config: Path, *args: str) -> list[str]:
    done = run_cli("--config", str(config), "list", "--stream", "access_logs",
                   "--format", "json", *args)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["id"] for line in done.stdout.splitlines()]


def test_the_stored_access_log_is_listed_with_its_filters(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    store_access(store, RECORDS)
    store.engine.dispose()
    config = write_config(tmp_path, db_url)  # Zendesk unreachable: the list needs none
    ids = [r["id"] for r in RECORDS]
    assert listed(config) == ids[::-1]  # newest first
    assert listed(config, "--sort", "asc", "--limit", "2") == ids[:2]
    # the ticket and what is below it, not ticket 70
    assert listed(config, "--filter", "path=/api/v2/tickets/7", "--sort", "asc") == ids[:2]
    assert listed(config, "--filter", "user_id=42", "--sort", "asc") == [ids[1], ids[3]]
    assert listed(config, "--filter", "ip_address=203.0.113.7") == [ids[2]]
    assert listed(config, "--filter", "ip_address=2001:db8:0::1") == [ids[4]]  # normalised
    window = ("--since", "2026-03-01T12:10:00Z", "--until", "2026-03-01T12:30:00Z")
    assert listed(config, *window, "--sort", "asc") == ids[1:4]
    args = ("list", "--stream", "access_logs", "--format", "json", "--sort", "asc", "--limit", "1")
    first: dict[str, Any] = json.loads(run_cli("--config", str(config), *args).stdout)
    assert first == RECORDS[0]  # as Zendesk sent it
    table = run_cli("--config", str(config), "list", "--stream", "access_logs",
                    "--format", "table", "--filter", "user_id=42")  # fmt: skip
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["timestamp", "id", "user_id", "ip_address"]
    assert len(rows) == 2


def test_filters_of_the_other_stream_are_refused_in_one_line(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    store.engine.dispose()
    config = write_config(tmp_path, db_url)
    wrong = run_cli("--config", str(config), "list", "--stream", "access_logs",
                    "--filter", "action=update")  # fmt: skip
    assert wrong.returncode == 2
    assert "not one of the access log's" in one_error_line(wrong)
    audit = run_cli("--config", str(config), "list", "--filter", "path=/api/v2/tickets/7")
    assert audit.returncode == 2
    assert "add --stream access_logs" in one_error_line(audit)
    empty = run_cli("--config", str(config), "list", "--stream", "access_logs",
                    "--format", "table")  # fmt: skip
    assert empty.returncode == 0 and empty.stdout == "no records\n"


def test_an_empty_list_says_when_the_access_log_is_not_copied(db_url: str, tmp_path: Path) -> None:
    """Nothing listed and nothing said left a newcomer guessing: the account's config does
    not copy the access log, and the note says so (on stderr; none under --quiet)."""
    store = fresh_store(db_url)
    store.engine.dispose()
    args = ("list", "--stream", "access_logs", "--format", "json")
    plain = write_config(tmp_path, db_url)
    empty = run_cli("--config", str(plain), *args)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == (
        'note: account acme does not copy the access log: add "access_logs" to [sync] '
        "streams, then sync (docs/ACCESS_LOGS.md)\n"
    )
    assert run_cli("--config", str(plain), "--quiet", *args).stderr == ""
    streams = '[sync]\nstreams = ["audit_logs", "access_logs"]\n'
    both = write_config(tmp_path, db_url, text=streams, filename="both.toml")
    assert run_cli("--config", str(both), *args).stderr == ""  # copied, nothing yet
