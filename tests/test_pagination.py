"""The query parameters and the cursor chain: whole chains and every guard.

Chains run over real HTTP against the simulator through the real client; the
guards that the simulator cannot provoke (a proxy's links, long runs of distinct
empty cursors, odd body shapes) use a scripted stand-in for the client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from parts.simulators import Simulators
from support import FakeTime

from etl.common.errors import (
    ConfigError,
    CorruptResponseError,
    PaginationError,
    RequestRejectedError,
    RetryBudgetExhausted,
)
from etl.common.secret import Secret
from etl.common.settings import Credentials, ZendeskSettings
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import (
    AUDIT_LOGS_PATH,
    MAX_EMPTY_PAGES,
    Page,
    audit_log_params,
    iter_pages,
)
from zendesk_sim import Fault, SimulatedZendesk, generate_records

START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2025, 6, 2, tzinfo=UTC)


# -- audit_log_params ---------------------------------------------------------------------------
def test_params_bounds_sort_and_size() -> None:
    assert audit_log_params(START, END, {}) == [
        ("filter[created_at][]", "2025-06-01T00:00:00Z"),
        ("filter[created_at][]", "2025-06-02T00:00:00Z"),
        ("sort", "created_at"),
        ("page[size]", "100"),
    ]


def test_params_convert_to_utc_and_drop_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2025, 6, 1, 2, 0, 5, 999_999, tzinfo=plus_two)
    params = audit_log_params(start, END, {}, sort="-created_at", page_size=7)
    assert params[0] == ("filter[created_at][]", "2025-06-01T00:00:05Z")
    assert ("sort", "-created_at") in params and ("page[size]", "7") in params


def test_params_filters_in_the_bracket_form_in_a_fixed_order() -> None:
    params = audit_log_params(
        START, END, {"action": ["login", "update"], "source_type": ["user"], "actor_id": []}
    )
    assert params[2:5] == [
        ("filter[source_type][]", "user"),
        ("filter[action][]", "login"),
        ("filter[action][]", "update"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"filters": {"colour": ["red"]}}, "unknown audit-log filter"),
        ({"sort": "id"}, "sort must be"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
    ],
    ids=["filter", "sort", "size-0", "size-101"],
)
def test_params_refuse_what_zendesk_would(kwargs: dict[str, Any], complaint: str) -> None:
    options: dict[str, Any] = {"filters": {}, **kwargs}
    with pytest.raises(ConfigError, match=complaint):
        audit_log_params(START, END, **options)


def test_params_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        audit_log_params(datetime(2025, 6, 1), END, {})


# -- chains over real HTTP -----------------------------------------------------------------------
BUDGET = 100_000  # requests a minute: the rate limiter's spacing stays tiny


def make_client(sim: SimulatedZendesk, fake: FakeTime) -> ZendeskClient:
    settings = ZendeskSettings(
        base_url=sim.url,
        credentials=Credentials(oauth_token=Secret("sim-oauth-token")),
        requests_per_minute=BUDGET,
    )
    return ZendeskClient(settings, sleep=fake.sleep, clock=fake.clock, jitter=lambda: 0.0)


@pytest.fixture
def sim(make_sim: Simulators) -> SimulatedZendesk:
    # The account's limit (its headers) is the clients' budget: the job keeps to the lower.
    return make_sim(generate_records(95, start=START, end=END), rate_limit_per_minute=BUDGET)


@pytest.fixture
def client(sim: SimulatedZendesk) -> Iterator[ZendeskClient]:
    with make_client(sim, FakeTime()) as c:
        yield c


def ids(pages: Sequence[Page]) -> list[int]:
    return [record["id"] for page in pages for record in page.records]


def expected_ids(sim: SimulatedZendesk) -> list[int]:
    return [record["id"] for record in sim.visible_records()]


PARAMS = audit_log_params(START, END, {}, page_size=10)


def test_a_whole_chain_in_order(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    pages = list(iter_pages(client, PARAMS))
    assert [p.number for p in pages] == list(range(1, 11))
    assert [p.has_more for p in pages] == [True] * 9 + [False]
    assert ids(pages) == expected_ids(sim)
    # Every request is the first one plus a cursor: the filters are ours, never the links'.
    for logged in sim.requests:
        assert logged.query["filter[created_at][]"] == [
            "2025-06-01T00:00:00Z",
            "2025-06-02T00:00:00Z",
        ]


def test_pages_are_fetched_lazily(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    pages = iter_pages(client, PARAMS)
    next(pages)
    next(pages)
    assert len(sim.requests) == 2


def test_an_empty_window_is_one_empty_page(client: ZendeskClient) -> None:
    params = audit_log_params(
        datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC), {}
    )
    assert list(iter_pages(client, params)) == [Page(1, [], False)]


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
def test_retries_inside_a_chain_are_invisible(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(
        Fault("status", status=503, retry_after=2, skip=3),
        Fault("reset", skip=1),
        Fault("truncate"),
    )
    with make_client(sim, fake) as c:
        pages = list(iter_pages(c, PARAMS))
    assert ids(pages) == expected_ids(sim)
    assert len(pages) == 10
    # Retry-After 2; then a reset and, on its retry, a truncated body: backoff 0.5, 1.0
    # (jitter 0). The tiny sleeps are the rate limiter's spacing on a clock that only
    # moves when someone sleeps.
    assert [s for s in fake.sleeps if s >= 0.1] == [2.0, 0.5, 1.0]


def test_a_proxy_whose_links_name_another_host_falls_back_to_the_cursor(
    sim: SimulatedZendesk, client: ZendeskClient
) -> None:
    """Links rewritten to the real Zendesk host: continue with page[after], never go there."""

    class Proxy:
        base_url = client.base_url

        def get_json(
            self,
            url: str,
            params: Sequence[tuple[str, str]] | None = None,
            check: Callable[[dict[str, Any]], object] | None = None,
        ) -> dict[str, Any]:
            def rewrite_then_check(body: dict[str, Any]) -> None:
                if body["links"].get("next"):
                    query = urlsplit(body["links"]["next"]).query
                    body["links"]["next"] = f"https://acme.zendesk.com/api/v2/audit_logs?{query}"
                if check is not None:
                    check(body)

            return client.get_json(url, params, check=rewrite_then_check)

    pages = list(iter_pages(Proxy(), PARAMS))
    assert ids(pages) == expected_ids(sim)
    later = sim.requests[1:]
    assert later and all(r.query["page[after]"][0].startswith("+/+/") for r in later)
    assert all(r.query["page[size]"] == ["10"] for r in later)


def test_a_repeated_cursor_is_a_loop(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    sim.inject(Fault("repeat_cursor", skip=2))
    pages = iter_pages(client, PARAMS)
    with pytest.raises(PaginationError, match="already seen"):
        list(pages)


def test_a_foreign_next_without_a_cursor_is_corrupt_until_the_budget_ends(
    sim: SimulatedZendesk, client: ZendeskClient
) -> None:
    sim.inject(Fault("foreign_next", skip=1, times=-1))
    with pytest.raises(RetryBudgetExhausted, match="another host") as caught:
        list(iter_pages(client, PARAMS))
    assert "evil.example.net" in str(caught.value)
    assert client.stats.corrupt == client.stats.requests - 1 > 1


def test_has_more_without_a_cursor_is_retried(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    """Never taken as the last page: the same request again, and the chain goes on."""
    sim.inject(Fault("no_cursor", skip=2))
    assert ids(list(iter_pages(client, PARAMS))) == expected_ids(sim)
    assert client.stats.corrupt == 1
    assert sim.requests[2].query == sim.requests[3].query


def test_has_more_without_a_cursor_for_good_stops(
    sim: SimulatedZendesk, client: ZendeskClient
) -> None:
    sim.inject(Fault("no_cursor", times=-1))
    with pytest.raises(RetryBudgetExhausted, match="no after_cursor"):
        list(iter_pages(client, PARAMS))


def test_a_few_empty_pages_are_walked_through(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    sim.inject(Fault("empty_page", skip=1, times=3))
    pages = list(iter_pages(client, PARAMS))
    assert ids(pages) == expected_ids(sim)
    assert [len(p.records) for p in pages][:5] == [10, 0, 0, 0, 10]


def test_endless_empty_pages_stop(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    sim.inject(Fault("empty_page", times=-1))
    with pytest.raises(PaginationError, match="empty pages"):
        list(iter_pages(client, PARAMS))
    assert len(sim.requests) == MAX_EMPTY_PAGES + 1


@pytest.mark.parametrize("kind", ["shuffle", "duplicate", "mangle"])
def test_odd_records_pass_through_for_records_py_to_judge(
    sim: SimulatedZendesk, client: ZendeskClient, kind: str
) -> None:
    sim.inject(Fault(kind, skip=1))
    pages = list(iter_pages(client, PARAMS))
    got = ids(pages)
    assert sorted(set(got)) == sorted(expected_ids(sim))
    assert len(got) == len(expected_ids(sim)) + (1 if kind == "duplicate" else 0)
    if kind == "mangle":
        assert "actor_name" not in pages[1].records[0]
    assert len(pages) == 10


def test_an_expired_cursor_is_rejected_not_retried(
    sim: SimulatedZendesk, client: ZendeskClient
) -> None:
    params = [*PARAMS, ("page[after]", "bm90LWEtY3Vyc29y")]
    with pytest.raises(RequestRejectedError, match="400"):
        list(iter_pages(client, params))
    assert len(sim.requests) == 1


# -- guards the simulator cannot provoke ---------------------------------------------------------
class Scripted:
    """Answers get_json from a list of bodies and records what it was asked."""

    base_url = "https://acme.zendesk.com"

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.bodies = iter(bodies)
        self.calls: list[tuple[str, list[tuple[str, str]] | None]] = []

    def get_json(
        self,
        url: str,
        params: Sequence[tuple[str, str]] | None = None,
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        self.calls.append((url, list(params) if params is not None else None))
        body = next(self.bodies)
        if check is not None:
            check(body)
        return body


def page(
    records: list[Any], has_more: bool, cursor: str | None, nxt: str | None = None
) -> dict[str, Any]:
    return {
        "audit_logs": records,
        "meta": {"has_more": has_more, "after_cursor": cursor, "before_cursor": None},
        "links": {"next": nxt, "prev": None},
    }


def test_a_same_origin_next_link_is_never_followed_only_its_cursor_is_taken() -> None:
    """Continuation is ours: the original request plus the link's cursor (a ``+`` kept)."""
    nxt = "https://acme.zendesk.com/api/v2/audit_logs?page%5Bafter%5D=a%2Bb&page%5Bsize%5D=2"
    script = Scripted([page([1, 2], True, None, nxt), page([3], False, None)])
    assert [p.records for p in iter_pages(script, [("page[size]", "2")])] == [[1, 2], [3]]
    assert script.calls[1] == (AUDIT_LOGS_PATH, [("page[size]", "2"), ("page[after]", "a+b")])


