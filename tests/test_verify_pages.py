"""``verify``'s reading of a large store, made small: pages and windows of a few rows, rows
whose stored text is the canonical one (hashed as it is) and rows whose text is not
(parsed first), and MariaDB's page read as one value, with its row-by-row fallback."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from parts.databases import skip_unless_mariadb
from parts.verify.signed import synced, verified_in_process

from etl.integrity import pages, streams
from etl.integrity.checks import raw as raw_text
from etl.integrity.mariadb import frames as mariadb_frames
from etl.integrity.mariadb import ledger as mariadb_ledger
from etl.integrity.mariadb import rows as mariadb_rows
from etl.integrity.reads import sql as shared
from etl.records import chain
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import ledger
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk


def _findings(db_url: str) -> list[tuple[str, str | None, int | None]]:
    return [(f.kind, f.record_id, f.entry) for f in verified_in_process(db_url).findings]


def _rows(db_url: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(stored_seq, id, raw) of every row, by stored_seq."""
    engine = open_engine(db_url)
    with engine.connect() as conn:
        query = sa.select(audit_logs.c.stored_seq, audit_logs.c.id, audit_logs.c.raw)
        found = [tuple(row) for row in conn.execute(query.order_by(audit_logs.c.stored_seq))]
    engine.dispose()
    return found


def _store_text(db_url: str, record_id: int, text: str) -> None:
    """Write ``raw`` as exactly ``text`` (jsonb keeps its own form of it)."""
    engine = open_engine(db_url)
    cast = "CAST(:text AS jsonb)" if engine.dialect.name == "postgresql" else ":text"
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE zendesk_audit_logs SET raw = {cast} WHERE id = :id"),
            {"text": text, "id": record_id},
        )
    engine.dispose()


def _spaced(raw: dict[str, Any]) -> str:
    """``raw`` as JSON that is not its canonical text: keys reversed, spaces."""
    return "{" + ", ".join(f"{orjson.dumps(k).decode()}: {orjson.dumps(raw[k]).decode()}"
                           for k in sorted(raw, reverse=True)) + "}"  # fmt: skip


