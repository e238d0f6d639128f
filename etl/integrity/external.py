"""``verify``'s look at the checkpoint directory: its checkpoints, listed before the
database snapshot is read, and compared with the database's after it (each side's
missing ones are findings)."""

from __future__ import annotations

from pathlib import Path

from etl.integrity.checkpoint import directory_checkpoints
from etl.integrity.findings import AccountReport, Finding
from etl.integrity.note import Checkpoint


def listed(directory: Path | None, account: str) -> dict[str, Checkpoint]:
    if directory is None:
        return {}
    return {made.text: made for _, made in directory_checkpoints(directory, account)}


def compare(
    report: AccountReport, directory: Path, held: list[Checkpoint], found: dict[str, Checkpoint]
) -> None:
    texts = {made.text for made in held}
    missing = [made for made in held if made.text not in found]
    if missing:  # made while verify read the database: written to the directory since?
        found = listed(directory, report.account)
    for made in missing:
        if made.text not in found:
            report.add(
                Finding(
                    "missing from the external copy",
                    report.account,
                    entry=made.size,
                    detail=f"checkpoint at entry {made.size} "
                    f"of {made.time} is in the database, not in {directory}",
                )
            )
    for made in found.values():
        if made.text not in texts:
            report.add(
                Finding(
                    "missing from the database",
                    report.account,
                    entry=made.size,
                    detail=f"checkpoint at entry {made.size} of {made.time} is in "
                    f"{directory}, not in the database",
                )
            )