def test_the_cursor_fallback_replaces_page_after_in_the_original_params() -> None:
    script = Scripted([page([1], True, "c+1"), page([2], True, "c/2"), page([3], False, None)])
    list(iter_pages(script, [("sort", "created_at"), ("page[after]", "old")]))
    assert [call[1] for call in script.calls] == [
        [("sort", "created_at"), ("page[after]", "old")],
        [("sort", "created_at"), ("page[after]", "c+1")],
        [("sort", "created_at"), ("page[after]", "c/2")],
    ]


def test_distinct_empty_cursors_stop_after_the_limit() -> None:
    bodies = [page([], True, f"c{i}") for i in range(MAX_EMPTY_PAGES + 5)]
    script = Scripted(bodies)
    with pytest.raises(PaginationError, match=f"{MAX_EMPTY_PAGES + 1} empty pages"):
        list(iter_pages(script, []))
    assert len(script.calls) == MAX_EMPTY_PAGES + 1


def test_a_record_resets_the_empty_count() -> None:
    bodies = [page([], True, f"c{i}") if i % 20 else page([i], True, f"c{i}") for i in range(60)]
    script = Scripted([*bodies, page([], False, None)])
    assert len(list(iter_pages(script, []))) == 61


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"meta": {"has_more": False}}, "no audit_logs list"),
        ({"audit_logs": {"1": {}}, "meta": {}}, "no audit_logs list"),
        ({"audit_logs": []}, "meta is not an object"),
        ({"audit_logs": [], "meta": [1]}, "meta is not an object"),
        ({"audit_logs": [], "meta": {"has_more": "yes"}}, "has_more"),
        ({"audit_logs": [], "meta": {}}, "has_more is missing"),
        ({"audit_logs": [1], "meta": {"has_more": None}}, "has_more"),
        ({"audit_logs": [1], "meta": {"has_more": True}}, "no after_cursor"),
        (page([1], True, None, "https://elsewhere.example.com/next"), "another host"),
    ],
    ids=[
        "no-list", "dict-not-list", "no-meta", "meta-list", "has-more-string",
        "no-has-more", "has-more-null", "has-more-no-way-on", "has-more-foreign-link",
    ],
)  # fmt: skip
def test_bodies_of_the_wrong_shape_are_corrupt(body: dict[str, Any], complaint: str) -> None:
    with pytest.raises(CorruptResponseError, match=complaint):
        list(iter_pages(Scripted([body]), []))


