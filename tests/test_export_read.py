"""``ReadAhead``: the export's reads in a thread, bounded, errors handed over, closed."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from support import wait_until

from etl.common.errors import DatabaseError
from etl.export.read import READ_AHEAD, ReadAhead


class Source:
    """Numbers 0..count-1, counting what was made; fails at ``fail_at`` if given."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.made = 0
        self.closed = False

    def items(self) -> Generator[int, None, None]:
        try:
            for number in range(self.count):
                if number == self.fail_at:
                    raise DatabaseError("the read failed")
                self.made += 1
                yield number
        finally:
            self.closed = True


def test_items_come_in_order_and_the_source_is_closed() -> None:
    source = Source(50)
    with ReadAhead(source.items) as items:
        assert list(items) == list(range(50))
    assert source.closed


def test_an_error_comes_out_after_the_items_before_it() -> None:
    source = Source(10, fail_at=3)
    got: list[int] = []
    with ReadAhead(source.items) as items, pytest.raises(DatabaseError, match="read failed"):
        for item in items:
            got.append(item)
    assert got == [0, 1, 2]
    assert source.closed


def test_reads_stay_a_bounded_number_ahead_and_stop_when_closed() -> None:
    source = Source(1000)
    reads = ReadAhead(source.items)
    first = next(iter(reads))
    # one taken, READ_AHEAD waiting, one made and waiting for room
    wait_until(lambda: source.made >= READ_AHEAD + 2, "the reads to run ahead")
    reads.close()  # waits for the thread: nothing is made after this
    assert first == 0
    assert source.made == READ_AHEAD + 2
    assert source.closed
