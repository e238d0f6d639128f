"""Real response bodies, corrupted at random positions: stored exactly, or exit 4.

The records of ``tests/data/samples`` (Zendesk's docs, connectors' fixtures)
are served in pages by a hand-made loopback server, encoded as the API does (UTF-8,
characters beyond ASCII as such). Each seeded case spoils one page: cut short (with a
matching or a larger Content-Length), a byte replaced by one no UTF-8 text holds, a
multi-byte character broken, ``has_more`` removed, or the charset declared wrongly.
Spoiled once, the run retries and stores exactly every record; spoiled for good, it
stops with an exit-4 error keeping the pages before, and stores no mangled text ever.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from loopback import Exchange, LoopbackServer
from support import FakeTime, fresh_store, sim_account, stored_rows

from etl.common.errors import EtlError, ExitCode
from etl.sync.account import sync_account
from etl.zendesk.client import ZendeskClient

SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
PER_PAGE = 3
CASES = 48
SEED = 20261204
# Bytes that no UTF-8 text holds anywhere: a replaced byte can never decode to other text.
NEVER_UTF8 = (0xC0, 0xC1, 0xF5, 0xF8, 0xFE, 0xFF)


def sample_records() -> list[dict[str, Any]]:
    def load(name: str) -> Any:
        return json.loads((SAMPLES / name).read_text(encoding="utf-8"))

    records = list(load("zendesk-docs-list-audit-logs.json")["audit_logs"])
    records += load("airbyte-source-zendesk-support-unit-test-audit_logs.json")["audit_logs"]
    for entry in load("airbyte-source-zendesk-support-expected-records-audit_logs.json"):
        data = dict(entry["data"])  # the connector made integers floats; the API does not
        for key in ("id", "actor_id", "source_id"):
            data[key] = int(data[key])
        records.append(data)
    records += [entry["log"] for entry in load("panther-analysis-zendesk-audit-test-logs.json")]
    unique = {r["id"]: r for r in reversed(records)}  # fixtures reuse ids: keep the first
    ordered = sorted(unique.values(), key=lambda r: (r["created_at"], r["id"]))
    # Text beyond ASCII, as real accounts have, so that multi-byte characters get broken.
    first = dict(ordered[0], change_description="Rôle changé → End User 😀", actor_name="Zoë")
    return [first, *ordered[1:]]


@dataclass(frozen=True)
class Spoil:
    kind: str
    page: int  # 0-based
    position: float  # where in the body, as a share of its length
    byte: int
    times: int  # -1: every time

    def describe(self) -> str:
        return f"{self.kind}@{self.position:.2f} page {self.page} x{self.times}"


KINDS = ("cut", "cut-short-length", "replace", "break-char", "no-has-more", "charset")


def cases() -> list[Spoil]:
    rng = random.Random(SEED)
    pages = -(-len(sample_records()) // PER_PAGE)
    return [
        Spoil(
            kind=KINDS[i % len(KINDS)],
            page=rng.randrange(pages),
            position=rng.random(),
            byte=rng.choice(NEVER_UTF8),
            times=rng.choice((1, 2, -1)),
        )
        for i in range(CASES)
    ]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")


def spoil_body(body: bytes, spoil: Spoil) -> tuple[bytes, dict[str, str]]:
    """The spoiled body and its headers."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    at = min(int(spoil.position * len(body)), len(body) - 1)
    if spoil.kind == "cut":
        return body[:at], headers
    if spoil.kind == "cut-short-length":  # promises the whole body, sends part, closes
        return body[:at], {**headers, "Content-Length": str(len(body)), "Connection": "close"}
    if spoil.kind == "replace":
        return body[:at] + bytes([spoil.byte]) + body[at + 1 :], headers
    if spoil.kind == "break-char":  # the lead byte of a multi-byte character, alone
        lead = next((i for i in range(len(body)) if body[i] >= 0xC2), 0)
        return body[: lead + 1] + b"?" + body[lead + 2 :], headers
    if spoil.kind == "no-has-more":
        payload = json.loads(body)
        del payload["meta"]["has_more"]
        return encode(payload), headers
    assert spoil.kind == "charset"  # still UTF-8: only the label lies
    return body, {"Content-Type": "text/html; charset=iso-8859-1"}