def test_the_loop_memory_is_bounded() -> None:
    # The same cursor 1,500 pages later is no longer remembered: memory stays flat.
    bodies = [page([i], True, f"c{i}") for i in range(1001)]
    bodies += [page([-1], True, "c0"), page([], False, None)]
    assert len(list(iter_pages(Scripted(bodies), []))) == 1003
    bodies = [page([i], True, f"c{i}") for i in range(10)] + [page([-1], True, "c5")]
    with pytest.raises(PaginationError, match="already seen"):
        list(iter_pages(Scripted(bodies), []))


def test_params_pairs_survive_the_http_layer(sim: SimulatedZendesk, client: ZendeskClient) -> None:
    params = audit_log_params(START, END, {"action": ["create", "update"]}, page_size=5)
    list(iter_pages(client, params))
    first = sim.requests[0]
    assert first.query["filter[action][]"] == ["create", "update"]


# -- what an answer must keep to (etl.zendesk.promises) ----------------------------------------
WINDOW_PARAMS = audit_log_params(START, END, {"action": ["login"]}, page_size=2)


def rec(record_id: int, minute: int) -> dict[str, Any]:
    return {"id": record_id, "created_at": f"2025-06-01T00:{minute:02d}:00Z"}


def link(query: str) -> str:
    return f"https://acme.zendesk.com/api/v2/audit_logs.json?{query}&page%5Bafter%5D=c1"


