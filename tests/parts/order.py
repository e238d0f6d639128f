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

# Longest first, from `pytest -n 2 --durations` on 2 cores (the longest test of each module;
# a module of many long tests, test_access_backfill, before its longest alone says). Measured
# 2026-12-06 while other jobs loaded the cores (load 6 to 10): their order, not idle seconds.
LONGEST_FIRST = (
    "test_export_access_kill.py",  # 28 s on MariaDB
    "test_migrate_resume.py",  # 34 s on MariaDB idle; 10-14 s since its kill points changed
    "test_export_kill.py",  # 21 s
    "test_export_options.py",  # 17 s (median; SIGTERM and SIGKILL in one test; load 6 to 10)
    "test_kill.py",  # 20 s
    "test_demo.py",  # 19 s (load 10)
    "test_deploy.py",  # 19 s, was 43 s: its pip-less fresh venv (median of three; load 7 to 11)
    "test_access_kill.py",  # 17 s
    "test_verify_no_false_alarm.py",  # 15 s, its kill loop (median; load 6 to 10)
    "test_access_sync.py",  # 10 s, was 24 s (median; load 6 to 10)
    "test_access_backfill.py",  # 12 s, and 24 tests (median; load 6 to 10)
    "test_sync.py",  # 13 s (load 10)
    "test_concurrency_backfill.py",  # 12 s (load 10)
    "test_backfill.py",  # 11 s
    "test_lock_lost.py",  # was 12 s; 7 s beside the old's 12 s (medians of three; load 7 to 11)
    "test_ledger.py",  # was 12 s; 10 s beside the old's 28 s (medians of three; load 7 to 11)
    "test_operations.py",  # 6 s
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
