"""The backfill plan (etl/sync/plan.py): readers, pairs, splits, proofs and the contiguous read
point, without threads, a database or a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import sim_account

from etl.common.errors import CorruptResponseError
from etl.sync.pagecheck import WindowCheck
from etl.sync.plan import MIN_PART_PAGES, MIN_SPLIT_PAGES, Plan, Proof, Slice, saved
from etl.sync.window import BOUND_SLACK, Window

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
WINDOW = Window(T0, T0 + 10 * HOUR)


def test_a_new_plan_is_one_unstarted_slice_with_nothing_read() -> None:
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    assert (only.start, only.end) == (WINDOW.start, WINDOW.end)
    assert plan.unstarted() is only
    assert plan.read_point({}) is None  # nothing read: the watermark stays
    assert not plan.finished()


def test_a_free_fetcher_reads_a_busy_slice_downwards_from_its_end() -> None:
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    plan.took_page(up, T0 + 10 * MINUTE, T0, has_more=True)
    assert plan.unstarted() is None
    assert plan.pair_candidate() is only  # no split point to guess
    down = plan.begin_down(only)
    assert (down.query_start, down.query_end) == (T0 + 10 * MINUTE - BOUND_SLACK, WINDOW.end)
    assert plan.pair_candidate() is None


def test_a_slice_is_done_once_committed_pages_from_both_ends_meet() -> None:
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    first, _ = plan.took_page(up, T0 + 2 * HOUR, T0, has_more=True)
    down = plan.begin_down(only)
    top, finished = plan.took_page(down, WINDOW.end, T0 + 5 * HOUR, has_more=True)
    assert not finished
    meet, finished = plan.took_page(up, T0 + 5 * HOUR + MINUTE, T0 + 2 * HOUR, has_more=True)
    assert finished and only.fetched  # the up reader passed the down reader's oldest
    # The writer decides from committed pages only: the down page alone proves a suffix.
    pending = plan.progress([(only, top)], {})
    assert pending[only] == (None, T0 + 5 * HOUR, False)
    assert saved(only, pending[only]) == (None, False, T0 + 5 * HOUR + BOUND_SLACK)
    pending |= plan.progress([(only, first)], pending)
    assert not pending[only][2]
    assert plan.read_point(pending) == T0 + 2 * HOUR
    pending |= plan.progress([(only, meet)], pending)
    assert pending[only][2]  # position 5h01 > low 5h: covered
    assert saved(only, pending[only]) == (WINDOW.end, True, WINDOW.end)
    assert plan.read_point(pending) == WINDOW.end


def test_nothing_proves_a_slice_read_past_what_its_pages_cover() -> None:
    """The 2099 bug: a page's proof is its own records, never 'past the end'."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    proof, finished = plan.took_page(up, T0 + HOUR, T0, has_more=True)
    assert not finished
    assert plan.progress([(only, proof)], {})[only] == (T0 + HOUR, None, False)
    # An upward query that ends proves its window, which holds the slice.
    last = Proof(False, None, True)
    assert plan.progress([(only, last)], {})[only][2]
    # A downward query that ends proves its own window only: down to its start.
    down_end = Proof(True, T0 + HOUR, True)
    assert not plan.progress([(only, down_end)], {})[only][2]


