"""What ``verify``'s two readers share: the page sizes and the dialect's SQL names (the
ledger's, ``etl.integrity.streams``; the rows', ``etl.integrity.reads.rows``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

PAGE = 25_000
# A page on MariaDB, read as one value (``pages.mariadb_page``): a few MB, well within the
# 16 MB ``max_allowed_packet`` it has by default (a larger page is read row by row).
MARIADB_PAGE = 5000


def names(conn: Connection) -> tuple[Callable[[str], str], str]:
    """The dialect's identifier quoting and bound-parameter marker."""
    dialect = conn.dialect
    return dialect.identifier_preparer.quote, "?" if dialect.paramstyle == "qmark" else "%s"
