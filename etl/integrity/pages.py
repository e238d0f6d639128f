"""How ``verify`` reads a large table (``etl.integrity.streams``' queries): keyset pages
straight from the driver, within windows of the key, the next page fetched while the last
is checked, and on MariaDB a page read as one value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from etl.storage.engine import sqlite_path

MAX_KEY = 2**63 - 1  # BIGINT's
_PREFETCH = "etl.integrity.pages.prefetch"  # conn.info's key for the fetching thread


@contextmanager
def prefetching(conn: Connection) -> Iterator[None]:
    """Within it, the next page of each query is fetched while the last one is checked.

    The database's work for a page (PostgreSQL's writing jsonb as text, MariaDB's of a
    page as one value, SQLite's reading it) then runs beside verify's checking of the last
    one, on the machine's other core: the driver waits, and SQLite steps, outside the GIL.
    Every query of ``entries`` and ``rows`` goes through that one thread, so the connection
    never has two at once; a query made outside them waits for none in flight (a reader
    ends with a short page, not a fetch ahead)."""
    if conn.dialect.name == "sqlite" and sqlite_path(conn.engine.url) is None:
        yield  # an in-memory database's connection refuses other threads
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-fetch") as pool:
        conn.info[_PREFETCH] = pool
        try:
            yield
        finally:
            del conn.info[_PREFETCH]


def _fetch(driver: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    cursor = driver.cursor()
    try:
        if type(sql) is _Aggregated:
            return _aggregated(cursor, sql, params)
        cursor.execute(sql, params)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


class _Aggregated(str):
    """MariaDB's query of a page as one value, and its rows' count (``plain``: the same
    page row by row).

    PyMySQL reads a result in Python, column by column: a page of rows cost it more than
    verify's every other step. One value a page, split by ``decode`` (orjson's C for the
    ledger's JSON, a loop over length-prefixed texts for the rows), costs half of it all
    told. ``plain`` answers when the value is not whole: over ``group_concat_max_len``
    (set to ``max_allowed_packet``, which a page is well within by default) or over
    ``max_allowed_packet`` itself (then NULL)."""

    plain: str
    decode: Callable[[Any], list[Any]]


def _aggregated(cursor: Any, sql: _Aggregated, params: Sequence[Any]) -> list[Any]:
    cursor.execute("SET SESSION group_concat_max_len = @@max_allowed_packet")
    cursor.execute(sql, params)
    count, value = cursor.fetchone()
    if not count:
        return []
    if value is not None:
        try:
            page = sql.decode(value)
        except (ValueError, IndexError):  # cut short (orjson's error is a ValueError)
            page = []
        if len(page) == count:
            return page
    cursor.execute(sql.plain, params)
    return cursor.fetchall()  # type: ignore[no-any-return]


def mariadb_page(
    value: str, query: str, plain: str, decode: Callable[[Any], list[Any]]
) -> _Aggregated:
    """``query``'s rows (a page, aliased ``page``) as the count and the aggregate ``value``."""
    aggregated = _Aggregated(f"SELECT COUNT(*), {value} FROM ({query}) AS page")
    aggregated.plain = plain
    aggregated.decode = decode
    return aggregated


def frames(stream: str) -> Callable[[bytes], list[Any]]:
    """The rows of a page written as ``seq id length raw`` one after another (``raw``'s
    bytes, as many as ``length`` says): whatever ``raw`` holds, no row is misread. In any
    order: sorted here by ``seq`` and id (the query's order), no two rows having both."""

    def decode(data: bytes) -> list[Any]:
        rows: list[Any] = []
        add, find, at, end = rows.append, data.find, 0, len(data)
        while at < end:
            first = find(b" ", at)
            second = find(b" ", first + 1)
            third = find(b" ", second + 1)
            start = third + 1
            stop = start + int(data[second + 1 : third])
            if third < 0 or stop > end:
                raise ValueError("a page cut short")
            add((int(data[at:first]), int(data[first + 1 : second]), data[start:stop], stream))
            at = stop
        rows.sort()  # in the query's order already, most likely: one comparison a row
        return rows

    return decode


def is_mariadb(conn: Connection) -> bool:
    return bool(getattr(conn.dialect, "is_mariadb", False))


def _scalar(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
    """The first column of a query's first row, by the prefetching thread when there is one."""
    driver = conn.connection.driver_connection
    pool: Executor | None = conn.info.get(_PREFETCH)
    page = (
        _fetch(driver, sql, params)
        if pool is None
        else pool.submit(_fetch, driver, sql, params).result()
    )
    return page[0][0] if page else None


def driver_pages(
    conn: Connection,
    sql: str,
    params: list[Any],
    advance: Callable[[Any], tuple[str, list[Any]]],
    size: int,
) -> Iterator[list[Any]]:
    """The pages of a keyset-paged query as the driver gives them (tuples, bytes, text):
    SQLAlchemy's rows and result processors cost more than verify's hashing did. Each page
    through a cursor of the connection's own transaction (so its snapshot), closed once
    fetched: psycopg and PyMySQL keep a result until the cursor's next query. ``advance``
    makes the next page's query and parameters from the last row of a full one; within
    ``prefetching``, that page is asked for before this one is handed over."""
    driver = conn.connection.driver_connection
    assert driver is not None
    pool: Executor | None = conn.info.get(_PREFETCH)
    if pool is None:
        page = _fetch(driver, sql, params)
    else:
        page = pool.submit(_fetch, driver, sql, params).result()
    while True:
        ahead: Future[list[Any]] | None = None
        if len(page) >= size:  # a full page (its query's LIMIT): there may be more
            sql, params = advance(page[-1])
            if pool is not None:
                ahead = pool.submit(_fetch, driver, sql, params)
        yield page
        if len(page) < size:
            return
        del page  # before the next page is fetched: no more pages in memory than needed
        page = _fetch(driver, sql, params) if ahead is None else ahead.result()


def windows(
    conn: Connection,
    first: str,
    params: list[Any],
    read: Callable[[int, int], Iterator[list[Any]]],
    size: int,
    last: int = MAX_KEY,
) -> Iterator[list[Any]]:
    """The pages of ``read(low, high)`` for one window of a key after another, from the
    first key ``first`` finds (``params`` and a lower bound) on, up to ``last``.

    A window bounds what the database sorts to its own rows: with an ``ORDER BY`` and a
    ``LIMIT`` alone, PostgreSQL (its statistics stale after a load, or an order the index
    does not give) sorted every row left, for every page: quadratic, and on disk. The
    width follows how densely the keys are used (superseded versions leave gaps in
    ``stored_seq``), and an empty window jumps to the next key used."""
    low = _scalar(conn, first, (*params, -(2**63)))
    width = size
    while low is not None and int(low) <= last:
        high = min(int(low) + width - 1, last)
        found = 0
        for page in read(int(low), high):
            found += len(page)
            yield page
        if high >= last:
            return
        if found < size // 2:
            width *= 2
        elif found > 2 * size and width > 1:
            width //= 2
        low = high + 1
        if not found:
            low = _scalar(conn, first, (*params, low))
