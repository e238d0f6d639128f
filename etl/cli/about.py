"""What each command does and an example of it: the text of every subcommand's ``--help``
(and of docs/COMMANDS.md, made from the parser). A new command adds its line here."""

from __future__ import annotations

from etl.cli.output import PROG

# name -> (what it does, an example): each subcommand's --help shows both.
ABOUT = {
    "sync": (
        "Read everything new since the watermark and upsert it; run it from cron or a timer.",
        f"{PROG} --config /etc/zendesk-audit-etl/config.toml --quiet sync",
    ),
    "resync": (
        "Re-read a past window and upsert it, without moving the watermark; the last line "
        "says how many records were missing or different.",
        f"{PROG} resync --since 2026-01-01 --until 2026-02-01",
    ),
    "migrate": (
        "Create or upgrade the database schema.",
        f"{PROG} migrate",
    ),
    "status": (
        "Per account: watermark and how far it is behind now, rows, rejects, last success "
        "and failure, recent runs.",
        f"{PROG} status --max-lag 1h   # exit 7 when any account's data is older",
    ),
    "check": (
        "Validate the config, reach the database and make one authenticated API request; "
        "exits non-zero when sync would refuse to run.",
        f"{PROG} --config ./config.toml check",
    ),
    "list": (
        "Read audit records straight from the API, without the database; with --stream "
        "access_logs, the access log's stored copy from the database.",
        f"{PROG} list --since 2026-11-01 --filter action=destroy --format table",
    ),
    "export": (
        "Write the records stored since a consumer's last export as JSON lines, in the "
        "order they were stored: raw, or OCSF events. Into a file exactly once, even "
        "across crashes; to standard output at least once.",
        f"{PROG} export --consumer siem --output /var/log/zendesk-audit-etl/audit.jsonl",
    ),
    "verify": (
        "Check the ledger: recompute every record's hash and the chain, check each "
        "checkpoint's signature and that the chain reaches it, compare with the checkpoint "
        "directory. Exit 0 when all verifies, 1 on any finding, 2 on a usage or config error.",
        f"{PROG} verify --public-key ledger.pub --checkpoints /mnt/worm/checkpoints",
    ),
    "verify-export": (
        "Check an export file against its signed manifests (FILE.manifest), with the public "
        "key alone: no config, no database. For each manifest in order: its signature, its "
        "byte range meeting the previous one's (the first at 0), the SHA-256 of those bytes, "
        "its seq range meeting the previous one of its consumer and account; then bytes past "
        "the last manifest. Exit 0 when all are valid, 1 on any finding, 2 on a usage error.",
        f"{PROG} verify-export /var/log/zendesk-audit-etl/audit.jsonl --public-key ledger.pub",
    ),
    "reconcile": (
        "Read a period again from the API (budgeted like sync, writing nothing to the "
        "records) and compare it with the stored rows per UTC day, for the audit log and "
        "the access log if the account copies it: records at Zendesk, rows "
        "stored, missing, extra and differing ids, the scope, the last signed checkpoint. "
        "A killed run of the same period resumes at its first unfinished day. Exit 0 when "
        "all matches, 1 when any day differs, 2 on a usage or config error.",
        f"{PROG} reconcile --since 2026-11-01 --until 2026-11-30T23:59:59Z --json",
    ),
    "keygen": (
        "Write a new Ed25519 key for signing ledger checkpoints (mode 600, never over an "
        "existing file) and print its public key and key id.",
        f"{PROG} keygen /etc/zendesk-audit-etl/ledger.key",
    ),
    "init": (
        "Write a commented config file to start from (the example shipped with the package).",
        f"{PROG} init /etc/zendesk-audit-etl/config.toml",
    ),
}