def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages and windows of 7: a few hundred rows take many of each."""
    monkeypatch.setattr(shared, "PAGE", 7)
    monkeypatch.setattr(shared, "MARIADB_PAGE", 7)


def _findings_both_ways(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str | None, int | None]]:
    """The findings, the same in pages of the usual size (one page here) and of 7."""
    whole = _findings(db_url)
    _small_pages(monkeypatch)
    assert _findings(db_url) == whole
    return whole


def test_canonical_and_other_texts_over_many_pages_and_a_gap(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced(tmp_path, zendesk, db_url, None)
    rows = _rows(db_url)
    # The same records as other texts (parsed, then found the same), and two changed: one
    # written as canonical text, one not; both found modified.
    for _, record_id, raw in rows[20:30]:
        _store_text(db_url, record_id, _spaced(raw))
    _, canonical_id, raw = rows[40]
    changed = orjson.dumps({**raw, "actor_name": "Nobody"}, option=orjson.OPT_SORT_KEYS)
    _store_text(db_url, canonical_id, changed.decode())
    _, spaced_id, raw = rows[41]
    _store_text(db_url, spaced_id, _spaced({**raw, "actor_name": "Nobody"}))
    # A gap of 60 numbers (wider than a first window): each a deleted record.
    gone = [record_id for _, record_id, _ in rows[100:160]]
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_logs).where(audit_logs.c.id.in_(gone)))
    engine.dispose()

    found = _findings_both_ways(db_url, monkeypatch)
    assert sorted((kind, record_id) for kind, record_id, _ in found) == sorted(
        [("modified", str(canonical_id)), ("modified", str(spaced_id))]
        + [("deleted", str(record_id)) for record_id in gone]
    )


def test_a_row_sharing_a_number_across_a_page_boundary_is_inserted(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two rows with one stored_seq (tampering), the second past the page's end: the keyset
    continuation neither loses nor repeats it."""
    synced(tmp_path, zendesk, db_url, None)
    rows = _rows(db_url)
    seq, _, _ = rows[13]  # the 7th of the second page
    _, moved, _ = rows[50]
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == moved).values(stored_seq=seq))
    engine.dispose()
    found = _findings_both_ways(db_url, monkeypatch)
    kinds = {(kind, record_id) for kind, record_id, _ in found}
    # the moved row has no entry at its new number, and its own entry no row any more
    assert {("deleted", str(moved)), ("inserted", str(moved))} <= kinds
    assert len(found) == len(set(found))


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_reads_a_page_row_by_row_when_its_value_is_not_whole(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_unless_mariadb(db_url, "MariaDB's read of a page as one value")
    synced(tmp_path, zendesk, db_url, None)
    _small_pages(monkeypatch)
    clean = _findings(db_url)
    real = mariadb_frames.frames
    cut = 0

    def short(stream: str, text_ids: bool = False) -> Any:
        decode = real(stream, text_ids)

        def shorter(heads: str, data: bytes, arrays: bytes) -> list[Any]:
            nonlocal cut
            cut += 1
            if cut % 3 == 1:
                return decode(heads, data, arrays)[:-1]
            if cut % 3 == 2:
                return decode(heads, data[:-3], arrays)
            return decode(heads, data, arrays[:-2])

        return shorter

    monkeypatch.setattr(mariadb_frames, "frames", short)
    assert _findings(db_url) == clean == []
    assert cut > 3


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_reads_the_rows_pages_as_ranges_of_the_primary_key(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every page of rows is read by its two queries (the ids located, then one range of
    the clustered index): the one-query page, made to fail here, is never needed, and a
    row changed, deleted or forged is still found by id. A number two rows share at a
    page's end (tampering) needs it: the range holds more rows than the page."""
    skip_unless_mariadb(db_url, "MariaDB's read of a page in the clustered index's order")
    synced(tmp_path, zendesk, db_url, None)
    rows = _rows(db_url)
    _, changed, raw = rows[20]
    _store_text(db_url, changed, _spaced({**raw, "actor_name": "Nobody"}))
    _, gone, _ = rows[30]
    seq, forged, raw = rows[-1]
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_logs).where(audit_logs.c.id == gone))
        forged_row = {
            **conn.execute(sa.select(audit_logs).where(audit_logs.c.id == forged)).one()._asdict()
        }
        conn.execute(
            sa.insert(audit_logs).values({**forged_row, "id": forged + 1, "stored_seq": seq + 5})
        )
    engine.dispose()
    expected = _findings(db_url)
    assert {(k, r) for k, r, _ in expected} == {
        ("modified", str(changed)),
        ("deleted", str(gone)),
        ("inserted", str(forged + 1)),
    }
    real = pages.mariadb_page
    used = []

    def broken(value: str, query: str, plain: str, decode: Any) -> Any:
        page = pages._Aggregated(f"SELECT no_such_column FROM ({query}) AS page")  # fails
        page.plain, page.decode = real(value, query, plain, decode).plain, decode
        used.append(page)
        return page

    monkeypatch.setattr(mariadb_rows, "mariadb_page", broken)
    _small_pages(monkeypatch)
    assert _findings(db_url) == expected
    assert used
    # Numbers two rows share (pages of 7, windows of 7 numbers: the second window's
    # page, rows 7 to 13, then holds 8 rows, one of them past the page's end but within
    # its range of ids): that page is read in one query.
    seqs, ids = [seq for seq, _, _ in rows], [record_id for _, record_id, _ in rows]
    moves = {ids[11]: seqs[13], ids[12]: seqs[13], ids[20]: seqs[7]}
    engine = open_engine(db_url)
    with engine.begin() as conn:
        for record_id, number in moves.items():
            conn.execute(
                sa.update(audit_logs).where(audit_logs.c.id == record_id).values(stored_seq=number)
            )
    engine.dispose()
    with pytest.raises(Exception, match="no_such_column"):
        _findings(db_url)


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_locates_the_rows_pages_without_their_limit_while_a_window_holds_a_page(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store whose numbers are dense (a first load): every page of rows is located over
    its window's rows straight from the table (the ``LIMIT``'s derived table, made to fail
    here, is never needed). Where a window holds more rows than a page (numbers two rows
    share: tampering), that page is located with its ``LIMIT``, and the findings are the
    same as with every page located so."""
    skip_unless_mariadb(db_url, "MariaDB's location of a page of rows")
    synced(tmp_path, zendesk, db_url, None)
    _small_pages(monkeypatch)
    real = mariadb_rows.row_page
    pages_made: list[Any] = []

    def located_only(*args: Any, **kwargs: Any) -> Any:
        page = real(*args, **kwargs)
        assert isinstance(page, pages._Aggregated)
        (located, size), (limited, _) = page.locates  # the LIMIT's made to fail if used
        page.locates = ((located, size), (limited.replace("COUNT(*)", "no_such_column", 1), None))
        pages_made.append(page)
        return page

    monkeypatch.setattr(mariadb_rows, "row_page", located_only)
    assert _findings(db_url) == []
    assert pages_made
    rows = _rows(db_url)
    seqs, ids = [seq for seq, _, _ in rows], [record_id for _, record_id, _ in rows]
    engine = open_engine(db_url)
    with engine.begin() as conn:  # the second window (7 numbers) then holds 9 rows
        for record_id in (ids[20], ids[21]):
            conn.execute(
                sa.update(audit_logs).where(audit_logs.c.id == record_id).values(stored_seq=seqs[9])
            )
    engine.dispose()
    with pytest.raises(Exception, match="no_such_column"):
        _findings(db_url)

    def limit_only(*args: Any, **kwargs: Any) -> Any:
        page = real(*args, **kwargs)
        assert isinstance(page, pages._Aggregated)
        page.locates = page.locates[1:]
        return page

    monkeypatch.setattr(mariadb_rows, "row_page", real)
    found = _findings(db_url)
    monkeypatch.setattr(mariadb_rows, "row_page", limit_only)
    assert _findings(db_url) == found
    assert {("inserted", str(ids[20])), ("inserted", str(ids[21]))} <= {
        (kind, record_id) for kind, record_id, _ in found
    }


def _framed(parts: list[tuple[int, int, bytes]]) -> tuple[str, bytes, bytes]:
    """A page as MariaDB's three aggregates give it: the numbers, the texts (each row's
    ``raw``), the derived columns' arrays (each row's empty here) as one JSON array."""
    heads = " ".join(f"{s} {i} {len(t)}" for s, i, t in parts)
    return heads, b"".join(t for _, _, t in parts), b"[" + b",".join(b"[]" for _ in parts) + b"]"


def test_frames_read_any_text_by_its_length() -> None:
    texts = [b'{"a":"1 2 3"}', b"", b'{"b":"\xc3\xa9 9 "}']
    heads, data, arrays = _framed([(i, 10 + i, t) for i, t in enumerate(texts)])
    decode = mariadb_frames.frames("s")
    assert decode(heads, data, arrays) == [(i, 10 + i, t, "s", []) for i, t in enumerate(texts)]
    for cut in ((heads, data[:-2]), (heads[:-1], data), (heads[:-3], data)):
        with pytest.raises(ValueError):  # texts cut, or the numbers (a length, a row's)
            mariadb_frames.frames("s")(*cut, arrays)
    for cut_arrays in (arrays[:-1], b"[[],[]]", b"[[],[],[],[]]", b"{}"):
        with pytest.raises(ValueError):  # the arrays cut, or not one a row
            decode(heads, data, cut_arrays)


def test_an_in_memory_sqlite_database_is_read_without_the_fetching_thread() -> None:
    """Its connection refuses other threads: verify reads it in its own."""
    engine = sa.create_engine("sqlite:///:memory:")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (2), (3)")
        with pages.prefetching(conn):
            first = "SELECT MIN(k) FROM t WHERE k >= ?"
            sql = "SELECT k FROM t WHERE k > ? AND k <= ? ORDER BY k LIMIT 2"
            read = pages.windows(
                conn,
                first,
                [],
                lambda low, high: (sql, [low - 1, high]),
                lambda last, high: (sql, [last[0], high]),
                2,
            )
            assert [row[0] for page in read for row in page] == [1, 2, 3]
    engine.dispose()


def test_frames_sort_a_page_given_in_any_order() -> None:
    """MariaDB concatenates a page's rows in no set order: the page comes back in the
    query's, by stored_seq then id."""
    parts = [(3, 5, b"c"), (1, 9, b"a"), (3, 4, b"b")]
    in_order: list[Any] = [(1, 9, b"a", "s", []), (3, 4, b"b", "s", []), (3, 5, b"c", "s", [])]
    assert mariadb_frames.frames("s")(*_framed(parts)) == in_order


