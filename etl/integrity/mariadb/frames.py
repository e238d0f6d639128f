"""A MariaDB page of rows as three values (``etl.integrity.mariadb.rows``' aggregates), split
into its rows: the numbers of every row, their texts, their derived values' arrays, each
column over the page at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from itertools import repeat
from typing import Any

import orjson


def frames(
    stream: str, text_ids: bool = False
) -> Callable[[str | bytes, bytes, str | bytes], list[Any]]:
    """The rows of a page as three values: ``seq id length`` of each row (numbers, by
    spaces), their ``raw`` texts one after another (as many bytes as the lengths say), and
    their derived values' arrays as one JSON array of them: whatever ``raw`` holds, no row
    is misread, and a value cut short is a ValueError. In any order (the three values' the
    same): sorted here by ``seq`` and id (the query's order), no two rows having both.

    Each step over the whole page at once (the numbers read by one orjson call, a
    quarter of ``int`` by ``map``'s time; the texts by slices; the arrays by one orjson
    call): finding a row's fields one by one took a fifth of verify's Python on MariaDB.
    The arrays need no length (the page's are read as one JSON array of them): the server
    builds each once, not once more for its length.

    ``text_ids`` (the access log's ids are text, any text): ``seq idlength length`` of
    each row, and its id's UTF-8 bytes before its ``raw``; the ids come back as ``str``,
    as the row-by-row read gives them."""
    width = _WIDTH

    def decode(heads: str | bytes, texts: bytes, arrays: str | bytes) -> list[Any]:
        if _spaced(heads):  # an id retyped as text, a tab in it: ``integers`` would skip it
            raise ValueError("a number with a space in it")
        numbers = integers(heads)
        lengths = numbers[:]
        del lengths[::width]  # each row's (id's length,) raw's
        if not text_ids:
            del lengths[::2]
        ends = list(itertools.accumulate(lengths))
        values = orjson.loads(arrays)
        if (
            len(numbers) % width
            or (ends[-1] if ends else 0) != len(texts)
            or type(values) is not list
            or len(values) * width != len(numbers)
        ):
            raise ValueError("a page cut short")
        parts = list(map(texts.__getitem__, map(slice, [0, *ends[:-1]], ends)))
        if text_ids:
            # not UTF-8: a ValueError; utf8mb4_bin orders ids by code point, as str does
            ids: list[Any] = [part.decode() for part in parts[::2]]
            del parts[::2]
        else:
            ids = numbers[1::width]
        rows = list(zip(numbers[::width], ids, parts, repeat(stream), values))
        rows.sort()  # in the query's order already, most likely: one comparison a row
        return rows

    return decode


_WIDTH = 3  # numbers a row: seq, id (or its length), raw's length


def _spaced(words: str | bytes) -> bool:
    """Whether a row's numbers hold JSON's other white space (a tab, a line's end), which
    orjson skips: an id a DBA retyped as text and stored as a tab and ``2`` read as 2, where
    SQL's ``id = '2'`` and the row-by-row read (the page is read again so) see another id."""
    if isinstance(words, bytes):
        return b"\t" in words or b"\n" in words or b"\r" in words
    return "\t" in words or "\n" in words or "\r" in words


def integers(words: str | bytes, nulls: bool = False) -> list[Any]:
    """The numbers of a text of decimal integers (BIGINTs the server wrote), one space
    between two, read by one orjson call (a quarter of ``int`` by ``map``'s time); with
    ``nulls``, ``N`` is None. A ValueError for anything else (orjson's error is one)."""
    if isinstance(words, bytes):  # as the driver gave it: no decoding into ``str`` first
        data = b"[" + words.replace(b" ", b",") + b"]"
        found = orjson.loads(data.replace(b"N", b"null") if nulls else data)
    else:
        text = "[" + words.replace(" ", ",") + "]"
        found = orjson.loads(text.replace("N", "null") if nulls else text)
    if not (_NULLABLE if nulls else _INTEGER).issuperset(map(type, found)):
        raise ValueError("a word not an integer")
    return found  # type: ignore[no-any-return]


_INTEGER = frozenset({int})
_NULLABLE = frozenset({int, type(None)})
