"""Where every storage call runs: one writer thread with group commit, and reader connections.

**Writes** are jobs (``fn(tx, ...)``) handed to one writer thread per store, which owns the write
connection. It takes every job queued meanwhile into ONE transaction -- each job inside its own
savepoint, so a job that raises (a refusal, a conflict) leaves the others alone -- and commits once:
concurrent calls share a commit (and its fsync). A batch that fails as a whole (a database error, a
failed commit, a pre-commit hook such as the audit anchor) is rolled back and its jobs run again one
transaction each, so every job gets exactly its own outcome. On SQLite the transaction is ``BEGIN
IMMEDIATE`` (the file's write lock, shared with other processes); on PostgreSQL it takes one advisory
lock for the whole database first (:data:`WRITE_LOCK`): writers on every host queue there, as they do
on SQLite, which keeps the audit log one chain and makes every check-and-reserve atomic.

**Reads** run on their own connections (SQLite WAL readers, separate PostgreSQL connections) in worker
threads: a token look-up or a status read never waits behind a writer's fsync.

:class:`Store` is the async face (``await store.write(fn, ...)`` / ``await store.read(fn, ...)``): nothing
touches the database on the event loop. :meth:`Store.write_sync` / :meth:`Store.read_sync` serve
synchronous callers (the CLI, tests) through the same writer and readers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread

from interlace_mcp.policy._db import Cursor, Database, Row, database_errors

__all__ = ["WRITE_LOCK", "Reader", "Store", "Tx"]

logger = logging.getLogger("interlace_mcp.store")

P = ParamSpec("P")
T = TypeVar("T")

#: The PostgreSQL advisory lock every write transaction takes first (one writer at a time per database).
WRITE_LOCK = "interlace-write"
#: At most this many jobs share one commit.
MAX_BATCH = 128
#: Reader connections per store: reads run at most this many at once, each on a connection kept open
#: (more concurrent readers would only queue for the GIL, and opening a connection costs more than a read).
READERS = 8


class Reader:
    """What a read job sees: a cursor on a reader connection, the database, the clock."""

    def __init__(self, db: Database, cur: Cursor, clock: Callable[[], float]) -> None:
        self.db = db
        self.cur = cur
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        return self.cur.execute(sql, params)

    def one(self, sql: str, params: Any = ()) -> Row:
        return self.cur.execute(sql, params).fetchone()

    def all(self, sql: str, params: Any = ()) -> list[Row]:
        return self.cur.execute(sql, params).fetchall()


class Tx(Reader):
    """What a write job sees: a reader that may also write, inside the batch's transaction.

    ``state`` is scratch space that lives as long as the transaction (e.g. the audit chain's head);
    ``before_commit`` hooks run once, after every job, inside the transaction; ``after_rollback``
    hooks run when the transaction is rolled back (to undo what is outside the database).
    """

    def __init__(self, db: Database, cur: Cursor, clock: Callable[[], float]) -> None:
        super().__init__(db, cur, clock)
        self.state: dict[Any, Any] = {}
        self._before_commit: dict[Any, Callable[[], None]] = {}
        self._after_rollback: dict[Any, Callable[[], None]] = {}

    def insert_id(self, sql: str, params: Any) -> int:
        return self.db.insert_id(self.cur, sql, params)

    def before_commit(self, key: Any, hook: Callable[[], None]) -> None:
        """Run ``hook`` once before COMMIT (the last registration under ``key`` wins)."""
        self._before_commit[key] = hook

    def after_rollback(self, key: Any, hook: Callable[[], None]) -> None:
        self._after_rollback[key] = hook

    def run_before_commit(self) -> None:
        for hook in list(self._before_commit.values()):
            hook()

    def run_after_rollback(self) -> None:
        for hook in list(self._after_rollback.values()):
            try:
                hook()
            except Exception:  # a cleanup must not hide the failure that caused it
                logger.exception("rollback hook failed")


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class _BatchFailed(Exception):
    """The batch's transaction failed as a whole: run its jobs one by one."""


class _Writer:
    """The writer thread: group commit over one connection."""

    def __init__(self, open_db: Callable[[], Database], clock: Callable[[], float], db: Database | None) -> None:
        self._open_db = open_db
        self._clock = clock
        self._db = db
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        #: Write transactions begun and committed, and jobs run (for the tests and the benchmarks).
        self.transactions = 0
        self.commits = 0
        self.jobs = 0

    def submit(self, job: _Job) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the store is closed")
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="interlace-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = self._open_db()
        return self._db

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if len(batch) == 1:
                self._alone(batch[0])
                continue
            try:
                outcomes = self._together(batch)
            except _BatchFailed:
                for job in batch:
                    self._alone(job)
                continue
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _begin(self) -> tuple[Cursor, Tx]:
        db = self.db
        cur = db.cursor()
        try:
            db.begin(cur)
        except database_errors():
            cur.close()
            if not (db.is_postgres and db.raw.broken):
                raise
            cur = db.cursor()  # reconnects: nothing was done yet
            db.begin(cur)
        db.lock(cur, WRITE_LOCK)
        self.transactions += 1
        return cur, Tx(db, cur, self._clock)

    def _rollback(self, cur: Cursor, tx: Tx | None) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(*database_errors()):
                cur.execute("ROLLBACK")
        if tx is not None:
            tx.run_after_rollback()

    def _alone(self, job: _Job) -> None:
        """One job, one transaction: its exception rolls everything back and is its answer."""
        cur: Cursor | None = None
        tx: Tx | None = None
        try:
            cur, tx = self._begin()
            result = job.fn(tx, *job.args, **job.kwargs)
            tx.run_before_commit()
            cur.execute("COMMIT")
        except BaseException as exc:
            if cur is not None:
                self._rollback(cur, tx)
            job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.commits += 1
            self.jobs += 1
            job.future.set_result(result)
        finally:
            if cur is not None:
                with contextlib.suppress(*database_errors()):
                    cur.close()

    def _together(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Every job in one transaction, each in a savepoint; raises _BatchFailed to fall back."""
        try:
            cur, tx = self._begin()
        except database_errors() as exc:
            raise _BatchFailed from exc
        outcomes: list[tuple[bool, Any]] = []
        try:
            for job in batch:
                cur.execute("SAVEPOINT job")
                try:
                    value = job.fn(tx, *job.args, **job.kwargs)
                except database_errors() as exc:
                    raise _BatchFailed from exc  # the connection may be unusable: start over, one by one
                except Exception as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT job")
                    cur.execute("RELEASE SAVEPOINT job")
                    outcomes.append((False, exc))
                else:
                    cur.execute("RELEASE SAVEPOINT job")
                    outcomes.append((True, value))
            tx.run_before_commit()
            cur.execute("COMMIT")
        except _BatchFailed:
            self._rollback(cur, tx)
            raise
        except Exception as exc:
            self._rollback(cur, tx)
            raise _BatchFailed from exc
        except BaseException:
            self._rollback(cur, tx)
            raise
        finally:
            with contextlib.suppress(*database_errors()):
                cur.close()
        self.commits += 1
        self.jobs += len(batch)
        return outcomes


class _Readers:
    """A small pool of reader connections; each is used by one thread at a time."""

    def __init__(self, open_db: Callable[[], Database]) -> None:
        self._open_db = open_db
        self._free: list[Database] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Database:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._open_db()

    def release(self, db: Database) -> None:
        with self._lock:
            if not self._closed and len(self._free) < READERS:
                self._free.append(db)
                return
        db.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for db in free:
            db.close()


class Store:
    """The database, for async and sync callers alike: writes through the writer, reads on readers."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        """``db``: the write connection (its dialect and target open the readers)."""
        self.dialect = db.dialect
        self.target = db.target
        self.description = db.description
        self._clock = clock
        # An in-memory SQLite database exists only on its one connection: everything goes through it.
        self._memory = not db.is_postgres and db.target == ":memory:"
        self._writer = _Writer(self._reopen, clock, db)
        self._readers = _Readers(self._reopen)
        self._reading = anyio.CapacityLimiter(READERS)
        self._direct: Database | None = None

    def _reopen(self) -> Database:
        return Database(self.dialect, self.target)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def now(self) -> float:
        return self._clock()

    @property
    def transactions(self) -> int:
        """Write transactions begun so far by this store (committed or not)."""
        return self._writer.transactions

    @property
    def commits(self) -> int:
        """Write transactions committed so far by this store."""
        return self._writer.commits

    # ---- async ---------------------------------------------------------------------------------

    async def write(self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(tx, ...)`` in the writer's next transaction; its result, or its exception."""
        job = _Job(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def deliver(done: concurrent.futures.Future[Any]) -> None:
            loop.call_soon_threadsafe(_settle, answer, done)

        job.future.add_done_callback(deliver)
        self._writer.submit(job)
        # A cancelled caller stops waiting, but its job still runs to the end (like a shielded write).
        return await answer

    async def read(self, fn: Callable[Concatenate[Reader, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(reader, ...)`` on a reader connection in a worker thread (one consistent snapshot)."""
        if self._memory:
            return await self.write(fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: self.read_sync(fn, *args, **kwargs), limiter=self._reading)

    # ---- sync ----------------------------------------------------------------------------------

    def write_sync(self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        job = _Job(fn, args, kwargs)
        self._writer.submit(job)
        result: T = job.future.result()
        return result

    def read_sync(self, fn: Callable[Concatenate[Reader, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._memory:
            return self.write_sync(fn, *args, **kwargs)
        db = self._readers.acquire()
        try:
            with db.transaction(read=True) as cur:
                result = fn(Reader(db, cur, self._clock), *args, **kwargs)
        except database_errors():
            db.close()  # possibly broken: never back into the pool
            raise
        except BaseException:
            self._readers.release(db)
            raise
        self._readers.release(db)
        return result

    def direct(self) -> Database:
        """A connection of its own for ad-hoc statements (tests, maintenance); closed with the store."""
        if self._memory:
            db = self._writer.db
            return db
        if self._direct is None:
            self._direct = self._reopen()
        return self._direct

    def close(self) -> None:
        self._writer.close()
        self._readers.close()
        if self._direct is not None:
            self._direct.close()
            self._direct = None


def _settle(answer: asyncio.Future[Any], done: concurrent.futures.Future[Any]) -> None:
    if answer.cancelled():
        return
    exc = done.exception()
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(done.result())