def _ledger_page(entries: list[Any]) -> tuple[str, bytes]:
    """A page of entries as MariaDB's two aggregates give it: words, then hashes."""

    def hexed(text: str | None) -> str:
        return "N" if text is None else text.encode().hex().upper()

    words = " ".join(
        f"{e} {'N' if s is None else s} {k.encode().hex().upper()} {hexed(r)} {hexed(n)} ."
        for e, k, r, s, _, _, n in entries
    )
    return words, b"".join(h + x for _, _, _, _, h, x, _ in entries)


def test_ledger_frames_read_nulls_and_any_text_in_any_order_and_refuse_a_cut_page() -> None:
    record, stored = bytes(range(32)), bytes(range(32, 64))
    entries = [
        (1, "R", "61", 7, record, stored, None),
        (2, "X", "", None, stored, record, ""),
        (3, "A", None, None, record, stored, "adopted, at; 1"),
        (4, "Q", "a b", -2, b" " * 32, b";" * 32, None),  # an unknown kind, spaces
    ]
    words, hashes = _ledger_page(entries)
    assert mariadb_ledger.decode(words, hashes) == entries
    assert mariadb_ledger.decode(*_ledger_page(entries[::-1])) == entries
    rows_only = [entries[0], (5, "R", "62", 8, stored, record, None)]
    assert mariadb_ledger.decode(*_ledger_page(rows_only)) == rows_only  # no None anywhere
    for cut in (1, 2, 3, 40):  # the closing word, within the last note, within an id
        with pytest.raises(ValueError):
            mariadb_ledger.decode(words[:-cut], hashes)
    for cut in (1, 32, 64):  # within a hash; a whole entry's hashes left out by the server
        with pytest.raises(ValueError):
            mariadb_ledger.decode(words, hashes[:-cut])