def test_a_page_all_of_one_second_proves_nothing_until_its_readers_order_shows() -> None:
    """A page of one burst second looks the same oldest or newest first (a server that
    ignored the sort: tests/test_backfill_sort.py, records lost for good). It proves
    nothing, for the fetchers as for the writer, until a page shows the order or the
    query ends: a fetcher that took it for proof would stop a slice the writer never
    sees done."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    burst = T0 + HOUR
    up = plan.begin_up(only)
    first, _ = plan.took_page(up, burst, burst, has_more=True)
    assert first.value is None and up.proof() is None
    down = plan.begin_down(only)
    top, finished = plan.took_page(down, burst, burst, has_more=True)
    assert top.value is None and not finished  # old code: "everything after the burst"
    end, finished = plan.took_page(down, burst, burst, has_more=False)
    assert end.value == burst - BOUND_SLACK  # a query that ended: its window, to its start
    assert not only.fetched  # up's frontier (the burst) is no proof yet
    pending = plan.progress([(only, first), (only, top), (only, end)], {})
    assert not pending[only][2]
    meet, finished = plan.took_page(up, burst + MINUTE, burst, has_more=True)
    assert meet.value == burst + MINUTE and finished and only.fetched
    assert plan.progress([(only, meet)], pending)[only][2]


def test_a_follower_starts_from_the_end_where_the_reader_before_proved_nothing() -> None:
    """A downward reader whose pages were all of one second may have read the bottom of
    its window (answered oldest first): a new reader after it asks from the slice's end,
    not from that second, else what lies between was taken for read once its order shows."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    plan.took_page(up, T0 + 10 * MINUTE, T0, has_more=True)
    down = plan.begin_down(only)
    burst = T0 + HOUR
    plan.took_page(down, burst, burst, has_more=True)
    down.hand_over()  # (stopped short; its query not kept)
    follower = plan.begin_down(only)
    assert follower is not down and follower.query_end == WINDOW.end
    assert follower.proof() is None
    plan.took_page(follower, WINDOW.end, burst, has_more=True)  # its order shows
    ordered = plan.begin_down(only)  # after it: on from its frontier, which is proof
    assert ordered.query_end == burst + BOUND_SLACK and ordered.proof() == burst


def test_a_split_cuts_the_gap_and_hands_the_downward_reader_on() -> None:
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    up = plan.begin_up(first)
    plan.took_page(up, T0 + 10 * MINUTE, T0, has_more=True)
    down = plan.begin_down(first)
    plan.took_page(down, WINDOW.end, WINDOW.end - 10 * MINUTE, has_more=True)
    first.low = WINDOW.end - 10 * MINUTE  # committed
    candidate = plan.split_candidate(max_slices=8)
    assert candidate is not None
    victim, (middle,) = candidate  # one reader wanted: one cut, in the middle
    lo, hi = T0 + 10 * MINUTE, WINDOW.end - 10 * MINUTE
    assert victim is first and middle == lo + (hi - lo) / 2
    rest = plan.cut(first, middle)
    assert rest == (middle - BOUND_SLACK, hi + BOUND_SLACK)  # its row ends where low proves
    second = Slice(None, *rest)
    plan.add_split(second, first, middle)
    assert plan.slices == [first, second]
    assert first.end == middle and first.down is None and first.low is None
    assert (second.end, second.down, second.low) == (WINDOW.end, down, hi)
    assert down.slice is second and second.density() is not None
    assert plan.unstarted() is second  # an upward reader goes to the cut, walking away from it
    assert plan.pair_candidate() is first  # and a downward one from the cut
    assert plan.split_candidate(max_slices=2) is None  # splits are bounded


def test_no_split_once_the_readers_have_passed_the_middle_or_too_little_is_left() -> None:
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    up = plan.begin_up(first)
    plan.took_page(up, T0 + 10 * MINUTE, T0, has_more=True)
    candidate = plan.split_candidate(max_slices=8)
    assert candidate is not None
    _, (middle,) = candidate
    plan.took_page(up, middle + MINUTE, T0 + 10 * MINUTE, has_more=True)  # raced past it
    assert plan.cut(first, middle) is None
    sparse = Plan.whole(WINDOW)
    up = sparse.begin_up(sparse.slices[0])
    sparse.took_page(up, T0 + 9 * HOUR, T0, has_more=True)  # one page: 9 of 10 hours
    assert sparse.slices[0].pages_left() < MIN_SPLIT_PAGES
    assert sparse.split_candidate(max_slices=8) is None
    assert sparse.pair_candidate() is None


