"""``reconcile`` over a long, mostly empty period, in process against the simulator, on each
database: a stretch of days Zendesk has no record of costs a bounded number of statements,
not two a day; the report is the one the day-by-day reading gives for the same data
(computed here, each empty day compared and saved on its own); stored rows on a day Zendesk
says is empty are extra, also at a day's first and last second; a stretch whose save
fails, or a read that fails after it, leaves the run to resume at its first unsaved day,
and a stretch is saved up to each of its days with stored rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from parts.simulators import Simulators
from support import audit_record, fake_time_client, sim_account

from etl.common.errors import AuthError
from etl.integrity import reconcile, reconcile_days
from etl.integrity.reconcile import Period, reconcile_account
from etl.records.audit import parse_record
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import checkpoints
from etl.storage.schema.logs import audit_logs
from zendesk_sim import Fault, SimulatedZendesk

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
UNTIL = TODAY - timedelta(seconds=1)
SHORT, LONG = 30, 300  # days in the periods compared
ZERO_HOUR, LAST_SECOND = timedelta(0), timedelta(days=1) - timedelta(seconds=1)


def _day(days_ago: int, since_midnight: timedelta) -> datetime:
    return TODAY - timedelta(days=days_ago) + since_midnight


# Ten records on four days, pages of three: page 2 ends day 20's and begins day 10's, page
# 3 holds day 10's last second, day 9's first and day 3's first, page 4 day 3's second.
TIMES = [_day(20, timedelta(hours=9, seconds=i)) for i in range(4)]
TIMES += [_day(10, timedelta(hours=9)), _day(10, timedelta(hours=10)), _day(10, LAST_SECOND)]
TIMES += [_day(9, ZERO_HOUR), _day(3, LAST_SECOND), _day(3, LAST_SECOND)]  # after a stretch
RECORDS = [audit_record(9_500_000_000_000 + i, moment) for i, moment in enumerate(TIMES)]
DELETED, EDITED = RECORDS[1]["id"], RECORDS[8]["id"]
# Stored, not at Zendesk: inside stretches (day 15), at the first and last second of empty
# days (5 and 4, 1), and outside both periods (before the long one's start, after UNTIL).
EXTRA_TIMES = [_day(15, timedelta(hours=12)), _day(5, LAST_SECOND), _day(4, ZERO_HOUR),
               _day(1, ZERO_HOUR), _day(LONG + 5, ZERO_HOUR), TODAY]  # fmt: skip
EXTRA = [audit_record(9_600_000_000_000 + i, moment) for i, moment in enumerate(EXTRA_TIMES)]
IN_PERIODS = {r["id"] for r in EXTRA[:4]}


def _store(engine: sa.Engine) -> None:
    """Every record but one, one edited, the extra rows, and a signed checkpoint (which
    empty days name; numbered rows are past its ledger)."""
    rows = []
    for seq, raw in enumerate(RECORDS + EXTRA, start=1):
        if raw["id"] == DELETED:
            continue
        if raw["id"] == EDITED:
            raw = {**raw, "actor_name": "Somebody else"}
        row = parse_record(raw, "acme", TODAY)
        assert isinstance(row, dict)
        rows.append({c.name: row.get(c.name) for c in audit_logs.columns} | {"stored_seq": seq})
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_logs), rows)
        signed = {"size": 3, "head": "0" * 64, "made_at": TODAY, "key_id": "k1", "note": ""}
        conn.execute(sa.insert(checkpoints).values(account="acme", **signed))


def _period(sim: SimulatedZendesk, days: int) -> Period:
    account = sim_account(sim.url, page_size=3)
    return Period(account, TODAY - timedelta(days=days), UNTIL, {"filters": {}}, "{}")


def _day_by_day(run: Any, spans: list[tuple[str, datetime, datetime]]) -> None:
    """The reading before stretches: each empty day opened, compared and saved on its own."""
    for span in spans:
        run._open(span)
        run._finish()


class _Statements:
    """Counts the statements sent on an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


def _run(engine: sa.Engine, sim: SimulatedZendesk, days: int) -> tuple[dict[str, Any], int]:
    """A reconcile of the period's days, its report (without the times the days were
    checked at) and the statements it sent; its progress forgotten, as the CLI does."""
    period = _period(sim, days)
    counter = _Statements(engine)
    with fake_time_client(period.account) as client:
        report = reconcile_account(engine, client, period, client.stats)
    sa.event.remove(engine, "before_cursor_execute", counter._seen)
    reconcile_days.forget(engine, "acme", period.key)
    fields = report.fields() | {"lines": [day.line() for day in report.days]}  # the text's
    for day in fields["days"]:
        assert day.pop("checked_at")
    return fields, counter.count


@pytest.fixture
def setup(migrated_url: str, make_sim: Simulators) -> Iterator[tuple[sa.Engine, SimulatedZendesk]]:
    engine = open_engine(migrated_url)
    _store(engine)
    yield engine, make_sim(RECORDS)
    engine.dispose()


