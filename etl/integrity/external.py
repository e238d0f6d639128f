"""``verify``'s look at the checkpoint directory: its checkpoints, listed before the
database snapshot is read, and compared with the database's after it (each side's
missing ones are findings).

A file listed while it is written (only where the directory takes neither hard links nor
renames, so checkpoint files are written in place: ``etl.integrity.checkpoint_files``)
may be read cut: a strict prefix of a checkpoint the database holds, which is no
checkpoint of its own (``whole``); the held one must still be found whole. Temporary
``.partial`` files are never listed.
"""

from __future__ import annotations

import time
from pathlib import Path

from etl.integrity.checkpoint_files import directory_checkpoints
from etl.integrity.findings import AccountReport, Finding
from etl.integrity.note import Checkpoint

# A held checkpoint whose file is seen cut is being written: listed again until whole,
# for this long at most (seconds; a write takes milliseconds).
_SETTLE = 2.0


def listed(directory: Path | None, account: str) -> dict[str, Checkpoint]:
    if directory is None:
        return {}
    return {made.text: made for _, made in directory_checkpoints(directory, account)}


def _cut(text: str, held: list[str]) -> bool:
    """Whether ``text`` (a file's, its bytes kept) is a strict prefix of one of ``held``."""
    start = text.encode("utf-8", "surrogateescape")
    return any(len(whole) > len(text) and whole.encode().startswith(start) for whole in held)


def whole(found: dict[str, Checkpoint], held: list[Checkpoint]) -> dict[str, Checkpoint]:
    """``found`` less the cut copies of ``held`` checkpoints (read while written, or cut by
    a kill): the database's checkpoints are read after the listing, so a checkpoint whose
    file was being written is among them."""
    texts = {made.text for made in held}
    strays = [text for text in found if text not in texts]
    if not strays:
        return found
    cut = {text for text in strays if _cut(text, list(texts))}
    return {text: made for text, made in found.items() if text not in cut}


def compare(
    report: AccountReport, directory: Path, held: list[Checkpoint], found: dict[str, Checkpoint]
) -> None:
    """``found``: the directory's checkpoints listed before the snapshot (``whole``). Those
    listed again for what it lacks are not taken as missing from the database: they may
    be of checkpoints made since the snapshot. ``held`` is oldest first."""
    texts = {made.text for made in held}
    # The database's checkpoints before the first one the directory has were made before
    # checkpoint_dir was set (the job copies out its own from then on): not expected there.
    first = next((i for i, made in enumerate(held) if made.text in found), 0)
    if first:
        report.notes.append(
            f"{first} checkpoint{'s' if first > 1 else ''} made before the first one in "
            f"{directory} (entry {held[first].size} of {held[first].time}): not expected there"
        )
    missing = [made for made in held[first:] if made.text not in found]
    if missing:  # made while verify read the database: written to the directory since?
        again = _settled(directory, report.account, [made.text for made in missing])
        missing = [made for made in missing if made.text not in again]
    for made in missing:
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
        if made.text in texts:
            continue
        if made.size < 0:  # no checkpoint: its file named (it has no entry or time)
            detail = f"{made.origin} is no checkpoint of the database's"
        else:
            detail = (
                f"checkpoint at entry {made.size} of {made.time} is in {directory}, "
                "not in the database"
            )
        entry = made.size if made.size >= 0 else None
        report.add(Finding("missing from the database", report.account, entry=entry, detail=detail))


def _settled(directory: Path, account: str, missing: list[str]) -> dict[str, Checkpoint]:
    """The directory listed again; again while one of ``missing`` is there cut (being
    written), for ``_SETTLE`` seconds at most."""
    deadline = time.monotonic() + _SETTLE
    while True:
        again = listed(directory, account)
        writing = [text for text in again if text not in missing and _cut(text, missing)]
        if not writing or time.monotonic() > deadline:
            return again
        time.sleep(0.05)
