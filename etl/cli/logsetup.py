"""Logging is configured here, once, by the CLI.

Text lines for people; ``--log-format json`` gives one JSON object per line for
log shippers. Under journald (``$JOURNAL_STREAM`` set) text lines carry no
timestamp of their own, since the journal adds one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# LogRecord attributes that are not user-supplied ``extra`` fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(
            (k, v) for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"
        )
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(
    *, verbose: bool = False, quiet: bool = False, fmt: str = "text", stream: TextIO | None = None
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter stays out unless asked for.
    for noisy in ("urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Never SQL echo, even with --verbose: its parameters are whole audit records.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    # psycopg reports an aborted pipeline on its own after the error we already raise.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)
