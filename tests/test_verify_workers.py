"""``verify --jobs 3`` as a user runs it: the installed command in a new process, whose
spans after the first are walked by worker processes it starts (spawn: a new interpreter
each, its imports, the span sent through a pipe, the findings sent back and gathered
across the spans); exit 0 on an untouched store, 1 with each finding by record id.

The store is ``test_verify_parallel``'s (a copy of the module's built store), its spans
made small as there (its ``small_spans``, for the seams planned here; in the command's own
process ``LAUNCH`` sets ``MIN_SPAN`` before the script runs), so a few hundred entries
take three."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from parts.cli import CLI_ENV, ROOT
from parts.configs import write_config
from parts.verify.spans import (  # noqa: F401 (autouse here: the spans made small)
    seams,
    seq_row,
    small_spans,
)
from support import execute

from etl.integrity.keys import PublicKey
from etl.storage.schema.logs import audit_logs

# The installed script, run as the shell runs it (as its ``__main__``, as for a user; the
# crew hides that file from spawn, so workers do not import it again), after two changes to
# this process only: the spans made small, and each span this process walks itself written
# on stderr, so the test knows the others were walked by workers (which import the package
# afresh).
LAUNCH = """
import runpy, sys
from etl.integrity.parallel import piece, split

def walk(conn, account, span):
    print(f"walked here: after {span.after} upto {span.upto}", file=sys.stderr, flush=True)
    return piece.walk(conn, account, span)

split.MIN_SPAN, split.walk = 100, walk
runpy.run_path(sys.argv.pop(1), run_name="__main__")  # its argv[0] is the script's path
"""
SCRIPT = Path(sys.executable).with_name("zendesk-audit-etl")
SUMMARY = r"3/3 checkpoints valid, [1-9][0-9]* records verified, {} findings"  # the last line


def _verify(folder: Path, db_url: str, keys: list[PublicKey]) -> subprocess.CompletedProcess[str]:
    """``zendesk-audit-etl verify --jobs 3`` with the store's public key, in a new process."""
    public = folder / "ledger.pub"
    public.write_text(keys[0].pem())
    config = write_config(folder, db_url)
    args = ["--config", str(config), "verify", "--jobs", "3", "--public-key", str(public)]
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, str(SCRIPT), *args],
        env=CLI_ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _walked_here(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("walked here:")]


def test_verify_jobs_walks_spans_in_worker_processes(
    tmp_path: Path,
    db_url: str,
    stored: list[PublicKey],
) -> None:
    assert SCRIPT.is_file(), f"{SCRIPT}: run make install"
    (second, second_seq), (third, third_seq) = seams(db_url)

    clean = _verify(tmp_path, db_url, stored)
    assert clean.returncode == 0, clean.stderr
    assert "account acme: valid:" in clean.stdout
    assert re.fullmatch(SUMMARY.format(0), clean.stdout.splitlines()[-1]), clean.stdout
    # This process walked the first span only: the other two were the workers'.
    assert _walked_here(clean.stderr) == [f"walked here: after 0 upto {second - 1}"]

    # One row tampered with in each worker's span: both findings gathered, in order.
    rows = [seq_row(db_url, seq) for seq in (second_seq, third_seq)]
    execute(
        db_url,
        *[sa.update(audit_logs).where(audit_logs.c.id == row["id"]).values(raw={}) for row in rows],
    )
    tampered = _verify(tmp_path, db_url, stored)
    assert tampered.returncode == 1, tampered.stderr
    found = [line for line in tampered.stdout.splitlines() if line.startswith("INVALID:")]
    assert found == [
        f"INVALID: modified: account acme, record {row['id']}, entry {entry}: the row "
        f"(stored_seq {row['stored_seq']}) differs from its ledger entry"
        for row, entry in zip(rows, (second, third), strict=True)
    ]
    assert re.fullmatch(SUMMARY.format(2), tampered.stdout.splitlines()[-1]), tampered.stdout
    assert _walked_here(tampered.stderr) == [f"walked here: after 0 upto {second - 1}"]
