"""One config writer for the tests: the TOML file a user would write, made from values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

Value = str | int | float | bool

# Fast enough for any test, far from what a simulator allows; 9 is the discard port.
DEFAULT_ZENDESK: dict[str, Value] = {"name": "acme", "requests_per_minute": 2500}
UNREACHABLE = "http://127.0.0.1:9"


def _toml(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    return repr(value)


def _table(name: str, values: Mapping[str, Value | None], text: str) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n" + (text.rstrip("\n") + "\n" if text else "") + "\n"


def write_config(
    folder: Path,
    db_url: str,
    base_url: str = UNREACHABLE,
    *,
    zendesk: Mapping[str, Value | None] | None = None,
    sync: Mapping[str, Value | None] | None = None,
    database: Mapping[str, Value | None] | None = None,
    zendesk_text: str = "",
    database_text: str = "",
    text: str = "",
    filename: str = "config.toml",
) -> Path:
    """Write ``folder/filename`` (mode 0600, as the CLI insists) and return its path.

    ``[zendesk]`` gets ``base_url``, ``name = "acme"`` and ``requests_per_minute = 2500``
    unless ``zendesk`` says otherwise (a None value leaves a key out); ``zendesk_text`` and
    ``database_text`` are raw TOML added to those tables, ``text`` raw TOML at the end."""
    path = folder / filename
    body = _table(
        "zendesk", {"base_url": base_url, **DEFAULT_ZENDESK, **(zendesk or {})}, zendesk_text
    )
    if sync:
        body += _table("sync", sync, "")
    body += _table("database", {"url": db_url, **(database or {})}, database_text)
    path.write_text(body + text, encoding="utf-8")
    path.chmod(0o600)
    return path


def quick_config(
    tmp_path: Path,
    base_url: str,
    db_url: str,
    extra: str = "",
    database_extra: str = "",
    retry_budget: str | float = "3s",
) -> Path:
    """``write_config`` for a Zendesk the command gives up on within seconds (a 2 s timeout,
    ``retry_budget``); ``extra`` and ``database_extra`` are raw TOML for those tables."""
    return write_config(
        tmp_path,
        db_url,
        base_url,
        zendesk={"retry_budget": retry_budget, "timeout": "2s"},
        zendesk_text=extra,
        database_text=database_extra,
    )
