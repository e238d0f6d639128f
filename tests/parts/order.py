"""The order the tests are handed out in: the modules with the longest tests first.

``pytest -n 2`` hands each worker its next test when it is free (xdist's
``--maxschedchunk=1``, set below unless given: one at a time, not in long runs decided
at the start). A long test
handed out near the end keeps one worker busy while the other has nothing left to do,
so the modules holding the longest tests (``--durations``: kills, signals, migrations on
MariaDB) go first. Within a module the order stays, so its fixtures are made once.
"""

from __future__ import annotations

import pytest

# Longest first, from `pytest --durations` (the longest test of each module, then the sum).
LONGEST_FIRST = (
    "test_migrate_resume.py",
    "test_export_kill.py",
    "test_ledger.py",
    "test_backfill.py",
    "test_kill.py",
    "test_demo.py",
    "test_export_options.py",
    "test_access_kill.py",
    "test_signals.py",
    "test_secrets.py",
    "test_store.py",
    "test_sync.py",
    "test_shared_quota.py",
    "test_operations.py",
    "test_deploy.py",
    "test_wheel.py",
)


def longest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: the modules above first, in that order, then the rest as
    collected (a stable sort: the order within a module is kept)."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def one_at_a_time(config: pytest.Config) -> None:
    """xdist's ``--maxschedchunk=1`` unless the command line says otherwise (set here, not
    in addopts: a run with ``-p no:xdist`` would refuse the option)."""
    if getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1
