"""``verify-export``: an export file checked against its signed manifests with the public key
alone. A real export of several runs (the job, on each database) verifies untouched, and
each way the file or its manifests can be changed is found and named; the file reads are
bounded (a FIFO or /dev/zero refused at once, a long line read no further)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from parts.cli import cli, one_error_line, run_cli
from parts.verify.signed import keygen, synced
from support import audit_record, recent

from etl.common.errors import ExitCode
from etl.integrity import manifest
from etl.integrity.keys import parse_signing_key
from zendesk_sim import SimulatedZendesk

HEADER = manifest.HEADER
Tamper = Callable[[Path, Path], None]  # (the export file, a key of another) -> changed


def entries(out: Path) -> list[str]:
    """The manifests of ``out.manifest``, each as written (body, signature, blank lines)."""
    text = Path(f"{out}.manifest").read_text()
    return [HEADER + part for part in text.split(HEADER)[1:]]


def rewrite(out: Path, change: Callable[[list[str]], list[str]]) -> None:
    Path(f"{out}.manifest").write_text("".join(change(entries(out))))


def edit(number: int, old: Callable[[str], str], new: Callable[[str], str]) -> Tamper:
    """Manifest ``number``'s line ``old(entry)`` replaced by ``new(entry)`` (the signature kept)."""

    def tamper(out: Path, other: Path) -> None:
        def change(found: list[str]) -> list[str]:
            entry = found[number - 1]
            found[number - 1] = entry.replace(old(entry), new(entry), 1)
            return found

        rewrite(out, change)

    return tamper


def field(entry: str, name: str) -> str:
    (line,) = [line for line in entry.splitlines() if line.startswith(f"{name} ")]
    return line


def numbers(entry: str, name: str) -> tuple[int, int]:
    first, last = field(entry, name).split(" ")[1].split("-")
    return int(first), int(last)


