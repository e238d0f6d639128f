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

# Longest first, from `pytest -n 4 --durations=80` on 2 idle cores (the longest test of each
# module; a module of many long tests, test_access_backfill, before its longest alone says).
LONGEST_FIRST = (
    "test_migrate_resume.py",  # 57 s on MariaDB
    "test_export_access_kill.py",  # 46 s
    "test_export_kill.py",  # 30 s
    "test_backfill.py",  # 29 s
    "test_demo.py",  # 29 s
    "test_access_kill.py",  # 27 s
    "test_access_backfill.py",  # 22 s, and 195 s over 21 tests
    "test_deploy.py",  # 23 s
    "test_kill.py",  # 21 s
    "test_ledger.py",  # 20 s
    "test_export_options.py",  # 13 s
    "test_lock_lost.py",  # 12 s
    "test_sync.py",
    "test_concurrency_backfill.py",
    "test_operations.py",
    "test_verify_no_false_alarm.py",
    "test_access_sync.py",
    "test_backfill_hostile.py",
    "test_store.py",
    "test_monitoring.py",
    "test_limits.py",
    "test_shared_quota.py",
    "test_signals.py",
    "test_secrets.py",
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
