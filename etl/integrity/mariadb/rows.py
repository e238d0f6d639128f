"""MariaDB's page of a table's rows by ``stored_seq``, read in the table's own order.

The rows' table is clustered on its primary key, (account, id). A page read through the
``(account, stored_seq)`` index is a primary-key look-up a row: three pages of the tree
touched a row, and each leaf read alone, one synchronous read at a time when the table
is larger than InnoDB's buffer pool (its read-ahead never starts on look-ups). So a page is
read in two queries (``pages.mariadb_page``'s ``locates`` and ``clustered``), in the same
snapshot:

1. *locate*: the page's rows' count, least and greatest id and last ``stored_seq``, from
   the ``stored_seq`` index alone (it holds the primary key's columns: no look-up). First
   over all the rows of the query's conditions, with no ``LIMIT``: when they are at most a
   page, they are the page, and the server made no derived table of them (one
   materialized for every page). A window of ``stored_seq`` as
   wide as a page holds at most a page (numbers are unique but for tampering), so that is
   every page of a store whose numbers are dense, a first load's. Else, over the page's
   ``LIMIT`` as a derived table;
2. *clustered*: the rows of the same conditions with an id in that range and a
   ``stored_seq`` up to that last one, as three values (numbers, texts, derived values'
   arrays). The server reads that id range of the clustered index in order (read-ahead, a
   tenth of the pages touched), or, when the ids are spread wide (updated records, ids
   out of order), the ``stored_seq`` index as before: its optimizer takes the narrower
   range. No derived table: no temporary table a page.

The clustered read holds every row of the page, and others only where two rows share the
page's last ``stored_seq`` (only tampering does that): when it holds more rows than the
page, or its value is not whole, the page is read as before, in one query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from etl.integrity.pages import MAX_KEY, mariadb_page


def row_page(
    columns: tuple[str, str, str],
    conditions: str,
    tail: str,
    plain: str,
    decode: Callable[..., list[Any]],
    size: int,
    text_ids: bool = False,
    derived: str = "JSON_ARRAY()",
) -> str:
    """The page of rows ``conditions`` (``FROM ... WHERE ...``) and ``tail`` (its ``ORDER
    BY`` and ``LIMIT``) select, ``columns`` being the quoted ``stored_seq``, id and ``raw``
    columns: as three values (``frames.frames``, with ``text_ids`` when the ids are text),
    read in two queries (``plain``: the same page row by row); ``size`` is the ``LIMIT``."""
    seq, record_id, column = columns
    raw = f"CAST({column} AS BINARY)"  # its bytes as stored
    inner = f"SELECT {seq} AS s, {record_id} AS i, {raw} AS r, {derived} AS d {conditions}{tail}"
    # in no order (a tenth less of the server's time): ``decode`` sorts the page; the
    # numbers, the texts and the derived values' arrays apart (``frames.frames``), the three
    # aggregates in the same order (the server feeds each row to each in turn; a row
    # misaligned would hash wrong, a finding, never a pass)
    value = f"GROUP_CONCAT({_heads('s', 'i', 'r', text_ids)} SEPARATOR ' '), "
    value += f"GROUP_CONCAT({_texts('i', 'r', text_ids)} SEPARATOR ''), {_arrays('d')}"
    page = mariadb_page(value, inner, plain, decode)
    keys = f"SELECT {seq} AS s, {record_id} AS i {conditions}{tail}"
    located = f"SELECT COUNT(*), MIN({record_id}), MAX({record_id}), MAX({seq}) {conditions}"
    page.locates = (
        (located, size),  # straight from the table: the page while it holds at most one
        (f"SELECT COUNT(*), MIN(i), MAX(i), MAX(s) FROM ({keys}) AS page", None),
    )
    # the length of the column itself, the same bytes' count: OCTET_LENGTH of its CAST
    # copied every row's text once more, a fifth of the server's CPU for the page
    heads = _heads(seq, record_id, column, text_ids)
    texts = _texts(record_id, raw, text_ids)
    page.clustered = (
        f"SELECT COUNT(*), GROUP_CONCAT({heads} SEPARATOR ' '), GROUP_CONCAT({texts} SEPARATOR ''),"
        f" {_arrays(derived)} {conditions}"
        f" AND {record_id} >= %s AND {record_id} <= %s AND {seq} <= %s"
    )
    return page


def first_key(table: str, account: str, seq: str, marker: str) -> str:
    """The query of the first ``stored_seq`` at or after both of two bounds (its
    parameters: the account and the two), as ``pages.windows`` asks it: one lower bound,
    their ``GREATEST``.

    With the two as two conditions, MariaDB 10.11 did not take ``MIN()`` from the
    ``stored_seq`` index when the second was the lower (a span's first query: the second
    is -2**63) and read the whole table by its primary key instead: a second of the
    server's CPU a verify process for 1,000,000 rows, and the buffer pool filled with
    them (``EXPLAIN``: ``ref`` on ``PRIMARY`` against "Select tables optimized away")."""
    bounded = f"{seq} >= GREATEST({marker}, {marker}) AND {seq} <= {MAX_KEY}"
    return f"SELECT MIN({seq}) FROM {table} WHERE {account} = {marker} AND {bounded}"


def _heads(seq: str, record_id: str, raw: str, text_ids: bool) -> str:
    """A row's numbers: an id that is text goes by its length (it may hold spaces)."""
    head = f"OCTET_LENGTH({record_id})" if text_ids else record_id
    return f"{seq}, ' ', {head}, ' ', OCTET_LENGTH({raw})"


def _texts(record_id: str, raw: str, text_ids: bool) -> str:
    return f"{record_id}, {raw}" if text_ids else raw


def _arrays(derived: str) -> str:
    """The page's derived values' arrays as one JSON array: each built once (its length,
    asked for beside its text, had the server build it twice)."""
    return f"CONCAT('[', GROUP_CONCAT({derived} SEPARATOR ','), ']')"