@pytest.mark.parametrize("length", [31, 0])
def test_an_entry_hash_of_another_length_is_found_as_read_row_by_row(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
    length: int,
) -> None:
    """A hash of other than 32 bytes (an SQL edit) leaves its entry out of MariaDB's
    aggregate of hashes, so the page is read row by row: the chain is broken there and
    at the next entry (chained from the stored hash), as on every database; with pages
    of 7 too."""
    synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        stored = conn.execute(
            sa.select(ledger.c.entry_hash).where(ledger.c.entry == 12)
        ).scalar_one()
        edited = (bytes(stored) * 2)[:length]
        conn.execute(sa.update(ledger).where(ledger.c.entry == 12).values(entry_hash=edited))
    engine.dispose()
    found = _findings_both_ways(db_url, monkeypatch)
    assert [(kind, entry) for kind, _, entry in found] == [("chain broken", n) for n in (12, 13)]


@pytest.mark.parametrize(
    ("text", "record", "same"),
    [
        ('{"b": 1, "a": "x"}', {"a": "x", "b": 1}, True),  # another order, spaces
        ('{"a": 1e-07, "b": -0.0}', {"a": 1e-07, "b": 0.0}, True),  # orjson's 1e-7, -0.0
        ('{"a": 18446744073709551616}', {"a": 18446744073709551616}, True),  # past 64 bits
        ('{"a": 18446744073709551616}', {"a": 1.8446744073709552e19}, False),
        ('{"a": 1.0}', {"a": 1}, False),
        ('{"a": [1, {"c": 2, "b": 1}]}', {"a": [1, {"b": 1, "c": 2}]}, True),
        ('{"a": [1, {"c": 2, "b": 1}]}', {"a": [1, {"b": 1, "c": 3}]}, False),
    ],
)
def test_a_stored_text_matches_the_record_its_canonical_form_hashes(
    text: str, record: Any, same: bool
) -> None:
    """orjson's text first, the canonical form where it differs: never a false match, and
    no false alarm for the numbers orjson writes otherwise."""
    hashed = chain.record_hash(record)
    assert raw_text.matches(text, hashed) is same
    assert raw_text.matches(text.encode(), hashed) is same


