"""The worker processes of ``verify --jobs N``: each walks a span of the ledger
(``etl.integrity.parallel.piece``) with a database connection of its own.

Processes, not threads: hashing and orjson hold the GIL for inputs as small as a
record. Started with ``spawn`` (a clean interpreter: a fork would copy the verify's
engine, its pooled connections and the fetching thread's locks mid-use), once a verify,
when the first account large enough needs them; each opens its own engine. A worker
walks only in the verify's snapshot: PostgreSQL's exported to it
(``SET TRANSACTION SNAPSHOT``), elsewhere a snapshot of its own that must show the
account's ledger head the verify's shows (every write of rows, rejects or entries moves
it); else it answers ``stale`` and the span is walked by the verify itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess

from sqlalchemy.engine import Engine

from etl.common.errors import DatabaseError
from etl.integrity.parallel.piece import Span, Walked, walk

_STOP_WAIT = 10.0  # seconds a worker has to finish once told to stop


def snapshot(engine: Engine) -> Engine:
    """Reads that all see one moment: REPEATABLE READ (PostgreSQL's snapshot, InnoDB's
    consistent read); SQLite's read transaction is one snapshot already (WAL)."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ")


@dataclass(frozen=True)
class Task:
    """A span to walk in the verify's snapshot: the head it shows, PostgreSQL's snapshot."""

    account: str
    head: tuple[int, str] | None
    exported: str | None
    span: Span


class Crew:
    """Up to ``size`` worker processes on the database at ``url`` (a secret: it is handed to
    each worker through its pipe, never on a command line)."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self.workers: list[tuple[BaseProcess, Pipe]] = []

    def start(self, tasks: list[Task]) -> list[Pipe]:
        """Each task sent to a worker (started if need be): the pipes to ``receive`` from."""
        context = multiprocessing.get_context("spawn")
        while len(self.workers) < len(tasks):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_serve, args=(theirs, self.url), name="verify-worker", daemon=True
            )
            with _main_unnamed():
                process.start()
            theirs.close()
            self.workers.append((process, mine))
        sent = []
        for task, (_, pipe) in zip(tasks, self.workers, strict=False):
            pipe.send(task)
            sent.append(pipe)
        return sent

    @staticmethod
    def receive(pipe: Pipe) -> Walked | None:
        """A worker's walk, or None when its snapshot was not the verify's."""
        try:
            kind, value = pipe.recv()
        except EOFError:
            raise DatabaseError("a verify worker ended before its span was walked") from None
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        for _, pipe in self.workers:
            with contextlib.suppress(OSError):  # ended already
                pipe.send(None)
        for process, pipe in self.workers:
            process.join(_STOP_WAIT)
            if process.is_alive():
                process.terminate()
                process.join()
            pipe.close()
        self.workers.clear()


@contextlib.contextmanager
def _main_unnamed() -> Iterator[None]:
    """Within it, ``spawn`` does not import the main script again in the worker.

    spawn runs the parent's ``__main__`` file again in each worker as ``__mp_main__``
    unless it names none (under ``python -m`` it skips it already). The console script's
    imports are all of ``etl.cli`` (0.13 s of a worker's start, during which this process
    walked its span and then waited); the worker needs only this module, which its
    pickled target imports."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _serve(pipe: Pipe, url: str) -> None:
    """A worker: its engine, then a span a task until told to stop (None) or orphaned."""
    from etl.integrity.pages import by_index
    from etl.integrity.streams import head
    from etl.storage.engine import database_errors, open_engine

    engine = open_engine(url, create=False)
    reads = snapshot(engine)
    try:
        while True:
            try:
                task: Task | None = pipe.recv()
            except EOFError:
                return
            if task is None:
                return
            try:
                with (
                    database_errors(engine, "verifying the ledger"),
                    reads.connect() as conn,
                    conn.begin(),
                ):
                    if task.exported is not None:
                        conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{task.exported}'")
                    by_index(conn)  # after the snapshot: it must be the first statement
                    if head(conn, task.account) != task.head:
                        pipe.send(("stale", None))
                        continue
                    pipe.send(("walked", walk(conn, task.account, task.span)))
            except Exception as exc:  # the verify raises it, or names it
                pipe.send(("error", _sendable(exc)))
    finally:
        engine.dispose()


def _sendable(exc: Exception) -> Exception:
    """``exc`` if it survives the pipe, else a DatabaseError naming its type only."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # any failure to copy it
        return DatabaseError(f"a verify worker failed: {type(exc).__name__}")
    return exc
