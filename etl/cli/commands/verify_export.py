"""``verify-export``: an export file checked against its signed manifests
(etl.integrity.checks.manifests), on the SIEM's host with the file, its manifest and the
public key alone: no database, and a config file only for its signing key when no
``--public-key`` is given (none found: the signatures are not checked, and it says so).

Exit 0 when every manifest is valid, 1 on any finding, 2 on a usage or config error
(a missing file, an unreadable key).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from etl.common.errors import ExitCode
from etl.config import loader as config

if TYPE_CHECKING:
    from etl.integrity.keys import PublicKey


def cmd_verify_export(args: argparse.Namespace) -> int:
    from etl.integrity.checks.manifests import check_export

    report = check_export(Path(args.file), _public_keys(args))
    if args.json:
        print(json.dumps(report.fields(), indent=2))
    else:
        for finding in report.findings:
            print(finding.line())
        for note in report.notes:
            print(note)
        print(report.summary())
    return int(ExitCode.FINDINGS if report.findings else ExitCode.OK)


def _public_keys(args: argparse.Namespace) -> list[PublicKey]:
    """The given keys; else the signing key of the config, if a config is there (given by
    ``--config`` or ``$ETL_CONFIG``, which must then exist, or ``./config.toml``)."""
    from etl.integrity.keys import load_signing_key, read_public_key

    if args.public_key:
        return [read_public_key(path) for path in args.public_key]
    path = config.resolve_path(args.config)
    if path == Path(config.DEFAULT_CONFIG_PATH) and not path.exists():
        return []
    from etl.cli.shared import load_settings

    ledger = load_settings(args, require_credentials=False).ledger
    key = load_signing_key(ledger.signing_key_file, ledger.signing_key_env, os.environ)
    return [] if key is None else [key.public]


def verify_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="the export file; its manifests are read from FILE.manifest"
    )
    parser.add_argument(
        "--public-key", action="append", default=[], metavar="FILE",
        help="a public key the manifests may be signed with (PEM or keygen's verifier key "
        "line; repeatable, for keys rotated out; default: the configured signing key's, "
        "if a config is found; else the signatures are not checked)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON evidence")
