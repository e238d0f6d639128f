"""Secrets in the configuration: Zendesk credentials and the database URL.

A secret may be written inline, read from a file (``api_token_file``: systemd credentials),
or from the environment (``ZENDESK_API_TOKEN``, or ``api_token_env = "VAR"`` to name another
variable); it is wrapped in ``Secret`` the moment it is read, and no message ever shows it.
A file that holds one inline and that other users can read earns a warning.

Every value passes ``etl.common.secret.clean`` first: stripped, and refused if a control
character is left. A secret file is read only if it is a regular file (``/dev/zero`` would
fill the memory, a FIFO block start-up forever) and at most ``SECRET_FILE_LIMIT`` long.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from etl.common import files
from etl.common.secret import Secret, clean
from etl.common.settings import Credentials, DatabaseSettings
from etl.config.section import Section

log = logging.getLogger(__name__)

SECRET_KEYS = ("api_token", "password", "oauth_token", "client_secret")
CREDENTIAL_KEYS = {
    "email", "client_id", "oauth_scope",
    *SECRET_KEYS,
    *(f"{k}_file" for k in SECRET_KEYS),
    *(f"{k}_env" for k in SECRET_KEYS),
}  # fmt: skip
# url_file / url_env: the URL (and its password) kept out of the config file
DATABASE_KEYS = {"url", "url_file", "url_env", "auto_migrate"}
SECRET_FILE_LIMIT = 64 * 1024  # bytes: a token, a password or a URL is far shorter


def secret(
    table: Section, key: str, environ: Mapping[str, str], *, use_default_env: bool
) -> Secret | None:
    """A secret from the inline key, ``KEY_file``, ``KEY_env``, or ``ZENDESK_KEY``."""
    given = [k for k in (key, f"{key}_file", f"{key}_env") if k in table]
    if len(given) > 1:
        table.problem(key, f"give only one of {', '.join(given)}")
        return None
    value: str | None = None
    where = key
    if key in table:
        value = table.text(key)
    elif f"{key}_file" in table:
        # ${CREDENTIALS_DIRECTORY} and the like expand, for systemd's LoadCredential=.
        template = Template(table.text(f"{key}_file"))
        unset = [name for name in template.get_identifiers() if name not in environ]
        if unset:
            table.problem(f"{key}_file", _unset_variable(unset[0]))
            return None
        path = template.safe_substitute(environ)
        where = f"{key}_file"
        try:
            value = read_secret_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            table.problem(where, f"cannot read {path}: {reason}")
            return None
        if not value.strip():
            table.problem(where, f"{path} is empty")
    elif f"{key}_env" in table:
        var = table.text(f"{key}_env")
        value = environ.get(var)
        where = f"{key}_env"
        if not value:
            table.problem(where, f"environment variable {var} is not set")
    elif use_default_env:
        value = environ.get(f"ZENDESK_{key.upper()}")
        where = f"{key} (from ZENDESK_{key.upper()})"
    if not value:
        return None
    try:
        value = clean(value)
    except ValueError as exc:
        table.problem(where, f"the secret {exc}; write it on one line")
        return None
    if not value and f"{key}_env" in table:
        table.problem(where, f"environment variable {table.text(where)} is empty")
    return Secret(value) if value else None


def read_secret_file(path: str) -> str:
    """The text of a secret file: a regular file of at most ``SECRET_FILE_LIMIT`` bytes,
    else an ``OSError`` that says why. Opened without blocking, so a FIFO with no writer
    is refused at once rather than waited on."""
    try:
        return files.read_bounded(path, SECRET_FILE_LIMIT).decode("utf-8")
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
        raise OSError(0, f"larger than {SECRET_FILE_LIMIT // 1024} KiB: not a secret") from None


def credentials(
    zendesk: Section, environ: Mapping[str, str], *, use_default_env: bool
) -> Credentials:
    """Exactly one way to sign in, complete (``etl.zendesk.auth`` builds it)."""
    secrets = {
        key: secret(zendesk, key, environ, use_default_env=use_default_env) for key in SECRET_KEYS
    }
    email = zendesk.text("email") or None
    client_id = zendesk.text("client_id") or None
    scope = zendesk.text("oauth_scope", "auditlogs:read")
    creds = Credentials(email=email, client_id=client_id, oauth_scope=scope, **secrets)
    # A secret named but not read is already a problem of its own: not again a missing one.
    given = {k for k in SECRET_KEYS if _named(zendesk, k)}
    if use_default_env:
        given |= {k for k in SECRET_KEYS if _default_env(k, environ)}
    unread = [k for k in SECRET_KEYS if secrets[k] is None and k in given]
    oauth_secret = creds.client_secret is not None or "client_secret" in unread
    methods = []
    if client_id or oauth_secret:
        methods.append("client_id + client_secret")
        if not (client_id and oauth_secret):
            zendesk.problem("client_id", "OAuth needs both client_id and client_secret")
    if creds.oauth_token:
        methods.append("oauth_token")
    if creds.api_token:
        methods.append("api_token")
    if creds.password:
        methods.append("password")
    if (creds.api_token or creds.password) and not email:
        zendesk.problem("email", "api_token and password authentication need email")
    if not methods and not unread:
        zendesk.problem(
            "",
            "no credentials: set client_id + client_secret (OAuth), oauth_token, "
            "or email + api_token (or their _file / environment forms)",
        )
    elif len(methods) > 1:
        zendesk.problem("", f"several credentials given ({', '.join(methods)}); keep exactly one")
    return creds


def _unset_variable(name: str) -> str:
    if name == "CREDENTIALS_DIRECTORY":
        return (
            "${CREDENTIALS_DIRECTORY} is set by systemd for a unit with LoadCredential=; "
            "by hand, set it to the folder that holds the file (as the README does: export "
            "CREDENTIALS_DIRECTORY=/etc/zendesk-audit-etl), or give the file's own path"
        )
    return f"${{{name}}} is not set in the environment"


def _default_env(key: str, environ: Mapping[str, str]) -> bool:
    """``ZENDESK_KEY`` is set (a refused value there is a problem of its own already)."""
    return bool(environ.get(f"ZENDESK_{key.upper()}"))


def _named(table: Section, key: str) -> bool:
    return any(k in table for k in (key, f"{key}_file", f"{key}_env"))


def database(table: Section, environ: Mapping[str, str]) -> DatabaseSettings:
    """``[database]``: its URL inline, from a file or from the environment, like a secret."""
    table.unknown_keys(DATABASE_KEYS)
    default = DatabaseSettings()
    given = secret(table, "url", environ, use_default_env=False)
    url = given.reveal() if given else default.url
    if "://" not in url:
        # never echo the value: a mistyped URL may still carry a password
        key = next((k for k in ("url", "url_file", "url_env") if k in table), "url")
        table.problem(key, "not a database URL (e.g. sqlite:///audit.db)")
    elif url.split("://", 1)[1].split("?", 1)[0].count("@") > 1:
        # an '@' of the password read as the host's: its tail would be shown as the host
        key = next((k for k in ("url", "url_file", "url_env") if k in table), "url")
        table.problem(key, "holds '@' more than once: percent-encode an '@' of the user name "
                           "or password as %40 (the URL is not shown)")  # fmt: skip
    auto = table.flag("auto_migrate", default.auto_migrate)
    return DatabaseSettings(url=url, auto_migrate=auto)


def warn_if_exposed(path: Path, data: Mapping[str, Any]) -> None:
    """Inline secrets in a file that others can read deserve a warning."""
    tables = [data.get("zendesk", {}), *list(data.get("accounts", []))]
    inline = any(isinstance(t, dict) and any(k in t for k in SECRET_KEYS) for t in tables)
    if not inline and not _database_url_has_password(data.get("database")):
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s holds secrets and can be read by other users; run: chmod 600 %s", path, path
        )


def _database_url_has_password(table: object) -> bool:
    url = table.get("url") if isinstance(table, dict) else None
    if not isinstance(url, str) or "://" not in url:
        return False
    try:
        return bool(urlsplit(url).password)
    except ValueError:  # a malformed URL is reported elsewhere
        return False
