"""The driver options in ``database.url``'s query string, told apart from the database.

An option the driver does not take, or a value it refuses (``?sslmode=bogus``,
``?connect_timeout=abc``), is a mistake in the config: ``ConfigError`` (exit 2) naming
the option, not a failure to connect (exit 6) nor an internal error (PyMySQL raises a
``TypeError`` for an unknown keyword). ``check_options`` reads what it can before any
connection (SQLAlchemy's own reading of the options, the keywords PyMySQL and libpq
take); ``refused_option`` reads the rest from the driver's message when it connects
(libpq checks most values only then). Neither message holds the URL's password.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from etl.common.errors import ConfigError

_FIX = "fix or remove it in database.url's query string"
# libpq's and psycopg's words for an option or a value they refuse (PostgreSQL 12 to 18)
_REFUSED = re.compile(
    r'(invalid connection option "[^"]*"'
    r'|invalid integer value "[^"]*" for connection option "[^"]*"'
    r"|invalid [a-z_]+ value: \S+"
    r"|bad value for [a-z_]+: \S+)"
)
_MYSQL_TLS = "ssl_ca, ssl_cert, ssl_key, ssl_verify_cert, ssl_verify_identity, ssl_disabled"
_MYSQL_FILES = frozenset({"ssl_ca", "ssl_cert", "ssl_key", "read_default_file"})


def check_options(url: URL) -> None:
    """``ConfigError`` naming the first option of ``url`` its driver would refuse, as far
    as it can be told without connecting (before ``create_engine``, which raises a
    ``ValueError`` for a value it cannot convert)."""
    if not url.query:
        return
    cparams = _connect_params(url.get_dialect()(), url)
    driver = url.get_driver_name()
    if driver == "pymysql":
        from pymysql.connections import Connection

        taken = set(inspect.signature(Connection.__init__).parameters)
        for name in sorted(set(cparams) - taken):
            tls = f" (its TLS options: {_MYSQL_TLS})" if name.startswith("ssl") else ""
            raise ConfigError(f"database url: PyMySQL takes no option {name!r}{tls}; {_FIX}")
        for name in _MYSQL_FILES.intersection(url.query):  # PyMySQL's OSError as it connects
            path = url.query[name]
            if isinstance(path, str) and not os.path.isfile(path):
                raise ConfigError(f"database url: option {name!r} names no file: {path}; {_FIX}")
    elif driver == "psycopg":
        from psycopg import ProgrammingError
        from psycopg.conninfo import make_conninfo

        try:
            make_conninfo("", **{name: cparams[name] for name in url.query if name in cparams})
        except ProgrammingError as exc:
            raise ConfigError(f"database url: {_first_line(exc)}; {_FIX}") from None


def _connect_params(dialect: Any, url: URL) -> dict[str, Any]:
    """The driver's keywords SQLAlchemy makes of ``url`` (its options' values converted:
    a number, a flag); ``ConfigError`` for an option it cannot convert or ignores."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", sa.exc.SAWarning)
            return dict(dialect.create_connect_args(url)[1])
    except sa.exc.SAWarning as warned:  # SQLite: options sqlite3 does not take, ignored
        names = re.findall(r"'([^']*)'", str(warned).split(" are not accepted", 1)[0])
        listed = ", ".join(repr(name) for name in names) or "an option"
        raise ConfigError(
            f"database url: sqlite3 does not take {listed} (it takes timeout, and with "
            f"uri=true SQLite's own URI options); {_FIX}"
        ) from None
    except (ValueError, TypeError):
        for name in url.query:  # which one: each alone
            try:
                dialect.create_connect_args(url.set(query={name: url.query[name]}))
            except (ValueError, TypeError):
                raise ConfigError(
                    f"database url: option {name!r} has a value its driver cannot read; {_FIX}"
                ) from None
        raise ConfigError(f"database url: its options cannot be read together; {_FIX}") from None


def refused_option(exc: BaseException, password: str | None) -> ConfigError | None:
    """The ``ConfigError`` for a driver's refusal of an option of the URL as it
    connected (libpq checks most values then), or None for any other failure."""
    orig = getattr(exc, "orig", None)
    found = _REFUSED.search(_first_line(orig if isinstance(orig, BaseException) else exc))
    if found is None:
        return None
    text = found.group(1)
    if password:
        text = text.replace(password, "***")
    return ConfigError(f"database url: {text}; {_FIX}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
