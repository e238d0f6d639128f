"""How ``verify`` reads a large table (``etl.integrity.streams``' queries): keyset pages
straight from the driver, within windows of the key, the next page fetched while the last
is checked, and on MariaDB a page read as one value.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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


def by_index(conn: Connection) -> None:
    """PostgreSQL's pages read by their index, whatever the tables' statistics, for the
    rest of ``conn``'s transaction (``SET LOCAL``).

    With statistics (autovacuum's, as on a user's server) the planner took a ledger page
    as a bitmap heap scan and a sort by entry that spilled to disk at the default 4 MB
    ``work_mem`` (31 MB of temporary files a walk of 1,000,000 entries): the primary key's
    index scan gives the same rows in order, with no sort, for less of the server's CPU.
    No query shape steered it (an ``ORDER BY`` of the whole key, the same plan)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")


def fetch(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """``sql``'s rows as the driver gives them, read as a page is (a binary cursor on
    psycopg), in ``conn``'s transaction: for a query outside the pages of ``windows``."""
    return _fetch(conn.connection.driver_connection, sql, params)


def _fetch(driver: Any, sql: str, params: Sequence[Any]) -> list[Any]:
    if _is_psycopg(driver):
        # binary results: a hash's bytes as they are, not hexadecimal written by the
        # server and read back by the client (a quarter less of both's time a ledger row)
        cursor = driver.cursor(binary=True)
        if type(sql) is _TextAsBytes:  # its text read as bytea is: copied, not decoded
            cursor.adapters.register_loader("text", driver.adapters.get_loader(_BYTEA, 1))
    else:
        cursor = driver.cursor()
    try:
        if type(sql) is _Aggregated:
            return _aggregated(cursor, sql, params)
        if type(sql) is _Repairable:
            return _repairable(cursor, sql, params)
        cursor.execute(sql, params)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


def _is_psycopg(driver: Any) -> bool:
    """psycopg 3's connection (psycopg2's, a URL may name it, has no binary cursor)."""
    module = type(driver).__module__
    return module == "psycopg" or module.startswith("psycopg.")


_BYTEA = 17  # PostgreSQL's type oid


class _TextAsBytes(str):
    """A PostgreSQL query whose ``text`` columns psycopg gives as their UTF-8 bytes."""


def text_as_bytes(sql: str) -> str:
    """``sql``, its ``text`` columns read as bytes on PostgreSQL (psycopg's decoding a
    page's texts into ``str`` cost verify more than reading their bytes: orjson parses
    either). Elsewhere ``sql`` as it is."""
    return _TextAsBytes(sql)


class _Repairable(str):
    """SQLite's query whose page, when the driver cannot decode a text (not UTF-8), is read
    again by ``safe`` and mended by ``repair`` (``etl.integrity.sqlite.ledger``)."""

    safe: str
    repair: Callable[[list[Any]], list[Any]]


def repairable(sql: str, safe: str, repair: Callable[[list[Any]], list[Any]]) -> str:
    """``sql``, read again as ``safe`` and mended by ``repair`` where a text is not UTF-8:
    a test of every text would cost every page, this only the page that holds one."""
    query = _Repairable(sql)
    query.safe, query.repair = safe, repair
    return query


def _repairable(cursor: Any, sql: _Repairable, params: Sequence[Any]) -> list[Any]:
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()  # type: ignore[no-any-return]
    except sqlite3.OperationalError as error:
        if "decode" not in str(error):
            raise
    cursor.execute(sql.safe, params)
    return sql.repair(cursor.fetchall())


class _Aggregated(str):
    """MariaDB's query of a page as one value, and its rows' count (``plain``: the same
    page row by row).

    PyMySQL reads a result in Python, column by column: a page of rows cost it more than
    verify's every other step. One value a page (two for the rows: their numbers, their
    texts), split by ``decode``, costs half of it all told. ``plain`` answers when the
    value is not whole: over ``group_concat_max_len`` (set to ``max_allowed_packet`` as
    each connection opens, ``etl.storage.engine``; a page is well within it by default) or
    over ``max_allowed_packet`` itself (then NULL)."""

    plain: str
    decode: Callable[..., list[Any]]
    # Its rows read in two queries (``etl.integrity.mariadb.rows``; none: in the one): a
    # query of ``locates`` gives the page's count, least and greatest key and last order
    # key, taken when its count is at most its bound (None: any), else the next is asked;
    # ``clustered`` (the page's parameters, then those three) gives the same rows or more.
    locates: tuple[tuple[str, int | None], ...] = ()
    clustered: str = ""
    # A cheaper read tried first (``etl.integrity.mariadb.ledger.bounded``): its page, or
    # None when it cannot tell the page from it.
    first: Callable[[Any, Sequence[Any]], list[Any] | None] | None = None


def _aggregated(cursor: Any, sql: _Aggregated, params: Sequence[Any]) -> list[Any]:
    if sql.first is not None and (read := sql.first(cursor, params)) is not None:
        return read
    if sql.locates:
        for locate, most in sql.locates:
            cursor.execute(locate, params)
            count, low, high, last = cursor.fetchone()
            if most is None or count <= most:
                break
        if not count:
            return []
        cursor.execute(sql.clustered, [*params, low, high, last])
        found, *values = cursor.fetchone()
        # every row of the page and no other when as many (more: a last key two rows
        # share, past the page's LIMIT): else the page is read in one query
        if found == count and None not in values:
            page = _decoded(sql, values)
            if len(page) == count:
                return page
    cursor.execute(sql, params)
    count, *values = cursor.fetchone()
    if not count:
        return []
    if None not in values:
        page = _decoded(sql, values)
        if len(page) == count:
            return page
    cursor.execute(sql.plain, params)
    return cursor.fetchall()  # type: ignore[no-any-return]


def _decoded(sql: _Aggregated, values: list[Any]) -> list[Any]:
    try:
        return sql.decode(*values)
    except (ValueError, IndexError):  # cut short (orjson's error is a ValueError)
        return []


def mariadb_page(
    value: str, query: str, plain: str, decode: Callable[..., list[Any]]
) -> _Aggregated:
    """``query``'s rows (a page, aliased ``page``) as the count and the aggregate ``value``
    (one or more, which ``decode`` takes in their order)."""
    aggregated = _Aggregated(f"SELECT COUNT(*), {value} FROM ({query}) AS page")
    aggregated.plain = plain
    aggregated.decode = decode
    return aggregated


def is_mariadb(conn: Connection) -> bool:
    return bool(getattr(conn.dialect, "is_mariadb", False))


# A query to make: its SQL, its parameters, and whether it is ``first``'s (the first key
# used from a bound) rather than a window's page.
_Query = tuple[str, list[Any], bool]


def windows(
    conn: Connection,
    first: str,
    params: list[Any],
    query: Callable[[int, int], tuple[str, list[Any]]],
    advance: Callable[[Any, int], tuple[str, list[Any]] | None],
    size: int,
    last: int = MAX_KEY,
) -> Iterator[list[Any]]:
    """The pages of a keyset-paged query for one window of a key after another, from the
    first key ``first`` finds (``params`` and a lower bound) on, up to ``last``; as the
    driver gives them (tuples, bytes, text): SQLAlchemy's rows and result processors cost
    more than verify's hashing did.

    ``query(low, high)`` is a window's first page (its SQL and parameters), ``advance(row,
    high)`` the page after a full one (``size`` rows, its query's LIMIT) ending at ``row``,
    or None when no row can follow it in the window (its last key read, and keys unique):
    a window as wide as its page, the usual one, then costs one query, not two.
    Each page through a cursor of the connection's own transaction (so its snapshot),
    closed once fetched: psycopg and PyMySQL keep a result until the cursor's next query.

    A window bounds what the database sorts to its own rows: with an ``ORDER BY`` and a
    ``LIMIT`` alone, PostgreSQL (its statistics stale after a load, or an order the index
    does not give) sorted every row left, for every page: quadratic, and on disk. The
    width follows how densely the keys are used (superseded versions leave gaps in
    ``stored_seq``), and an empty window jumps to the next key used.

    Within ``prefetching``, the next page with rows is read while the last is checked:
    however many queries it takes (a full page's empty sequel, the next window's first
    page, the next key used), the fetching thread makes them one after another. (Only the
    same window's next page was asked for ahead: with windows as wide as a page, that was
    the empty sequel, and every window's page was read while verify waited, for half its
    wall time on PostgreSQL.) At most two pages of a query are in memory: the one handed
    over and the one read meanwhile."""
    driver = conn.connection.driver_connection
    assert driver is not None
    reader = _Windows(driver, first, params, query, advance, size, last)
    pool: Executor | None = conn.info.get(_PREFETCH)

    def ask(asked: _Query) -> Callable[[], tuple[list[Any], _Query | None]]:
        if pool is None:
            return lambda: reader.page(asked)
        return pool.submit(reader.page, asked).result

    pending: Callable[[], tuple[list[Any], _Query | None]] | None
    pending = ask((first, [*params, -(2**63)], True))
    while pending is not None:
        page, following = pending()
        pending = None if following is None else ask(following)
        if page:
            yield page
        del page  # before the next is taken: no more pages in memory than needed


@dataclass
class _Windows:
    """``windows``' reading: its window and width, changed only by the one ``page`` call
    at a time (by the fetching thread, when there is one)."""

    driver: Any
    first: str
    params: list[Any]
    query: Callable[[int, int], tuple[str, list[Any]]]
    advance: Callable[[Any, int], tuple[str, list[Any]] | None]
    size: int
    last: int
    width: int = field(init=False)  # the next window's, as dense as the keys were
    high: int = field(init=False, default=0)  # the window's last key
    found: int = field(init=False, default=0)  # rows read in the window so far

    def __post_init__(self) -> None:
        self.width = self.size

    def page(self, asked: _Query) -> tuple[list[Any], _Query | None]:
        """The next page with rows from the query ``asked`` on (empty at the end), and the
        query that follows it (None: none does)."""
        size, last = self.size, self.last
        while True:
            sql, params, scalar = asked
            page = _fetch(self.driver, sql, params)
            following: _Query | None = None
            if scalar:
                key = page[0][0] if page else None
                if key is None or int(key) > last:
                    return [], None
                self.high, self.found = min(int(key) + self.width - 1, last), 0
                page, following = [], (*self.query(int(key), self.high), False)
            else:
                self.found += len(page)
                more = self.advance(page[-1], self.high) if len(page) >= size else None
                if more is not None:  # a full page: there may be more in the window
                    following = (*more, False)
                elif self.high < last:
                    following = self._next_window()
            if page or following is None:
                return page, following
            asked = following

    def _next_window(self) -> _Query:
        """The window after the one just read, as wide as the keys are dense; or, after an
        empty one, the next key used."""
        found, low = self.found, self.high + 1
        if found < self.size // 2:
            self.width *= 2
        elif found > 2 * self.size and self.width > 1:
            self.width //= 2
        if not found:
            return self.first, [*self.params, low], True
        self.high, self.found = min(low + self.width - 1, self.last), 0
        return (*self.query(low, self.high), False)