def test_the_next_windows_page_is_read_while_the_last_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within ``prefetching``, the page after the one handed over is asked for at once,
    whichever query it takes: the same window's sequel of a full page, the next window's
    first page, the next key used after an empty window (once a page ahead was read only
    within a window: verify waited for every window's page)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    keys = [*range(1, 9), *range(40, 45)]  # windows of 2 keys: full ones, then a gap
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(f"INSERT INTO t VALUES {', '.join(f'({k})' for k in keys)}")
    first = "SELECT MIN(k) FROM t WHERE k >= ?"
    sql = "SELECT k FROM t WHERE k > ? AND k <= ? ORDER BY k LIMIT 2"
    read: list[int] = []  # the last key of each page read
    more = threading.Condition()
    real = pages._fetch

    def fetch(driver: Any, query: str, params: Any) -> list[Any]:
        page = real(driver, query, params)
        with more:
            read.extend(row[0] for row in page[-1:] if query == sql)
            more.notify_all()
        return page

    def past(key: int) -> bool:
        return bool(read) and read[-1] > key

    monkeypatch.setattr(pages, "_fetch", fetch)
    seen: list[int] = []
    with engine.connect() as conn, conn.begin(), pages.prefetching(conn):
        for page in pages.windows(
            conn,
            first,
            [],
            lambda low, high: (sql, [low - 1, high]),
            lambda last, high: (sql, [last[0], high]),
            2,
        ):
            seen.extend(row[0] for row in page)
            if seen[-1] != keys[-1]:  # the next page with rows is read meanwhile
                with more:
                    assert more.wait_for(functools.partial(past, seen[-1]), timeout=60)
    engine.dispose()
    assert seen == keys


def test_a_ledger_span_costs_one_query_a_page_and_none_past_a_windows_last_entry(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A span of 70 entries in pages and windows of 7: the first entry's query, then one
    query a page. Entries are the primary key's, so a full page ending at its window's last
    entry ends the window (its sequel, asked for once, was empty: on MariaDB 200 queries a
    million entries, one every window)."""
    synced(tmp_path, zendesk, db_url, None)
    _small_pages(monkeypatch)
    asked: list[int] = []  # the rows each query of the reader gave
    real = pages._fetch

    def fetch(driver: Any, sql: str, params: Any) -> list[Any]:
        page = real(driver, sql, params)
        asked.append(len(page))
        return page

    monkeypatch.setattr(pages, "_fetch", fetch)
    engine = open_engine(db_url)
    with engine.connect() as conn, conn.begin():
        read = [entry[0] for entry in streams.entries(conn, "acme", 3, 73)]
    engine.dispose()
    assert read == list(range(4, 74))
    assert asked == [1] + [7] * 10  # the first entry's (one row: its number), the pages


def test_every_account_with_rows_or_a_ledger_is_found(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
) -> None:
    """Accounts by a probe of the account index each, the least above the last: each one
    with rows of its own (no ledger), and the one with a ledger too, once."""
    synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        row = dict(conn.execute(sa.select(audit_logs).limit(1)).mappings().one())
        for at, account in enumerate(("beta", "Zeta", "zz", "alpha")):
            conn.execute(sa.insert(audit_logs).values({**row, "account": account, "id": at}))
    with engine.connect() as conn:
        found = streams.ledger_accounts(conn)
    engine.dispose()
    assert sorted(found) == sorted(["acme", "alpha", "beta", "Zeta", "zz"])


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_reads_the_ledgers_pages_without_their_limit_unless_entries_are_missing(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every page of the ledger is read straight from the table up to the page's size in
    numbers (no derived table), except where entries are missing (then more numbers may
    belong to the page: read with its LIMIT); the findings are the same as with every
    page read with its LIMIT."""
    skip_unless_mariadb(db_url, "MariaDB's read of the ledger's pages")
    synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        # a gap wider than a window (the next one twice as wide), a gap within that one
        for low, high in ((8, 20), (24, 25)):
            conn.execute(sa.delete(ledger).where(ledger.c.entry.between(low, high)))
        conn.execute(sa.update(ledger).where(ledger.c.entry == 30).values(record_hash=bytes(32)))
    engine.dispose()
    _small_pages(monkeypatch)
    real = mariadb_ledger.bounded
    answers: list[bool] = []

    def counted(flat: str, size: int) -> Any:
        read = real(flat, size)

        def answer(cursor: Any, params: Any) -> Any:
            page = read(cursor, params)
            answers.append(page is not None)
            return page

        return answer

    monkeypatch.setattr(mariadb_ledger, "bounded", counted)
    found = _findings(db_url)
    monkeypatch.setattr(mariadb_ledger, "bounded", lambda flat, size: lambda c, p: None)
    assert _findings(db_url) == found
    assert answers.count(False) >= 1 and answers.count(True) > 10  # the gaps' pages alone
    assert {("chain broken", None, 21), ("chain broken", None, 26)} <= set(found)
    assert [kind for kind, _, entry in found if entry == 30] == ["modified", "chain broken"]


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_reads_a_page_of_rows_longer_than_the_servers_default_concat_length(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page whose texts pass ``group_concat_max_len``'s default (1 MB) is still read as
    its aggregates, over a connection whose session length is set when it connects (not
    before every page): the row-by-row read, made to fail here, is never needed."""
    skip_unless_mariadb(db_url, "MariaDB's read of a page as one value")
    synced(tmp_path, zendesk, db_url, None)
    rows = _rows(db_url)
    for _, record_id, raw in rows[3:6]:  # 1.5 MB of text in the page
        long = orjson.dumps({**raw, "actor_name": "x" * 500_000}, option=orjson.OPT_SORT_KEYS)
        _store_text(db_url, record_id, long.decode())
    expected = _findings(db_url)
    assert {(kind, record_id) for kind, record_id, _ in expected} == {
        ("modified", str(record_id)) for _, record_id, _ in rows[3:6]
    }
    real = mariadb_rows.row_page

    def without_plain(columns: Any, conditions: str, tail: str, plain: str, *rest: Any) -> Any:
        failing = f"SELECT no_such_column FROM ({plain}) AS page"
        return real(columns, conditions, tail, failing, *rest)

    monkeypatch.setattr(mariadb_rows, "row_page", without_plain)
    assert _findings(db_url) == expected