def serve(records: list[dict[str, Any]], spoil: Spoil) -> Callable[[Exchange], None]:
    pages = [records[i : i + PER_PAGE] for i in range(0, len(records), PER_PAGE)]
    served = {"spoiled": 0}

    def respond(exchange: Exchange) -> None:
        query = parse_qs(urlsplit(exchange.path).query)
        number = int(query.get("page[after]", ["c0"])[0][1:])
        last = number + 1 >= len(pages)
        # Zendesk's last page keeps its cursor too (a full one is asked once more: empty)
        meta: dict[str, Any] = {"has_more": not last, "after_cursor": f"c{number + 1}"}
        links: dict[str, Any] = {"next": None}
        if not last:
            host = exchange.handler.headers["Host"]
            # Zendesk's next link: the same query, the cursor moved on
            onward = [(k, v) for k, vs in query.items() for v in vs if k != "page[after]"]
            onward.append(("page[after]", f"c{number + 1}"))
            links["next"] = f"http://{host}/api/v2/audit_logs?{urlencode(onward)}"
        page = pages[number] if number < len(pages) else []
        body = encode({"audit_logs": page, "meta": meta, "links": links})
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if number == spoil.page and (spoil.times == -1 or served["spoiled"] < spoil.times):
            served["spoiled"] += 1
            body, headers = spoil_body(body, spoil)
        exchange.send(200, headers, body)

    return respond


@pytest.mark.parametrize("spoil", cases(), ids=lambda s: s.describe())
def test_a_spoiled_sample_page_is_stored_exactly_or_stops_with_exit_4(
    sqlite_url: str, spoil: Spoil
) -> None:
    records = sample_records()
    with LoopbackServer(serve(records, spoil)) as server:
        account = sim_account(server.url, page_size=PER_PAGE, workers=1, retry_budget=30)
        store = fresh_store(sqlite_url)
        fake = FakeTime()
        with ZendeskClient(account.zendesk, sleep=fake.sleep, clock=fake.clock) as client:
            try:
                summary = sync_account(account, client, store)
                failed: EtlError | None = None
            except EtlError as exc:
                failed = exc
    stored = {row["id"]: row for row in stored_rows(sqlite_url)}
    truth = {r["id"]: r for r in records}
    for record_id, row in stored.items():  # whatever is stored is exactly what was sent
        assert row["raw"] == truth[record_id], spoil
        for value in row.values():
            assert "\ufffd" not in str(value) and "Ã" not in str(value)
    harmless = spoil.kind == "charset" or spoil.times != -1
    if failed is None:
        assert harmless, f"{spoil}: a page spoiled for good was taken as good"
        assert summary.status == "success"
        assert set(stored) == set(truth)
    else:
        assert failed.exit_code == ExitCode.UPSTREAM, (spoil, failed)
        assert "\n" not in str(failed)
        before = {r["id"] for r in records[: spoil.page * PER_PAGE]}
        assert set(stored) == before  # every page before the spoiled one, and no more


def test_a_page_without_has_more_is_never_the_last(sqlite_url: str) -> None:
    """One worker, 200 records: a page without has_more is retried, not the end of it."""
    records = [
        {"id": i, "created_at": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "action": "update"}
        for i in range(1, 201)
    ]
    spoil = Spoil("no-has-more", page=33, position=0.0, byte=0, times=1)  # the page of 100-102
    with LoopbackServer(serve(records, spoil)) as server:
        account = sim_account(server.url, page_size=PER_PAGE, workers=1, retry_budget=30)
        store = fresh_store(sqlite_url)
        fake = FakeTime()
        with ZendeskClient(account.zendesk, sleep=fake.sleep, clock=fake.clock) as client:
            summary = sync_account(account, client, store)
            assert client.stats.corrupt == 1
    assert summary.status == "success"
    assert {row["id"] for row in stored_rows(sqlite_url)} == set(range(1, 201))