def test_a_downward_reader_that_stopped_short_is_followed_once_the_upward_one_reads_on() -> None:
    """Bursty data: the gap looked like less than a page and the downward reader left it to
    the upward one, which then keeps finding full pages. Another downward reader follows,
    from where the first stopped (nothing asked twice, its proof kept), so the last slice of
    a run is not read by one fetcher at a page per latency."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    plan.took_page(up, T0 + 9 * HOUR, T0, has_more=True)  # a quiet stretch: 9 hours a page
    down = plan.begin_down(only)
    plan.took_page(down, WINDOW.end, WINDOW.end - MINUTE, has_more=True)
    down.hand_over()  # the estimate said under a page was left
    assert plan.pair_candidate() is None  # not before the upward reader has read on
    for minute in range(1, 3):  # a burst: full pages a minute apart
        plan.took_page(up, T0 + 9 * HOUR + minute * MINUTE, T0, has_more=True)
    assert not only.fetched
    assert plan.pair_candidate() is only
    again = plan.begin_down(only)
    assert again is only.down and again is not down
    assert again.query_end == WINDOW.end - MINUTE + BOUND_SLACK  # not read again
    assert Plan.final_proof(again).value == WINDOW.end - MINUTE  # what the first proved
    assert plan.pair_candidate() is None


def test_a_follower_goes_on_along_the_stopped_readers_own_query() -> None:
    """The follower of a reader that stopped short is that reader again, its query resumed
    by the backfill at its cursor: its next page is new records, where a fresh query from
    its frontier read that second (up to three pages in a burst) once more."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    plan.took_page(up, T0 + 9 * HOUR, T0, has_more=True)
    down = plan.begin_down(only)
    query = (down.query_start, down.query_end)
    plan.took_page(down, WINDOW.end, WINDOW.end - MINUTE, has_more=True)
    down.hand_over()
    for minute in range(1, 3):
        plan.took_page(up, T0 + 9 * HOUR + minute * MINUTE, T0, has_more=True)
    assert plan.pair_candidate() is only
    again = plan.begin_down(only, resume=True)
    assert again is down and only.down is down and down.handed_at is None
    assert (down.query_start, down.query_end) == query  # the same query, going on
    assert down.pages == 1 and down.frontier == WINDOW.end - MINUTE  # its proof so far
    assert plan.pair_candidate() is None
    # It may stop short again, and be followed again.
    down.hand_over()
    for minute in range(3, 5):
        plan.took_page(up, T0 + 9 * HOUR + minute * MINUTE, T0, has_more=True)
    assert plan.pair_candidate() is only and plan.begin_down(only, resume=True) is down


def test_no_follower_where_the_readers_stand_in_the_same_burst_second() -> None:
    """Both readers' last pages end in one second of hundreds of records: neither proves
    it, the upward reader's next page (asked anyway) does; a follower would ask for the
    same records once more. Only a gap of seconds gets one."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    burst = T0 + 5 * HOUR
    up = plan.begin_up(only)
    plan.took_page(up, burst - MINUTE, T0, has_more=True)
    down = plan.begin_down(only)
    plan.took_page(down, WINDOW.end, burst, has_more=True)
    down.hand_over()
    for _ in range(3):  # pages of the burst second alone
        plan.took_page(up, burst, burst, has_more=True)
    assert not only.fetched  # position == low: that second is not proven yet
    assert only.gap() == (burst, burst)
    assert plan.pair_candidate() is None
    plan.took_page(up, burst + MINUTE, burst, has_more=True)  # its next page meets
    assert only.fetched


def cut_all(plan: Plan, victim: Slice, middles: list[datetime]) -> list[Slice]:
    """Apply a split's cuts as the backfill does: highest first, each a split of its own."""
    made = []
    for middle in middles:
        rest = plan.cut(victim, middle)
        assert rest is not None
        new = Slice(None, *rest)
        plan.add_split(new, victim, middle)
        made.append(new)
    return made


