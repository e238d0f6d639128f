"""The backfill plan (etl/sync/plan.py): slices, splits and the contiguous read point, without
threads, a database or a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import sim_account

from etl.sync.plan import Plan, Slice
from etl.sync.window import BOUND_SLACK, Window

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
WINDOW = Window(T0, T0 + 10 * HOUR)


def running_with_pages(plan: Plan, slice_: Slice, *pages: tuple[datetime, datetime]) -> None:
    """``slice_``'s fetcher started and read pages spanning each (oldest, newest)."""
    slice_.begin()
    for oldest, newest in pages:
        slice_.took_page(newest, oldest, has_more=True)


def test_a_new_plan_is_one_unstarted_slice_with_nothing_read() -> None:
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    assert (only.start, only.end) == (WINDOW.start, WINDOW.end)
    assert plan.unstarted() is only
    assert plan.read_point({}) is None  # nothing read: the watermark stays
    assert not plan.finished()


def test_the_slice_with_most_pages_left_is_split_in_the_middle_of_its_unread_part() -> None:
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    # One page of 100 records covered ten minutes: dense enough to be worth splitting.
    running_with_pages(plan, first, (T0, T0 + timedelta(minutes=10)))
    assert plan.unstarted() is None
    candidate = plan.split_candidate()
    assert candidate is not None
    victim, middle = candidate
    assert victim is first
    frontier = T0 + timedelta(minutes=10)
    assert middle == frontier + (WINDOW.end - frontier) / 2

    rest = plan.cut(first, middle)
    assert rest == (middle - BOUND_SLACK, WINDOW.end)  # neighbours overlap by the slack
    assert first.end == middle
    second = Slice(None, *rest)
    plan.add_split(second, first)
    assert plan.slices == [first, second]
    assert second.density == first.density
    assert plan.unstarted() is second


def test_no_split_once_the_fetcher_has_passed_the_middle_or_too_little_is_left() -> None:
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    running_with_pages(plan, first, (T0, T0 + timedelta(minutes=10)))
    _, middle = plan.split_candidate() or (None, T0)
    first.took_page(middle, middle - timedelta(minutes=1), has_more=True)  # raced past it
    assert plan.cut(first, middle) is None
    assert first.end == WINDOW.end

    sparse = Plan.whole(WINDOW)
    (only,) = sparse.slices
    running_with_pages(sparse, only, (T0, T0 + 9 * HOUR))  # a page per 9 h: ~1 page left
    assert sparse.split_candidate() is None


def test_a_few_pages_left_are_still_split_so_the_end_drains_in_parallel() -> None:
    plan = Plan.whole(WINDOW)
    (only,) = plan.slices
    # A page per 2.5 h, 7.5 h unread: about 3 pages, read one after another otherwise.
    running_with_pages(plan, only, (T0, T0 + 2.5 * HOUR))
    candidate = plan.split_candidate()
    assert candidate is not None and candidate[0] is only


def test_a_page_past_a_moved_end_is_the_slices_last() -> None:
    plan = Plan.whole(WINDOW)
    (first,) = plan.slices
    running_with_pages(plan, first, (T0, T0 + HOUR))
    first.end = T0 + 2 * HOUR  # a split ended it there
    position, last = first.took_page(T0 + 3 * HOUR, T0 + HOUR, has_more=True)
    assert last and position == T0 + 2 * HOUR  # never past its end
    assert first.fetched and not first.running


def test_the_read_point_is_the_lowest_unfinished_slice_and_the_end_once_all_are_done() -> None:
    a = Slice(1, T0, T0 + 4 * HOUR)
    b = Slice(2, T0 + 4 * HOUR - BOUND_SLACK, WINDOW.end)
    plan = Plan([a, b], WINDOW.start, WINDOW.end)

    # b is ahead, but a holds the read point back.
    progress = plan.progress([(b, T0 + 6 * HOUR, False), (a, T0 + HOUR, False)], {})
    assert plan.read_point(progress) == T0 + HOUR
    assert plan.read_point({}) is None  # not committed yet
    plan.commit(progress)
    assert a.read_point() == T0 + HOUR and a.read_from() == T0 + HOUR - BOUND_SLACK

    # a read to its end: b's position is the point; the watermark never moves back.
    progress = plan.progress([(a, T0 + 2 * HOUR, True)], {})
    assert progress[a] == (a.end, True)
    assert plan.read_point(progress) == T0 + 6 * HOUR
    assert plan.watermark(progress, before=T0 + 7 * HOUR) is None
    assert plan.watermark(progress, before=T0 + HOUR) == T0 + 6 * HOUR
    plan.commit(progress)

    # Later pages of one batch build on the pending ones of the same transaction.
    pending = plan.progress([(b, T0 + 8 * HOUR, False)], {})
    progress = plan.progress([(b, None, True)], pending)
    assert progress[b] == (b.end, True)
    plan.commit(progress)
    assert plan.finished()
    assert plan.read_point({}) == WINDOW.end


def test_a_resumed_plan_reads_on_to_a_later_end_rereading_the_overlap() -> None:
    account = sim_account("http://127.0.0.1:9", workers=4)
    plan = Plan([Slice(1, T0, T0 + 5 * HOUR)], T0, T0 + 5 * HOUR)
    assert plan.tail(Window(T0, T0 + 5 * HOUR), account) is None
    tail = plan.tail(WINDOW, account)
    assert tail is not None
    start, end = tail
    assert start == T0 + 5 * HOUR - account.sync.overlap - BOUND_SLACK
    assert end == plan.end == WINDOW.end


def test_pages_left_counts_each_slice_at_its_own_density() -> None:
    """What the progress bar takes as the work left: an empty stretch of history costs
    no pages, a dense stretch many; unknown while a slice left to read has no density."""
    empty = Slice(None, T0 - 1000 * HOUR, T0)
    sparse = Slice(None, T0, T0 + 4 * HOUR)
    dense = Slice(None, T0 + 4 * HOUR, T0 + 10 * HOUR)
    plan = Plan([empty, sparse, dense], empty.start, dense.end)
    assert plan.pages_left() is None  # nothing begun: the 1,000 hours may hold anything
    empty.begin()
    assert empty.took_page(None, None, has_more=False) == (None, True)  # one empty page
    running_with_pages(plan, sparse, (T0, T0 + HOUR))  # a page an hour
    assert plan.pages_left() is None  # the dense slice has not begun
    running_with_pages(plan, dense, (T0 + 4 * HOUR, T0 + 4 * HOUR + timedelta(minutes=6)))
    left = plan.pages_left()
    assert left is not None
    # 3 hours at a page an hour, 5.9 hours at ten pages an hour; nothing for the empty one
    assert abs(left - (3 + 59)) < 0.01
    plan.commit({dense: (dense.end, True)})
    assert abs((plan.pages_left() or 0.0) - 3) < 0.01
