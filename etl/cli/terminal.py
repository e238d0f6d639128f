"""Text for a terminal: what others wrote made harmless, widths in columns, and the
fixed-width table of ``list`` and ``stored``. Pure functions, no I/O.

Text shown on a terminal passes ``printable`` where it holds what others wrote (records'
fields, errors quoting a server, scopes): a control character (C0, DEL, C1: ESC among them)
or a bidirectional override would let a record set the terminal's title, clear the screen
or reorder what is shown; each is written as its escape (``\x1b``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from unicodedata import category, combining, east_asian_width, normalize

# Every field of an audit record, as the API names them; the long text last.
LIST_COLUMNS = ("created_at", "id", "action", "action_label", "actor_id", "actor_name",
                "source_type", "source_id", "source_label", "ip_address", "url",
                "change_description")  # fmt: skip
MAX_CELL = 40  # terminal columns; longer cells are cut with "…"


# Explicit embeddings, overrides and isolates: they reorder the text after them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` with every control character and bidirectional control escaped."""
    if text.isprintable():  # the usual case, in one C loop (it is False for those below)
        return text
    return "".join(_escaped(c) for c in text)


def _escaped(char: str) -> str:
    if category(char) == "Cc" or char in _BIDI_CONTROLS:
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def records_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str] = LIST_COLUMNS
) -> str:
    """A fixed-width table for a terminal; long cells are cut."""
    if not records:
        return "no records\n"
    rows = [list(columns), *([_cell(r.get(c)) for c in columns] for r in records)]
    widths = [min(MAX_CELL, max(text_width(row[i]) for row in rows)) for i in range(len(rows[0]))]
    lines = ["  ".join(_fit(v, w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _cell(value: object) -> str:
    # NFC: a combining accent then counts as part of its letter
    return "" if value is None else printable(normalize("NFC", " ".join(str(value).split())))


def char_width(char: str) -> int:
    """Terminal columns of one character: 2 for wide (CJK) ones, 0 for combining marks."""
    if east_asian_width(char) in ("W", "F"):
        return 2
    return 0 if combining(char) else 1


def text_width(text: str) -> int:
    return sum(char_width(c) for c in text)


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal columns (ending in "…" when cut), padded to it."""
    if text_width(text) > width:
        kept: list[str] = []
        used = 0
        for char in text:
            if used + char_width(char) > width - 1:
                break
            kept.append(char)
            used += char_width(char)
        text = "".join(kept) + "…"
    return text + " " * (width - text_width(text))
