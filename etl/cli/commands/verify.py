"""``verify`` and ``keygen``: the ledger checked against its checkpoints; a signing key made.

``verify`` exits 0 when everything verifies, 1 on any finding, 2 on a usage or config
error. It needs only read access to the database and the public keys: an auditor runs it
with a read-only user. ``checkpointer`` wires the checkpoints into ``sync``'s runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.cli.arguments import positive_int, utc_time
from etl.cli.gc_freeze import work_begins
from etl.cli.shared import load_settings, migrate_hint
from etl.common.errors import ConfigError, ExitCode
from etl.common.settings import Settings
from etl.common.urls import zendesk_host

if TYPE_CHECKING:
    from etl.integrity.checkpoint import Checkpointer
    from etl.integrity.findings import AccountReport
    from etl.integrity.keys import PublicKey
    from etl.storage.store import Store

log = logging.getLogger(__name__)
_ENTRY = re.compile(r"\A[0-9]+\Z")


def since_value(text: str) -> int | Any:
    """``--since``: a ledger entry number, or a time."""
    if _ENTRY.match(text.strip()):
        return int(text)
    try:
        return utc_time(text)
    except argparse.ArgumentTypeError:  # its message named dates and times only
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a ledger entry number, a date or a time; use e.g. 15234, "
            "2024-01-31 or 2024-01-31T12:00:00Z"
        ) from None


def cmd_keygen(args: argparse.Namespace) -> int:
    from etl.integrity.keys import generate

    public = generate(Path(args.path))
    print(f"wrote {args.path} (mode 600): keep it off the database host's backups")
    print(f"key id: {public.id}")
    print(
        f"public key (give it to verify --public-key; keep it with the auditors):\n{public.pem()}"
    )
    print(f"verifier key: {public.vkey()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from etl.integrity import findings
    from etl.integrity.parallel.crew import Crew
    from etl.integrity.verify import VerifyOptions, verify_account
    from etl.storage.store import open_store

    settings = load_settings(args, require_credentials=False)
    options = VerifyOptions(
        public_keys=_public_keys(args, settings),
        directory=_directory(args.checkpoints or settings.ledger.checkpoint_dir),
        since_entry=args.since if isinstance(args.since, int) else None,
        since_time=None if args.since is None or isinstance(args.since, int) else args.since,
    )
    jobs = args.jobs or default_jobs()
    with open_store(settings, migrate_hint=migrate_hint(args), read_only=True) as store:
        names = args.account or _accounts(store)
        work_begins()  # a walk of millions of rows: the collector on, as in sync and export
        # the verify's own process walks a span too: jobs - 1 workers, started when needed
        crew = Crew(settings.database.url, jobs - 1) if jobs > 1 else None
        try:
            reports = [verify_account(store.engine, name, options, crew) for name in names]
        finally:
            if crew is not None:
                crew.close()
        _record(store, reports)
    summary = findings.summary(reports)
    if args.json:
        print(json.dumps({"summary": summary, "accounts": [r.fields() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print_report(report)
        print(summary)
    bad = any(report.findings for report in reports)
    return int(ExitCode.FINDINGS if bad else ExitCode.OK)


def default_jobs() -> int:
    """The cores this process may run on (its affinity: a container's or a unit's CPU set)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _print_report(report: AccountReport) -> None:
    for finding in report.findings:
        print(finding.line())
    for note in report.notes:
        print(f"account {report.account}: {note}")
    verdict = "INVALID" if report.findings else "valid"
    print(
        f"account {report.account}: {verdict}: {report.entries} ledger entries, "
        f"{report.records} records, {report.checkpoints_valid}/{report.checkpoints} "
        f"checkpoints valid, {len(report.findings)} findings"
    )
    for stream, tally in report.by_stream().items():
        print(
            f"account {report.account}: stream {stream}: {tally['records_verified']} records, "
            f"{tally['findings']} findings"
        )


def _accounts(store: Store) -> list[str]:
    from etl.integrity.streams import ledger_accounts

    with store.engine.connect() as conn:
        return ledger_accounts(conn)


def _public_keys(args: argparse.Namespace, settings: Settings) -> list[PublicKey]:
    from etl.integrity.keys import load_signing_key, read_public_key

    given = [read_public_key(path) for path in args.public_key]
    ledger = settings.ledger
    if ledger.has_key:
        try:
            key = load_signing_key(ledger.signing_key_file, ledger.signing_key_env, os.environ)
        except ConfigError:
            if not given:  # with the job's config, its key; an auditor gives the public one
                raise
        else:
            if key is not None:
                given.append(key.public)
    return given


def _directory(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"checkpoint directory {path} does not exist or is not a directory")
    return path


def _record(store: Store, reports: list[AccountReport]) -> None:
    """Keep each account's outcome for ``status`` and the metrics, where the user may
    write (an auditor's read-only user cannot: then it is only printed)."""
    import sqlalchemy as sa

    from etl.common.clock import utc_now
    from etl.storage.schema.integrity import verifications

    values = [
        {
            "account": r.account, "finished_at": utc_now(), "records": r.records,
            "checkpoints_valid": r.checkpoints_valid, "checkpoints": r.checkpoints,
            "findings": len(r.findings),
        }
        for r in reports
    ]  # fmt: skip
    if not values:
        return
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.insert(verifications), values)
    except sa.exc.DBAPIError:
        log.debug("verify's outcome not recorded (no write access)", exc_info=True)


def checkpointer(store: Store, settings: Settings) -> Checkpointer:
    """Checkpoints of each configured account, signed with the configured key (if any)."""
    from etl.integrity.checkpoint import Checkpointer, CheckpointTarget
    from etl.integrity.keys import load_signing_key

    ledger = settings.ledger
    key = load_signing_key(ledger.signing_key_file, ledger.signing_key_env, os.environ)
    directory = Path(ledger.checkpoint_dir) if ledger.checkpoint_dir else None
    targets = {
        account.name: CheckpointTarget(
            zendesk_host(account.zendesk.base_url) or account.name, key, directory
        )
        for account in settings.accounts
    }
    every = ledger.checkpoint_every.total_seconds()
    return Checkpointer(store.engine, targets, every, time.monotonic)


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    """``verify``'s options (the account option is main's)."""
    parser.add_argument(
        "--public-key", action="append", default=[], metavar="FILE",
        help="a public key checkpoints may be signed with (PEM or keygen's verifier key "
        "line; repeatable, for keys rotated out; default: the configured signing key's)",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoints", metavar="DIR",
        help="the checkpoint directory to compare with (default: [ledger] checkpoint_dir)",
    )  # fmt: skip
    parser.add_argument(
        "--since", type=since_value, metavar="ENTRY|TIME",
        help="start at this ledger entry number, or at the first entry written at or after TIME",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=positive_int, metavar="N",
        help="processes walking the ledger at once, each a span with its own connection "
        "(default: the CPUs it may use; a ledger under 200,000 entries is walked by one)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON evidence")