OURS = (
    "filter%5Bcreated_at%5D%5B%5D=2025-06-01T00%3A00%3A00Z&"
    "filter%5Bcreated_at%5D%5B%5D=2025-06-02T00%3A00%3A00%2B00%3A00&"
    "filter%5Baction%5D%5B%5D=login&page%5Bsize%5D=02&sort=created_at"
)


def test_a_next_link_equal_in_meaning_is_accepted() -> None:
    """The same instants in another spelling, parameters in another order, ``.json``."""
    script = Scripted([page([rec(1, 1)], True, None, link(OURS)), page([rec(2, 2)], False, None)])
    assert len(list(iter_pages(script, WINDOW_PARAMS))) == 2
    assert script.calls[1][1] == [*WINDOW_PARAMS, ("page[after]", "c1")]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        (OURS.replace("00%3A00%3A00Z", "00%3A40%3A00Z", 1), "filter[created_at][]"),
        (OURS.replace("&sort=created_at", ""), "sort"),
        (OURS + "&filter%5Baction%5D%5B%5D=update", "filter[action][]"),
        (OURS.replace("size%5D=02", "size%5D=100"), "page[size]"),
        (OURS + "&page%5Bbefore%5D=x", "page[before]"),
    ],
    ids=["window", "sort-dropped", "filter-added", "page-size", "page-before"],
)
def test_a_next_link_that_would_change_the_query_is_corrupt(query: str, names: str) -> None:
    body = page([rec(1, 1)], True, "c1", link(query))
    with pytest.raises(CorruptResponseError, match=re.escape(f"({names})")):
        list(iter_pages(Scripted([body]), WINDOW_PARAMS))


def test_records_out_of_the_window_or_order_are_corrupt() -> None:
    late = {"id": 3, "created_at": "2025-06-02T00:00:01Z"}
    with pytest.raises(CorruptResponseError, match="outside the requested window"):
        list(iter_pages(Scripted([page([rec(1, 1), late], False, None)]), WINDOW_PARAMS))
    with pytest.raises(CorruptResponseError, match="out of order"):
        list(iter_pages(Scripted([page([rec(1, 5), rec(2, 4)], False, None)]), WINDOW_PARAMS))
    # across pages: the second page starts before the first one ended
    bodies = [page([rec(1, 4), rec(2, 5)], True, "c1"), page([rec(3, 3)], False, None)]
    pages = iter_pages(Scripted(bodies), WINDOW_PARAMS)
    next(pages)
    with pytest.raises(CorruptResponseError, match="00:03:00Z after 2025-06-01T00:05:00Z"):
        next(pages)


