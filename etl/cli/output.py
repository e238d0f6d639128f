"""The program's name and the one error line a failure ends with.

Every command and the signal handling share them: one format for every failure, on stderr,
and a JSON object under ``--log-format json``.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime

from etl.common.errors import ExitCode

PROG = "zendesk-audit-etl"


class Output:
    json = False  # --log-format json: the error line is a JSON object too


# A URL's query string (Zendesk's filters: the window, already in the summary line) makes a
# failure line hundreds of characters long; the path says which request failed.
_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*?(?=:?\s|:?$)")


def fail(message: str, code: ExitCode | None = None) -> None:
    """The one error line of a failure: short, and JSON under ``--log-format json``."""
    message = _QUERY.sub(r"\1?...", message)
    if Output.json:
        fields: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "error", "event": "failed", "message": message,
        }  # fmt: skip
        if code is not None:
            fields["exit_code"] = int(code)
        print(json.dumps(fields), file=sys.stderr)
    else:
        print(f"{PROG}: error: {message}", file=sys.stderr)
