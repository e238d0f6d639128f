"""The simulator's ``GET /api/v2/access_logs``: filters, cursor pages, the add-on's 403, faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from support import SIM_OAUTH_TOKEN, zendesk_time

from zendesk_sim import AccessSource, Fault, SimulatedZendesk

HEADERS = {"Authorization": f"Bearer {SIM_OAUTH_TOKEN}"}
END = datetime(2026, 11, 2, tzinfo=UTC)
START = END - timedelta(days=1)


def get(sim: SimulatedZendesk, url: str, **params: str) -> requests.Response:
    return requests.get(
        sim.url + url if url.startswith("/") else url, params=params, headers=HEADERS, timeout=10
    )


def all_pages(sim: SimulatedZendesk, **params: str) -> list[dict[str, Any]]:
    answer = get(sim, "/api/v2/access_logs", **params).json()
    records = list(answer["access_logs"])
    while answer["meta"]["has_more"]:
        answer = get(sim, answer["links"]["next"]).json()
        records += answer["access_logs"]
    return records


def view(record_id: str, at: datetime, user: str, url: str | None) -> dict[str, Any]:
    return {"id": record_id, "timestamp": zendesk_time(at), "user_id": user, "url": url}


def test_pages_cover_the_window_once_in_the_order_asked() -> None:
    with SimulatedZendesk(access_records=AccessSource(5_000, start=START, end=END)) as sim:
        start, end = START + timedelta(hours=3), START + timedelta(hours=9)
        params = {"filter[start]": zendesk_time(start), "filter[end]": zendesk_time(end)}
        ascending = all_pages(sim, sort="timestamp", **params)
        descending = all_pages(sim, **params)  # newest first unless asked
        assert not sim.errors
    stamps = [r["timestamp"] for r in ascending]
    assert stamps == sorted(stamps) and stamps[0] >= zendesk_time(start)
    assert stamps[-1] <= zendesk_time(end)
    assert len({r["id"] for r in ascending}) == len(ascending) > 1_000  # ~5000 * 6/24
    assert [r["id"] for r in descending] == [r["id"] for r in reversed(ascending)]
    assert all(isinstance(r["id"], str) and len(r["id"]) == 26 for r in ascending)
    assert any(r["url"] is None and r["graphql"] for r in ascending)  # GraphQL accesses


def test_path_and_user_filters() -> None:
    records = [
        view("01A", START, "11", "/api/v2/tickets/7.json?include=users"),
        view("01B", START + timedelta(minutes=1), "12", "/api/v2/tickets/7.json"),
        view("01C", START + timedelta(minutes=2), "11", "/api/v2/tickets/8.json"),
        view("01D", START + timedelta(minutes=3), "11", None),
    ]
    with SimulatedZendesk(access_records=records) as sim:
        by_path = all_pages(sim, **{"filter[path]": "/api/v2/tickets/7.json"})
        by_user = all_pages(sim, **{"filter[user_id]": "11", "sort": "timestamp"})
    assert sorted(r["id"] for r in by_path) == ["01A", "01B"]
    assert [r["id"] for r in by_user] == ["01A", "01C", "01D"]


def test_page_size_is_capped_and_bad_bounds_are_refused() -> None:
    with SimulatedZendesk(access_records=AccessSource(500, start=START, end=END)) as sim:
        page = get(sim, "/api/v2/access_logs", **{"page[size]": "1000"}).json()
        bad = get(sim, "/api/v2/access_logs", **{"filter[start]": "2026-11-01"})
    assert len(page["access_logs"]) == 100 and page["meta"]["has_more"] is True
    assert bad.status_code == 400 and "filter[start]" in bad.json()["description"]


def test_without_the_addon_every_request_is_a_403() -> None:
    with SimulatedZendesk(
        access_records=AccessSource(10, start=START, end=END), access_addon=False
    ) as sim:
        answer = get(sim, "/api/v2/access_logs")
        audit = get(sim, "/api/v2/audit_logs")
    assert answer.status_code == 403
    assert "Advanced Data Privacy" in answer.json()["description"]
    assert audit.status_code == 200  # the audit log does not need it


def test_faults_reach_the_access_log() -> None:
    with SimulatedZendesk(access_records=AccessSource(300, start=START, end=END)) as sim:
        path = "/api/v2/access_logs"
        sim.inject(
            Fault("status", status=503, path=path),
            Fault("shuffle", path=path),
            Fault("mangle", mangle="out_of_window", path=path),
        )
        unavailable = get(sim, path, sort="timestamp")
        shuffled = get(sim, path, sort="timestamp").json()["access_logs"]
        moved = get(sim, path, sort="timestamp").json()["access_logs"]
        normal = get(sim, path, sort="timestamp").json()["access_logs"]
    assert unavailable.status_code == 503
    assert [r["timestamp"] for r in shuffled] != sorted(r["timestamp"] for r in shuffled)
    assert moved[0]["timestamp"] == "2001-01-01T00:00:00Z" and moved[1:] == normal[1:]


def test_records_added_to_an_empty_access_log_are_served() -> None:
    """The web app serves the simulator's own access log, even while it is empty (an empty
    log is falsy: ``access_log or AccessLog()`` had the app serve another, so records added
    later never showed)."""
    with SimulatedZendesk() as sim:
        assert all_pages(sim) == []
        sim.add_access_records([view("01JLATE", START + timedelta(hours=1), "7", "/x")])
        assert [record["id"] for record in all_pages(sim)] == ["01JLATE"]
