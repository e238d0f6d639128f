"""PostgreSQL's own word that a row's derived columns are what the writer stores for its
``raw``: one condition a row, computed in the page's query, so that the columns' array
is sent, and compared in Python (``etl.integrity.checks.derived``), only for a row it
does not vouch for.

It may say "agrees" only where the writer's rules (``etl.records.audit.parse_record``,
``etl.records.access.parse_access_record``) store exactly what is stored: a text column
equal to ``raw``'s member of the same name, a string (a number, a boolean, an object are
stored as NULL); a number column's text equal to the member's, a number (jsonb's ``=``
takes ``1.0`` for ``1``; the writer stores NULL for a float of 2**53 or more); NULL
where ``raw`` has no member or one the writer stores as NULL for sure; a time equal to
``raw``'s text as Zendesk writes it. Only where the columns are of the types the schema
makes (``as_made``: a column a DBA altered to another type or collation compares
otherwise, and then nothing is vouched for). Anything else (a number given as a string,
a float, a URL with a query, a NULL anywhere in the condition) is "check": Python's exact
path decides. ``raw`` was matched with its ledger entry first (jsonb keeps one value of
a repeated key, the last, as Python's parse does).

Not on SQLite or MariaDB: their JSON functions read ``raw``'s text again for each member,
which cost more than the comparison they would save (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy.engine import Connection

from etl.common.fields import ACCESS_PATH_LENGTH
from etl.integrity import pages

_NULLED = "('null', 'boolean', 'object', 'array')"  # kinds stored as NULL in a number column
_TIME = '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\''
_FIRST = "'0001-01-01 00:00:00+00'::timestamptz"  # to_char writes 1 BC as "0001" too

# Each derived column's rule by kind (``{c}`` the column, ``{m}`` raw's member, ``{r}``
# raw itself, ``{k}`` the member's name); NULL anywhere makes the row's condition not
# true: "check". Texts compared as text (``=`` is bytewise under the columns' default,
# deterministic collation: ``as_made``), numbers as their text (jsonb's ``=`` takes
# ``1.0`` for ``1``), which cost the server a fifth of ``to_jsonb``'s comparisons. Each
# operator's operands of one type (a varchar column cast to text): ``pg_catalog``'s exact
# operator is then the one taken, never one another schema on the search path holds for
# ``text = varchar``, which would be (a DBA able to create one in ``public``).
_RULES = {
    "text": (
        "CASE WHEN {c} IS NULL THEN jsonb_typeof({m}) IS DISTINCT FROM 'string'"
        " ELSE jsonb_typeof({m}) = 'string' AND {r} ->> '{k}' = {c}::text END"
    ),
    "integer": (
        f"CASE WHEN {{c}} IS NULL THEN COALESCE(jsonb_typeof({{m}}) IN {_NULLED}, TRUE)"
        " ELSE jsonb_typeof({m}) = 'number' AND {r} ->> '{k}' = {c}::text END"
    ),
    "identifier": (  # a non-empty string as it is (a number's text: "check")
        f"CASE WHEN {{c}} IS NULL THEN COALESCE(jsonb_typeof({{m}}) IN {_NULLED}, TRUE)"
        " ELSE jsonb_typeof({m}) = 'string' AND {r} ->> '{k}' = {c}::text"
        " AND {c}::text <> '' END"
    ),
    "time0": (
        f"({{r}} ->> '{{k}}' = to_char({{c}} AT TIME ZONE 'UTC', {_TIME}) AND {{c}} >= {_FIRST})"
    ),
    "time6": (
        f"({{r}} ->> '{{k}}' = to_char({{c}} AT TIME ZONE 'UTC', {_TIME})"
        f" AND to_char({{c}}, 'US') = '000000' AND {{c}} >= {_FIRST})"
    ),
    "json": (
        "CASE WHEN {c} IS NULL OR jsonb_typeof({c}) = 'null'"
        " THEN COALESCE(jsonb_typeof({m}) = 'null', TRUE)"
        " ELSE {c}::text = {m}::text END"
    ),
}
_RULES["int32"] = _RULES["integer"]  # an INTEGER column holds no other (``as_made``)
# The column types the rules are sound for, as the schema makes them
# (``format_type``'s): any other, such as one a DBA altered, and nothing is vouched for.
_TYPES = {
    "text": r"text|character varying\([0-9]+\)",
    "identifier": r"character varying\([0-9]+\)",
    "path": r"character varying\([0-9]+\)",
    "integer": "bigint",
    "int32": "integer",
    "time0": r"timestamp\(0\) with time zone",
    "time6": r"timestamp\(6\) with time zone",
    "json": "jsonb",
}


def _path(column: str, raw: str) -> str:
    """``url_path`` of ``raw``'s url where it is plain: a string with neither ``#`` nor
    ``://`` (its path up to a ``?``); a URL that is no string stores NULL."""
    url = f"({raw} ->> 'url')"
    path = f"split_part({url}, '?', 1)"
    return (
        f"CASE WHEN jsonb_typeof({raw} -> 'url') IS DISTINCT FROM 'string' THEN {column} IS NULL"
        f" WHEN strpos({url}, '#') = 0 AND strpos({url}, '://') = 0"
        f" AND char_length({path}) <= {ACCESS_PATH_LENGTH}"
        f" THEN {column}::text = {path} ELSE FALSE END"
    )