def flip_byte(out: Path, other: Path) -> None:
    start, end = numbers(entries(out)[1], "bytes")
    data = bytearray(out.read_bytes())
    data[(start + end) // 2] ^= 0x01
    out.write_bytes(bytes(data))


def truncate(out: Path, other: Path) -> None:
    start, _ = numbers(entries(out)[2], "bytes")
    os.truncate(out, start + 10)


def append(out: Path, other: Path) -> None:
    with out.open("ab") as data:
        data.write(b'{"id": 1, "account": "acme"}\n')


def remove_second(out: Path, other: Path) -> None:
    rewrite(out, lambda found: [found[0], found[2]])


def resign_second(out: Path, other: Path) -> None:
    key = parse_signing_key(other.read_text(), "test")

    def change(found: list[str]) -> list[str]:
        body = found[1].partition("\n\n")[0] + "\n"
        stamp = base64.b64encode(bytes.fromhex(key.public.id) + key.sign(body.encode()))
        found[1] = f"{body}\n\u2014 zendesk-audit-etl {stamp.decode()}\n\n"
        return found

    rewrite(out, change)


def unsign_second(out: Path, other: Path) -> None:
    rewrite(out, lambda found: [found[0], found[1].partition("\n\n")[0] + "\n\n", found[2]])


def _bytes_end_earlier(entry: str) -> str:
    start, end = numbers(entry, "bytes")
    return f"bytes {start}-{end - 1}"


def _seq_later(entry: str) -> str:
    first, last = numbers(entry, "seq")
    return f"seq {first + 1}-{last}"


# (name, the change, the (kind, manifest number) of every finding it must give)
TAMPERINGS: list[tuple[str, Tamper, set[tuple[str, int | None]]]] = [
    ("a flipped byte", flip_byte, {("modified", 2)}),
    ("a truncated file", truncate, {("truncated", 3)}),
    ("bytes appended", append, {("unmanifested tail", None)}),
    ("a range edited", edit(2, lambda e: field(e, "bytes"), _bytes_end_earlier),
     {("bad signature", 2), ("modified", 2), ("byte gap", 3)}),
    ("a sha256 edited", edit(1, lambda e: field(e, "sha256"), lambda e: "sha256 " + "0" * 64),
     {("bad signature", 1), ("modified", 1)}),
    ("a seq edited", edit(3, lambda e: field(e, "seq"), _seq_later),
     {("bad signature", 3), ("seq gap", 3)}),
    ("a manifest removed from the middle", remove_second, {("byte gap", 2), ("seq gap", 2)}),
    ("a manifest signed by another key", resign_second, {("unknown key", 2)}),
    ("an unsigned manifest", unsign_second, {("unsigned", 2)}),
]  # fmt: skip


def check(out: Path, *args: str) -> tuple[int, dict[str, object]]:
    done = run_cli("verify-export", str(out), "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def findings(report: dict[str, object]) -> set[tuple[str, int | None]]:
    found = report["findings"]
    assert isinstance(found, list)
    return {(f["kind"], f["manifest"]) for f in found}


def test_a_real_export_verifies_and_every_change_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, public = keygen(tmp_path, "ledger.key")
    other, _ = keygen(tmp_path, "other.key")
    config = synced(tmp_path, zendesk, db_url, key)
    out = tmp_path / "export" / "audit.jsonl"
    out.parent.mkdir()
    for run in range(3):  # three runs: three manifests, their ranges meeting
        if run:
            ids = [9_400_000_000_000 + 10 * run + i for i in range(3)]
            zendesk.add_records([audit_record(i, recent(8)) for i in ids])
            assert cli(config, "sync").returncode == 0
        exported = cli(config, "export", "--consumer", "siem", "--output", str(out))
        assert exported.returncode == 0, exported.stderr
    size = out.stat().st_size
    assert len(entries(out)) == 3

    done = run_cli("verify-export", str(out), "--public-key", str(public))
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"3/3 manifests valid, {size} bytes verified, 0 findings"
    # with the job's config and no --public-key: its signing key's public half
    by_config = cli(config, "verify-export", str(out))
    assert by_config.returncode == ExitCode.OK, by_config.stdout + by_config.stderr
    assert f"public key {keygen_id(public)}: signed 3 of 3 manifests" in by_config.stdout
    code, report = check(out, "--public-key", str(public))
    assert code == 0 and report["bytes_verified"] == size and report["findings"] == []

    for name, tamper, expected in TAMPERINGS:
        copy = tmp_path / name.replace(" ", "-")
        shutil.copytree(out.parent, copy)
        tamper(copy / out.name, other)
        code, report = check(copy / out.name, "--public-key", str(public))
        assert (code, findings(report)) == (ExitCode.FINDINGS, expected), (name, report)
        done = run_cli("verify-export", str(copy / out.name), "--public-key", str(public))
        lines = done.stdout.splitlines()
        assert len(lines) == len(expected) + 2, (name, lines)  # findings, the key, the summary
        assert all(line.startswith("INVALID: ") and "bytes " in line for line in lines[:-2])


def test_a_run_killed_before_its_manifest_is_covered_by_the_next(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """An export killed after committing and before appending its manifest leaves committed
    bytes no manifest covers: the next run's manifest starts where the last one ended, so
    an honest file still verifies with no finding."""
    key, public = keygen(tmp_path, "ledger.key")
    config = synced(tmp_path, zendesk, db_url, key)
    out = tmp_path / "audit.jsonl"
    sizes = []
    for run in range(3):
        if run:
            ids = [9_500_000_000_000 + 10 * run + i for i in range(3)]
            zendesk.add_records([audit_record(i, recent(8)) for i in ids])
            assert cli(config, "sync").returncode == 0
        exported = cli(config, "export", "--consumer", "siem", "--output", str(out))
        assert exported.returncode == 0, exported.stderr
        sizes.append(out.stat().st_size)
        if run == 1:  # the kill: this run's rows committed, its manifest never appended
            rewrite(out, lambda found: found[:-1])
    assert len(entries(out)) == 2
    assert numbers(entries(out)[1], "bytes") == (sizes[0], sizes[2])  # the lost run's too
    _, last = numbers(entries(out)[0], "seq")
    assert numbers(entries(out)[1], "seq")[0] == last + 1
    done = run_cli("verify-export", str(out), "--public-key", str(public))
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"2/2 manifests valid, {sizes[2]} bytes verified, 0 findings"
    )


def keygen_id(public: Path) -> str:
    from etl.integrity.keys import parse_public_key

    return parse_public_key(public.read_text(), "test").id


# -- hand-made exports: no database ----------------------------------------------------


def hand_made(folder: Path, runs: list[bytes], key_path: Path | None) -> Path:
    """An export file of ``runs``, each with its manifest, as the export writes them."""
    key = None if key_path is None else parse_signing_key(key_path.read_text(), "test")
    out = folder / "audit.jsonl"
    seq = 0
    at = datetime(2026, 12, 7, tzinfo=UTC)
    for data in runs:
        with out.open("ab") as written:
            written.write(data)
        lines = data.count(b"\n")
        text = manifest.manifest("siem", "acme", out, (seq + 1, seq + lines), len(data), at, key)
        manifest.append(out, text)
        seq += lines
    return out


def lines(count: int, width: int = 60) -> bytes:
    return b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * width) for i in range(count))


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    key, public = keygen(tmp_path, "ledger.key")
    return key, public


def test_ranges_longer_than_a_read_are_hashed_whole(
    tmp_path: Path, signed: tuple[Path, Path]
) -> None:
    """A range of several MiB is read in pieces, all of them hashed, to the range's end."""
    key, public = signed
    big = lines(40_000, 100)  # about 4.6 MB: several 1 MiB reads
    out = hand_made(tmp_path, [big, lines(5), big], key)
    code, report = check(out, "--public-key", str(public))
    assert code == 0 and report["bytes_verified"] == out.stat().st_size, report
    data = bytearray(out.read_bytes())
    data[len(big) - 1 - 2] ^= 0x01  # in the first range's last read
    out.write_bytes(bytes(data))
    code, report = check(out, "--public-key", str(public))
    assert code == 1 and findings(report) == {("modified", 1)}