def test_a_run_that_needs_many_readers_cuts_as_many_slices_at_once() -> None:
    """Issue 27's ramp-up: after the first pages, one split makes the slices the readers
    wanted need (two readers each), instead of one per page read at the victim."""
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    up = plan.begin_up(first)
    plan.took_page(up, T0 + MINUTE, T0, has_more=True)  # a page a minute: 600 pages left
    down = plan.begin_down(first)
    plan.took_page(down, WINDOW.end, WINDOW.end - MINUTE, has_more=True)
    candidate = plan.split_candidate(max_slices=64, readers=20)
    assert candidate is not None
    victim, middles = candidate
    assert victim is first and len(middles) == 10  # 20 readers: 10 new slices
    assert middles == sorted(middles, reverse=True)  # highest first
    made = cut_all(plan, first, middles)
    # The slices still cover the window without a gap, neighbours overlapping by the slack.
    assert plan.slices == [first, *reversed(made)]
    assert plan.slices[0].start == WINDOW.start and plan.slices[-1].end == WINDOW.end
    for lower, upper in zip(plan.slices, plan.slices[1:], strict=False):
        assert upper.start == lower.end - BOUND_SLACK
    # Equal parts, each worth reading from both ends.
    lengths = {s.end - s.start for s in plan.slices[1:-1]}
    assert max(lengths) - min(lengths) <= 2 * BOUND_SLACK
    assert all(s.pages_left() >= MIN_PART_PAGES for s in plan.slices[1:])
    # Only the top slice took the downward reader and what it proved; the rest start unread.
    assert made[0].down is down and down.slice is made[0]
    assert all(s.down is None and s.up is None and s.position is None for s in made[1:])
    assert first.down is None and first.end == middles[-1]
    # Every new slice gets an upward reader; a downward one joins a slice read upwards only
    # once its upward reader has read a page there (a part may be a quiet stretch: one page).
    ups = []
    while (unread := plan.unstarted()) is not None:
        ups.append(plan.begin_up(unread))
    assert len(ups) == 10
    assert plan.pair_candidate() is first  # read a page already
    plan.begin_down(first)
    assert plan.pair_candidate() is None
    busy, quiet = ups[0], ups[1]
    plan.took_page(busy, busy.query_start + MINUTE, busy.query_start, has_more=True)
    assert plan.pair_candidate() is busy.slice
    assert plan.took_page(quiet, quiet.query_start + MINUTE, quiet.query_start, False)[1]
    assert quiet.slice.fetched and plan.pair_candidate() is busy.slice  # read by one request
    # Nothing is proven by the cuts: the victim's reader still proves only its own pages.
    proof, _ = plan.took_page(up, T0 + 2 * MINUTE, T0 + MINUTE, has_more=True)
    assert plan.progress([(first, proof)], {})[first] == (T0 + 2 * MINUTE, None, False)
    # And no slice is cut again before its upward reader has read a page since.
    assert plan.split_candidate(max_slices=64, readers=20) is not None  # the victim read one
    assert all(s.cut_after == 0 for s in made)


def test_a_split_into_many_parts_is_bounded_by_pages_and_the_slices_allowed() -> None:
    def read_one_page(spacing: timedelta) -> Plan:
        plan = Plan.whole(WINDOW)
        plan.took_page(plan.begin_up(plan.slices[0]), T0 + spacing, T0, has_more=True)
        return plan

    # Few pages left: the last pages are halved one cut at a time, whatever is wanted.
    few = read_one_page(WINDOW.end - WINDOW.start - HOUR)  # a page per 9 hours: about 1
    assert few.split_candidate(max_slices=64, readers=40) is None
    some = read_one_page((WINDOW.end - WINDOW.start) / 30)  # about 29 pages: one cut
    candidate = some.split_candidate(max_slices=64, readers=40)
    assert candidate is not None and len(candidate[1]) == 1
    # Enough pages: as many parts as MIN_PART_PAGES allows.
    many = read_one_page((WINDOW.end - WINDOW.start) / 100)  # about 99 pages
    candidate = many.split_candidate(max_slices=64, readers=40)
    assert candidate is not None and len(candidate[1]) == int(99 / MIN_PART_PAGES) - 1
    # The plan's bound on slices holds: 3 allowed, 1 there, 2 cuts.
    dense = read_one_page(MINUTE)
    candidate = dense.split_candidate(max_slices=3, readers=40)
    assert candidate is not None and len(candidate[1]) == 2
    # One reader wanted: one cut, the middle, as a split always was.
    candidate = dense.split_candidate(max_slices=64, readers=1)
    assert candidate is not None and len(candidate[1]) == 1


