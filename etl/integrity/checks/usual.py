"""The usual audit row's derived columns on SQLite, told in one comparison of bytes.

On SQLite, ``raw`` matched its ledger entry by its bytes' hash (its text is the canonical
one) and the derived columns come as ``json_array``'s text, which SQLite writes as orjson
does (compact). For the usual row, those bytes are ``raw``'s own fields, in the columns'
order, written by orjson, with its time as Zendesk writes it: ``same`` says so with one
parse, one C call to pick the fields (``itemgetter``) and one write, and ``differing``
(``etl.integrity.checks.derived``), which builds its list a field at a time and is the
only judge of any other row, then has nothing to find. Nothing is trusted that the
database could steer: the bytes compared are the ones SQL reads, and the time is checked
as ``time_text`` checks it before it is taken as its own stored text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeGuard

import orjson

_loads, _dumps, _fromisoformat = orjson.loads, orjson.dumps, datetime.fromisoformat
# A time as Zendesk writes it, ASCII digits only (``fromisoformat`` reads other forms too)
_ZENDESK_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def zendesk_time(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a real time (not the 30th of February) as Zendesk writes it, to
    the second (``2026-10-07T01:13:06Z``): the database gives that text back as it is."""
    if type(value) is not str or len(value) != 20 or _ZENDESK_TIME(value) is None:
        return False
    try:
        _fromisoformat(value)
    except ValueError:
        return False
    return True


def checker(derived: Any) -> Callable[[Any, Any], bool] | None:
    """``same(text, values)`` for the stream ``derived`` describes (a ``derived.Derived``,
    which imports this module for ``zendesk_time``): whether the array ``values`` (the
    bytes SQLite's ``json_array`` wrote) is ``raw``'s own fields as orjson writes them, so
    that ``differing`` finds nothing; None for a stream whose columns are not all ``raw``'s
    fields as they are (the access log's: a computed path, times to the microsecond)."""
    if derived.fsp or derived.computed or derived.json_columns or len(derived.columns) < 2:
        return None
    fields, at = itemgetter(*derived.columns), derived.time_index

    def same(text: Any, values: Any) -> bool:
        try:
            found = fields(_loads(text))
        # a field missing, a text that is no object (or an integer past 64 bits): the
        # field-by-field path decides
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return False
        return _dumps(found) == values and zendesk_time(found[at])

    return same