def test_without_a_key_the_range_is_said_unsigned(tmp_path: Path) -> None:
    out = hand_made(tmp_path, [lines(3), lines(2)], None)
    done = run_cli("verify-export", str(out))
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "no public key given (--public-key) or configured: manifests 1-2 unsigned" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("2/2 manifests valid, ")
    # a key given: each unsigned manifest is a finding
    _, public = keygen(tmp_path, "ledger.key")
    code, report = check(out, "--public-key", str(public))
    assert code == 1 and findings(report) == {("unsigned", 1), ("unsigned", 2)}


def test_text_that_is_no_manifest_is_malformed(tmp_path: Path, signed: tuple[Path, Path]) -> None:
    """A stretch of other text is one finding; the next manifest's start is not judged
    against a range no one can read (the malformed one is the finding), its bytes are."""
    key, public = signed
    out = hand_made(tmp_path, [lines(3), lines(4), lines(2)], key)
    found = entries(out)
    cut = found[1].replace(field(found[1], "sha256") + "\n", "")
    Path(f"{out}.manifest").write_text(
        found[0] + "some line\n" + "y" * 100_000 + "\n\n" + cut + found[2]
    )
    code, report = check(out, "--public-key", str(public))
    assert code == 1 and findings(report) == {("malformed", 2), ("malformed", 3)}, report
    verified = len(lines(3)) + len(lines(2))
    assert report["summary"] == f"2/4 manifests valid, {verified} bytes verified, 2 findings"


@pytest.mark.parametrize("which", ["file", "manifest"])
def test_a_fifo_or_device_is_refused_at_once(tmp_path: Path, which: str) -> None:
    out = hand_made(tmp_path, [lines(3)], None)
    target = out if which == "file" else Path(f"{out}.manifest")
    target.unlink()
    os.mkfifo(target)  # no writer: an open that waited would never return
    done = run_cli("verify-export", str(out))
    assert done.returncode == ExitCode.CONFIG
    assert "not a regular file" in one_error_line(done)
    target.unlink()
    target.symlink_to("/dev/zero")  # endless: a read to the end would fill the memory
    done = run_cli("verify-export", str(out))
    assert done.returncode == ExitCode.CONFIG and "not a regular file" in one_error_line(done)


def test_a_missing_file_manifest_or_key_is_a_usage_error(tmp_path: Path) -> None:
    out = hand_made(tmp_path, [lines(3)], None)
    done = run_cli("verify-export", str(tmp_path / "other.jsonl"))
    assert done.returncode == ExitCode.CONFIG and "export file" in one_error_line(done)
    Path(f"{out}.manifest").unlink()
    done = run_cli("verify-export", str(out))
    assert done.returncode == ExitCode.CONFIG and "manifest file" in one_error_line(done)
    done = run_cli("verify-export", str(out), "--public-key", str(tmp_path / "none.pub"))
    assert done.returncode == ExitCode.CONFIG and "--public-key" in one_error_line(done)
    missing = run_cli("verify-export", str(out), "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == ExitCode.CONFIG and "config file" in one_error_line(missing)


def test_a_line_longer_than_any_manifest_writes_is_read_no_further(tmp_path: Path) -> None:
    """A name line of 5,000 bytes is no manifest's (read up to MAX_LINE, the rest skipped),
    however well it would match; the manifest after it is checked as usual."""
    out = tmp_path / "audit.jsonl"
    at = datetime(2026, 12, 7, tzinfo=UTC)
    for consumer, data in (("x" * 5000, lines(3)), ("siem", lines(2))):
        with out.open("ab") as written:
            written.write(data)
        manifest.append(out, manifest.manifest(consumer, "acme", out, (1, 3), len(data), at, None))
    code, report = check(out)
    assert code == 1 and findings(report) == {("malformed", 1)}, report
    assert "longer than any manifest's line" in json.dumps(report["findings"])
    assert report["summary"] == f"1/2 manifests valid, {len(lines(2))} bytes verified, 1 findings"


def test_a_renamed_file_is_a_note_not_a_finding(tmp_path: Path, signed: tuple[Path, Path]) -> None:
    """The manifests name the file as exported (``file audit.jsonl``); verified under
    another name (rotated, shipped) its bytes still verify, and a note says whose name
    the manifests hold. Under its own name, no note."""
    key, public = signed
    out = hand_made(tmp_path, [lines(3), lines(2)], key)
    code, report = check(out, "--public-key", str(public))
    notes = report["notes"]
    assert code == 0 and isinstance(notes, list), report
    assert not [note for note in notes if "name the file" in note]
    renamed = out.rename(tmp_path / "audit.jsonl.1")
    manifest.manifest_path(out).rename(manifest.manifest_path(renamed))
    code, report = check(renamed, "--public-key", str(public))
    assert code == 0 and report["findings"] == [], report
    assert report["bytes_verified"] == renamed.stat().st_size
    notes = report["notes"]
    assert (
        isinstance(notes, list)
        and (
            "manifests 1-2 (2 of 2) name the file audit.jsonl, not audit.jsonl.1: renamed since "
            "its export, or another file's manifests (its bytes are what is checked)"
        )
        in notes
    )