# The kind of each stream's derived columns (``derived.AUDIT.columns``, ``ACCESS``'s)
KINDS = {
    "audit_logs": {
        "action": "text",
        "action_label": "text",
        "actor_id": "integer",
        "actor_name": "text",
        "change_description": "text",
        "created_at": "time0",
        "ip_address": "text",
        "source_id": "integer",
        "source_label": "text",
        "source_type": "text",
        "url": "text",
    },
    "access_logs": {
        "timestamp": "time6",
        "user_id": "identifier",
        "ip_address": "text",
        "method": "text",
        "url": "text",
        "path": "path",
        "status": "int32",
        "authorization_type": "text",
        "client": "text",
        "referer": "text",
        "bytes_sent": "integer",
        "category": "text",
        "summary": "text",
        "origin_service": "text",
        "graphql": "json",
    },
}


def postgresql(stream: str, columns: tuple[str, ...], quote: Callable[[str], str]) -> str:
    """The condition, true only when every one of ``columns`` (the stream's derived
    columns, all of them: a column without a rule is refused) agrees with ``raw``."""
    kinds, raw = KINDS[stream], quote("raw")
    if set(kinds) != set(columns):
        raise ValueError(f"no rule for {sorted(set(columns) ^ set(kinds))}")
    parts = []
    for name in columns:
        column, member = quote(name), f"({raw} -> '{name}')"
        if kinds[name] == "path":
            parts.append(f"({_path(column, raw)})")
        else:
            rule = _RULES[kinds[name]]
            parts.append(f"({rule.format(c=column, m=member, r=raw, k=name)})")
    return " AND ".join(parts)


def as_made(conn: Connection, table: str, stream: str) -> bool:
    """Whether ``table``'s derived columns (and ``raw``) are of the types the schema
    makes, texts under the database's default collation (deterministic, as a database's
    default always is): what ``postgresql``'s comparisons are exact for."""
    rows = pages.fetch(
        conn,
        # operands of one type (``_RULES``), the collation compared here: no ``oid =
        # integer`` another schema could define
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attcollation"
        " FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s)::oid AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    )
    found = {name: (kind, int(collation) in (0, 100)) for name, kind, collation in rows}
    wanted = {**KINDS[stream], "raw": "json"}
    return all(
        name in found and found[name][1] and re.fullmatch(_TYPES[kind], found[name][0])
        for name, kind in wanted.items()
    )