def test_a_burst_in_one_second_does_not_make_the_rest_look_dense() -> None:
    """Seconds per page, averaged: a page of 100 records in one second moves the average a
    little, instead of making the next hours look like a page a second."""
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    up = plan.begin_up(only)
    moment = T0
    for _ in range(3):  # a page every 20 minutes
        plan.took_page(up, moment + 20 * MINUTE, moment, has_more=True)
        moment += 20 * MINUTE
    plan.took_page(up, moment, moment, has_more=True)  # a burst: one second, a page
    left = only.pages_left()
    expected = (WINDOW.end - moment) / (20 * MINUTE)  # about a page per 20 minutes
    assert expected / 2 < left < expected * 2, (left, expected)


def test_the_read_point_is_the_lowest_unfinished_slice_and_the_end_once_all_are_done() -> None:
    a = Slice(1, T0, T0 + 5 * HOUR)
    b = Slice(2, T0 + 5 * HOUR - BOUND_SLACK, WINDOW.end)
    plan = Plan([a, b], WINDOW.start, WINDOW.end)
    pending = plan.progress([(b, Proof(False, T0 + 7 * HOUR, False))], {})
    assert plan.read_point(pending) is None  # a is at its start, the window's
    pending |= plan.progress([(a, Proof(False, T0 + HOUR, False))], pending)
    assert plan.read_point(pending) == T0 + HOUR
    pending |= plan.progress([(a, Proof(False, None, True))], pending)
    assert plan.read_point(pending) == T0 + 7 * HOUR
    pending |= plan.progress([(b, Proof(False, None, True))], pending)
    assert plan.read_point(pending) == WINDOW.end
    plan.commit(pending)
    assert plan.finished()


def test_the_read_point_never_passes_a_record_an_unfinished_slice_may_still_hold() -> None:
    """Issue 23's rule at the plan: the read point (the watermark) says every record created
    before it is stored, so it stops at the lowest unfinished slice's read point, whatever
    the slices above have read, what a fetcher has merely seen, or which slices are done."""
    low = Slice(1, T0, T0 + 3 * HOUR)
    middle = Slice(2, T0 + 3 * HOUR - BOUND_SLACK, T0 + 6 * HOUR)
    top = Slice(3, T0 + 6 * HOUR - BOUND_SLACK, WINDOW.end)
    plan = Plan([low, middle, top], WINDOW.start, WINDOW.end)
    pending = plan.progress(
        [(low, Proof(False, T0 + HOUR, False)), (top, Proof(False, None, True))], {}
    )
    # low read to 1h, middle unread, top done: records of 1h's own second may be on the
    # next page, those of middle all unread; the top slice's end proves nothing below it.
    assert plan.read_point(pending) == T0 + HOUR
    # low's reader has fetched its last pages, not yet committed: nothing more is stored.
    low.fetched = True
    assert plan.read_point(pending) == T0 + HOUR
    # low done: middle, never read, holds the point at its start, not the top's end.
    pending |= plan.progress([(low, Proof(False, None, True))], pending)
    assert plan.read_point(pending) == middle.start
    pending |= plan.progress([(middle, Proof(False, T0 + 4 * HOUR, False))], pending)
    assert plan.read_point(pending) == T0 + 4 * HOUR
    pending |= plan.progress([(middle, Proof(False, None, True))], pending)
    assert plan.read_point(pending) == WINDOW.end


def test_the_watermark_moves_only_forwards_to_the_read_point() -> None:
    """``Plan.watermark`` is what the writer commits: the read point when it is past the
    watermark before, else nothing (a watermark never moves back: what it claimed stays
    claimed, and the store's statement is not the only guard)."""
    low = Slice(1, T0, T0 + 5 * HOUR)
    top = Slice(2, T0 + 5 * HOUR - BOUND_SLACK, WINDOW.end)
    plan = Plan([low, top], WINDOW.start, WINDOW.end)
    pending = plan.progress([(top, Proof(False, T0 + 7 * HOUR, False))], {})
    assert plan.watermark(pending, None) is None  # low unread: nothing proven from the start
    pending |= plan.progress([(low, Proof(False, T0 + HOUR, False))], pending)
    assert plan.watermark(pending, None) == T0 + HOUR  # low's point, never top's
    assert plan.watermark(pending, T0 + 30 * MINUTE) == T0 + HOUR
    assert plan.watermark(pending, T0 + HOUR) is None  # not past it: nothing to write
    assert plan.watermark(pending, T0 + 2 * HOUR) is None  # behind it: it stays
    pending |= plan.progress([(low, Proof(False, None, True))], pending)
    assert plan.watermark(pending, T0 + 2 * HOUR) == T0 + 7 * HOUR