def test_the_bounds_are_inclusive_and_records_without_a_time_are_not_judged() -> None:
    edges = [rec(1, 0), {"id": 2, "created_at": "yesterday"}, {"id": 3}, rec(4, 0)]
    last = {"id": 5, "created_at": "2025-06-02T00:00:00Z"}
    # (a full last page keeps its cursor, as Zendesk's do: asked once more, an empty end)
    script = Scripted([page([*edges, last], False, "c1"), page([], False, None)])
    assert len(list(iter_pages(script, WINDOW_PARAMS)))


def test_newest_first_queries_are_held_to_their_own_order() -> None:
    params = audit_log_params(START, END, {}, sort="-created_at", page_size=2)
    end = page([], False, None)
    assert list(iter_pages(Scripted([page([rec(2, 5), rec(1, 4)], False, "c1"), end]), params))
    with pytest.raises(CorruptResponseError, match="newest first"):
        list(iter_pages(Scripted([page([rec(1, 4), rec(2, 5)], False, None)]), params))


def test_the_position_is_proven_only_once_the_order_shows() -> None:
    """A first page all of one second proves nothing (newest first looks the same)."""
    bodies = [
        page([rec(1, 4), rec(2, 4)], True, "c1"),
        page([rec(3, 4), rec(4, 6)], True, "c2"),
        page([rec(5, 7)], False, None),
    ]
    positions = [p.position for p in iter_pages(Scripted(bodies), WINDOW_PARAMS)]
    assert positions == [
        None,
        datetime(2025, 6, 1, 0, 6, tzinfo=UTC),
        datetime(2025, 6, 1, 0, 7, tzinfo=UTC),
    ]
    one_second = [page([rec(1, 4)], True, "c1"), page([rec(2, 4)], False, None)]
    assert [p.position for p in iter_pages(Scripted(one_second), WINDOW_PARAMS)] == [
        None,
        datetime(2025, 6, 1, 0, 4, tzinfo=UTC),  # the last page: the whole window was read
    ]


def test_pages_of_records_already_read_end_the_chain() -> None:
    """Cursors with a nonce over the same records without a usable time (rejects to be):
    nothing new, page after page."""
    same = [{"id": 1}, {"id": 2, "created_at": "soon"}]
    bodies = [page(list(same), True, f"nonce-{i}") for i in range(MAX_EMPTY_PAGES + 5)]
    script = Scripted(bodies)
    with pytest.raises(PaginationError, match="no record not already read"):
        list(iter_pages(script, WINDOW_PARAMS))
    assert len(script.calls) == MAX_EMPTY_PAGES + 2


def test_a_full_last_page_without_a_cursor_to_confirm_it_is_refused() -> None:
    """Believed, it had the rest of the window taken as read (a backfill's slice, a run's
    window to its end), lost for good; with a cursor it is confirmed by one more request."""
    full = page([rec(1, 4), rec(2, 5)], False, None)
    with pytest.raises(CorruptResponseError, match="full page says it is the last"):
        list(iter_pages(Scripted([full]), WINDOW_PARAMS))
    looping = [page([rec(1, 4), rec(2, 5)], True, "c1"), page([rec(3, 6), rec(4, 7)], False, "c1")]
    with pytest.raises(CorruptResponseError, match="full page says it is the last"):
        list(iter_pages(Scripted(looping), WINDOW_PARAMS))
    confirmed = [page([rec(1, 4), rec(2, 5)], False, "c1"), page([rec(3, 6)], False, None)]
    assert [len(p.records) for p in iter_pages(Scripted(confirmed), WINDOW_PARAMS)] == [2, 1]


def test_a_page_of_records_already_read_is_refused() -> None:
    """A page holding only records of the newest second that earlier pages held already
    was sent in place of the next one (its cursor may pass records never sent): a corrupt
    answer, retried, where the stall guard let 20 go by and the chain went on past them."""
    same = [rec(1, 4), rec(2, 4)]
    script = Scripted([page(list(same), True, "c1"), page(list(same), True, "c2")])
    with pytest.raises(CorruptResponseError, match="read on an earlier page of this query"):
        list(iter_pages(script, WINDOW_PARAMS))
    assert len(script.calls) == 2
    # One of them new, or a later second: a page like any other.
    for then in ([rec(2, 4), rec(3, 4)], [rec(2, 4), rec(1, 5)]):
        chain = [page(list(same), True, "c1"), page(then, False, "c2"), page([], False, None)]
        assert len(list(iter_pages(Scripted(chain), WINDOW_PARAMS))) == 3
