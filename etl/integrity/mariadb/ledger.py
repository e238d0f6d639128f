"""MariaDB's page of the ledger read as two values (``etl.integrity.pages.mariadb_page``),
and split into entries a column at a time.

PyMySQL reads a result in Python, column by column, so a page is read as aggregates
the server makes. Splitting one frame an entry (every field in hexadecimal) still cost
a sixth of verify's Python samples on 1,000,000 entries: now the numbers, kinds, ids and
notes are words of one text, each column converted over the page at once (the numbers by
one orjson call, the rest by ``map``), and the hashes their own bytes, cut by one
``struct`` call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from etl.integrity.mariadb.frames import integers
from etl.records import chain

# An entry as read: entry, kind, record_id, stored_seq, record_hash, entry_hash, note.
Entry = tuple[int, str, str | None, int | None, bytes, bytes, str | None]

# MariaDB's page of the ledger as two values, in the same order: a text of six words an
# entry (its number, stored_seq, kind, record_id, note and a closing "."; the texts in
# hexadecimal, so no value holds a space, and a NULL as N), and the two hashes' 64 bytes
# an entry (a hash not of 32 bytes leaves its entry out: the page is then read row by
# row). In no order (sorted once split): an ORDER BY there costs the server half as much
# again. The two agree on the order because the server feeds each row to every aggregate of
# the query in turn and a GROUP_CONCAT with no ORDER BY or DISTINCT appends as fed; were
# they ever to disagree, the entries' hashes would not match (chain broken), never pass.
# An entry's words are one CONCAT, the aggregate's one argument: the server keeps each
# argument of a row in a field of its own before appending it (a tenth of the page's CPU
# for eleven of them).
FRAMES = (
    "GROUP_CONCAT(CONCAT(entry, ' ', IFNULL(stored_seq, 'N'), ' ', HEX(kind), ' ', "
    "IFNULL(HEX(record_id), 'N'), ' ', IFNULL(HEX(note), 'N'), ' .') SEPARATOR ' '), "
    "GROUP_CONCAT(IF(OCTET_LENGTH(record_hash) = 32 AND OCTET_LENGTH(entry_hash) = 32, "
    "CONCAT(record_hash, entry_hash), NULL) SEPARATOR '')"
)
_HEX_KINDS = {kind.encode().hex().upper(): kind for kind in chain.KINDS}
_unpack = struct.unpack


def decode(words: str | bytes, hashes: bytes) -> list[Entry]:
    """The entries of a page ``FRAMES`` wrote, by entry (a ValueError when either
    value is cut short)."""
    text = words.decode() if isinstance(words, bytes) else words
    fields = text.split(" ")
    count = len(fields) // 6
    if len(fields) != 6 * count or fields[5::6].count(".") != count:
        raise ValueError("an entry's words do not end")
    if len(hashes) != 64 * count:
        raise ValueError("an entry's hashes are cut short")
    # the hashes cut by one ``struct`` call (C), the numbers read by one orjson call:
    # slices a hash and ``int`` a word, in Python, took half this function's time
    cut = _unpack("32s" * (2 * count), hashes)
    numbers = integers(" ".join([*fields[::6], *fields[1::6]]), nulls=True)
    if len(numbers) != 2 * count:
        raise ValueError("a word not a number")
    entries = numbers[:count]
    if None in entries:
        raise ValueError("an entry without its number")
    page = list(
        zip(  # noqa: B905 (the lengths are checked above)
            entries,
            _kinds(fields[2::6]),
            _texts(fields[3::6]),
            numbers[count:],
            cut[0::2],
            cut[1::2],
            _texts(fields[4::6]),
        )
    )
    page.sort()  # by entry, an account's key: in that order already, most likely
    return page


def _kinds(words: list[str]) -> list[str]:
    kinds = list(map(_HEX_KINDS.get, words))
    if None in kinds:  # not a kind the job writes (tampering)
        return [bytes.fromhex(word).decode() for word in words]
    return kinds  # type: ignore[return-value]


def _texts(words: list[str]) -> list[str | None]:
    """Each word's text, N's None."""
    if words.count("N") == len(words):
        return [None] * len(words)
    try:
        return list(map(bytes.decode, map(bytes.fromhex, words)))
    except ValueError:
        return [None if word == "N" else bytes.fromhex(word).decode() for word in words]


def bounded(flat: str, size: int) -> Callable[[Any, Sequence[Any]], list[Entry] | None]:
    """The page of ``size`` entries after one up to another (its parameters: account,
    after, high) read by ``flat``, the same aggregates straight from the table (account,
    after and an upper bound), when it can be: None when not.

    The page's query takes the first ``size`` entries, so it aggregates a derived table of
    them (materialized by the server: a third of its CPU for the ledger's page). Entries
    are unique numbers, so at most ``size`` lie between ``after`` and ``after + size``:
    read up to there (or up to ``high``, if lower), those are the page when they are
    ``size`` of them or when nothing lies past them within ``high``. Else (entries
    missing: tampering) the page is read with its LIMIT, as before."""

    def read(cursor: Any, params: Sequence[Any]) -> list[Entry] | None:
        account, after, high = params
        upper = min(high, after + size)
        cursor.execute(flat, [account, after, upper])
        count, words, hashes = cursor.fetchone()
        if upper < high and count < size:
            return None  # the page may hold entries past ``upper``
        if not count:
            return []
        if words is None or hashes is None:
            return None
        try:
            page = decode(words, hashes)
        except ValueError:
            return None
        return page if len(page) == count else None

    return read