def test_a_resumed_plan_reads_on_to_a_later_end_rereading_the_overlap() -> None:
    account = sim_account("http://127.0.0.1:9", workers=4)
    plan = Plan([Slice(1, T0, T0 + 5 * HOUR)], T0, T0 + 5 * HOUR)
    tail = plan.tail(WINDOW, account)
    assert tail is not None
    start, end = tail
    assert start == T0 + 5 * HOUR - account.sync.overlap - BOUND_SLACK
    assert end == plan.end == WINDOW.end


@pytest.mark.parametrize("done", [False, True], ids=["unfinished", "finished"])
def test_a_resumed_plan_rereads_the_overlap_even_without_time_passed(done: bool) -> None:
    """A run killed mid-plan, or after its last slice but before clearing the plan: the
    next run, in the same second, still re-reads the overlap, as it would after a cleared
    plan."""
    account = sim_account("http://127.0.0.1:9", workers=4)
    plan = Plan([Slice(1, T0, T0 + 5 * HOUR, None, done)], T0, T0 + 5 * HOUR)
    tail = plan.tail(Window(T0, T0 + 5 * HOUR), account)
    assert tail == (T0 + 5 * HOUR - account.sync.overlap - BOUND_SLACK, T0 + 5 * HOUR)
    assert plan.end == T0 + 5 * HOUR


class Answers:
    """A client giving ``bodies`` in turn to the check, as ZendeskClient.get_json does."""

    base_url = "http://127.0.0.1:9"

    def __init__(self, *bodies: list[str]) -> None:
        self.bodies: list[dict[str, Any]] = [
            {"audit_logs": [{"created_at": t} for t in b]} for b in bodies
        ]

    def get_json(self, url: str, params: object = None, check: object = None) -> dict[str, Any]:
        body = self.bodies.pop(0)
        assert callable(check)
        check(body)
        return body


@pytest.mark.parametrize(
    ("down", "pages", "wrong"),
    [
        (False, [["2026-01-01T01:00:00Z", "2099-01-01T00:00:00Z"]], "outside the window"),
        (False, [["2026-01-01T01:00:00Z", "2026-01-01T00:30:00Z"]], "not in ascending"),
        (False, [["2026-01-01T01:00:00Z"], ["2026-01-01T00:59:59Z"]], "not in ascending"),
        (True, [["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]], "not in descending"),
        (False, [["2025-12-31T23:00:00Z"]], "outside the window"),
    ],
)
def test_an_answer_out_of_order_or_outside_its_window_is_corrupt(
    down: bool, pages: list[list[str]], wrong: str
) -> None:
    client = WindowCheck(Answers(*pages), T0, WINDOW.end, down)
    with pytest.raises(CorruptResponseError, match=wrong):
        for _ in pages:
            client.get_json("/api/v2/audit_logs")


def test_an_answer_in_order_within_its_window_passes() -> None:
    pages = [["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"], ["2026-01-01T10:00:00Z", "bad"]]
    client = WindowCheck(Answers(*pages), T0, WINDOW.end, False)
    for _ in pages:
        client.get_json("/api/v2/audit_logs")


def test_a_query_resumed_by_another_client_keeps_its_order_check() -> None:
    """A follower goes on with the query a stopped reader left, on its own client: the
    answers must still continue from the pages before it."""
    first = Answers(["2026-01-01T05:00:00Z", "2026-01-01T04:00:00Z"])
    client = WindowCheck(first, T0, WINDOW.end, True)
    client.get_json("/api/v2/audit_logs")
    second = Answers(["2026-01-01T04:30:00Z"], ["2026-01-01T03:00:00Z"])
    client.use(second)
    assert client.base_url == second.base_url
    with pytest.raises(CorruptResponseError, match="not in descending"):
        client.get_json("/api/v2/audit_logs")  # above where the first client's page ended
    client.get_json("/api/v2/audit_logs")
    assert not first.bodies and not second.bodies