def test_empty_days_cost_no_statement_each_and_the_report_is_the_same(
    setup: tuple[sa.Engine, SimulatedZendesk], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, sim = setup
    with monkeypatch.context() as patched:
        patched.setattr(reconcile._Run, "_empty", _day_by_day)
        expected = {days: _run(engine, sim, days) for days in (SHORT, LONG)}
    for days in (SHORT, LONG):
        report, _ = _run(engine, sim, days)
        assert report == expected[days][0]
        assert len(report["days"]) == days
    statements = {days: _run(engine, sim, days)[1] for days in (SHORT, LONG)}
    # Day by day, each of the 270 more empty days cost a query and a save; now none does.
    assert expected[LONG][1] - expected[SHORT][1] >= 2 * (LONG - SHORT)
    assert statements[LONG] == statements[SHORT] < expected[SHORT][1]
    report = expected[LONG][0]
    found = {kind: {i for d in report["days"] for i in d[kind]} for kind in ("missing", "extra")}
    assert found == {"missing": {DELETED}, "extra": IN_PERIODS}
    extra_days = {d["day"] for d in report["days"] if d["extra"]}
    assert extra_days == {t.date().isoformat() for t in EXTRA_TIMES[:4]}
    empty = [d for d in report["days"] if not d["stored"] and not d["at_zendesk"]]
    assert len(empty) == LONG - 8 and all(d["checkpoint"]["key_id"] == "k1" for d in empty)


def _resumed(engine: sa.Engine, sim: SimulatedZendesk, kept: int) -> None:
    """The next run resumes ``kept`` days and reads from the first unsaved one only; its
    report is the uninterrupted one's."""
    sim.clear_faults()
    sim.clear_log()
    period = _period(sim, LONG)
    with fake_time_client(period.account) as client:
        resumed = reconcile_account(engine, client, period, client.stats)
    assert resumed.resumed == kept
    starts = {r.query["filter[created_at][]"][0] for r in sim.requests}
    assert starts == {resumed.days[kept].start}
    reconcile_days.forget(engine, "acme", period.key)
    fields, _ = _run(engine, sim, LONG)
    assert [d.fields() | {"checked_at": ""} for d in resumed.days] == [
        d | {"checked_at": ""} for d in fields["days"]
    ]


def test_a_stretch_whose_save_fails_is_read_again_from_its_first_day(
    setup: tuple[sa.Engine, SimulatedZendesk],
) -> None:
    engine, sim = setup
    period = _period(sim, LONG)

    def fail_the_stretch(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                         *_: Any) -> None:  # fmt: skip
        # The save of the stretch before day 20's records fails (as a kill during it would).
        if not statement.startswith("INSERT INTO zendesk_audit_reconcile_days"):
            return
        if len(context.compiled_parameters) > 1:
            raise RuntimeError("killed while saving the stretch")

    sa.event.listen(engine, "before_cursor_execute", fail_the_stretch)
    with fake_time_client(period.account) as client, pytest.raises(RuntimeError):
        reconcile_account(engine, client, period, client.stats)
    sa.event.remove(engine, "before_cursor_execute", fail_the_stretch)
    _resumed(engine, sim, 1)  # only the period's first day, saved on its own


def test_a_read_that_fails_after_a_stretch_resumes_at_the_open_day(
    setup: tuple[sa.Engine, SimulatedZendesk],
) -> None:
    engine, sim = setup
    period = _period(sim, LONG)
    # Page 4 (day 3's second record) is refused: the stretch after day 9 (with the extra
    # rows of days 5 and 4) was proven empty by day 3's first, and saved; day 3 is open.
    sim.inject(Fault("status", status=401, skip=3))
    with fake_time_client(period.account) as client, pytest.raises(AuthError):
        reconcile_account(engine, client, period, client.stats)
    _resumed(engine, sim, LONG - 3)


def test_a_stretch_is_saved_up_to_each_day_with_stored_rows(
    setup: tuple[sa.Engine, SimulatedZendesk],
) -> None:
    engine, sim = setup
    period = _period(sim, LONG)
    day_4 = (TODAY - timedelta(days=4)).date().isoformat()

    def fail_at_day_4(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                      *_: Any) -> None:  # fmt: skip
        # The stretch after day 9 has extra rows on days 5 and 4: the save holding day 4
        # fails (as a kill then would); the days up to day 5 were saved before it was read.
        if statement.startswith("INSERT INTO zendesk_audit_reconcile_days") and any(
            row["day"] == day_4 for row in context.compiled_parameters
        ):
            raise RuntimeError("killed while saving day 4")

    sa.event.listen(engine, "before_cursor_execute", fail_at_day_4)
    with fake_time_client(period.account) as client, pytest.raises(RuntimeError):
        reconcile_account(engine, client, period, client.stats)
    sa.event.remove(engine, "before_cursor_execute", fail_at_day_4)
    _resumed(engine, sim, LONG - 4)  # days 300 to 5 kept, day 4 read again
