"""The thin database layer under the ledger and the audit log: one SQL text, SQLite or PostgreSQL.

``INTERLACE_DATABASE_URL`` picks the backend: ``sqlite:///path`` (the default, one host) or
``postgresql://...`` (several instances sharing one database, via psycopg 3). The ledger and the audit
log keep ONE implementation of their logic; this module absorbs the dialects' differences:

- placeholders: the SQL is written with ``?``; for PostgreSQL it becomes ``%s`` (a literal ``%`` is
  escaped), and rows answer both ``row[0]`` and ``row["name"]`` as ``sqlite3.Row`` does;
- DDL types: ``INTEGER`` -> ``BIGINT`` (amounts in cents can pass 2**31), ``REAL`` -> ``DOUBLE
  PRECISION`` (epoch seconds need float8), ``INTEGER PRIMARY KEY AUTOINCREMENT`` -> ``BIGSERIAL``;
  statements that differ more are given per dialect;
- new ids: ``lastrowid`` (SQLite) or ``INSERT ... RETURNING id`` (PostgreSQL);
- connection setup: ``PRAGMA``s (WAL, ``synchronous=FULL``, ``busy_timeout``) only for SQLite;
  PostgreSQL connections run in autocommit and every transaction is an explicit ``BEGIN``;
- transactions and locks. **Concurrency model (the reason for the lock choice):** every write
  transaction is serialized with every other one on the database. A writer on SQLite starts with
  ``BEGIN IMMEDIATE``, which takes the file's write lock; on PostgreSQL it runs at READ COMMITTED and
  first takes one *transaction-scoped advisory lock* for the whole database (``pg_advisory_xact_lock``,
  named by the store: ``policy._store.WRITE_LOCK``), so both backends behave alike. Within it every read
  sees all earlier commits, so a check and the reservation it guards are one atomic step, and the audit
  log's hash chain -- written in the same transactions -- stays one chain. We chose one lock over
  ``SELECT ... FOR UPDATE`` because a check must also hold for rows that do not exist yet (the first
  spend_totals row of a new day, a new request id, a card being issued), which row locks cannot cover;
  over one lock per agent because the audit chain serializes every money call anyway and a second lock
  could deadlock with it; and over SERIALIZABLE-with-retry because a burst of calls then queues instead
  of aborting each other. Group commit (``policy._store``) makes the single writer cheap: concurrent
  calls of one process share a transaction and its commit. The lock key is a hash of the schema and the
  name, so two deployments in different schemas of one database never wait for each other; the locks
  are released by COMMIT or ROLLBACK (also when a client dies), so no lock outlives its transaction.
- schema migrations: :meth:`Database.migrate` applies numbered migrations per component and records
  them in ``schema_version``, inside one transaction holding the schema lock, so two instances
  starting at once apply each migration exactly once (PostgreSQL's DDL is transactional).

psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "Cursor",
    "Database",
    "Migration",
    "Row",
    "database_errors",
    "is_postgres_url",
    "parse_url",
    "private_dir",
    "private_file",
    "redact_url",
]

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
Dialect: TypeAlias = Literal["sqlite", "postgresql"]
#: A row: ``row[0]`` and ``row["column"]`` both work (``sqlite3.Row`` or :class:`PgRow`).
Row: TypeAlias = Any
#: One statement for both dialects (DDL types are translated), or one per dialect (a missing one is skipped).
Statement: TypeAlias = str | Mapping[str, str]
#: A numbered schema change: its statements, applied in one transaction.
Migration: TypeAlias = Sequence[Statement]

_SQLITE_PREFIX = "sqlite:///"
_PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(_PG_PREFIXES)


def parse_url(url: str) -> tuple[Dialect, str]:
    """``sqlite:///path`` -> (sqlite, path); ``postgresql://...`` -> (postgresql, the URL for libpq)."""
    if url.startswith(_SQLITE_PREFIX):
        return "sqlite", url[len(_SQLITE_PREFIX) :]
    if is_postgres_url(url):
        return "postgresql", url
    raise ValueError(
        f"INTERLACE_DATABASE_URL must start with sqlite:/// or postgresql:// (got {url.split(':', 1)[0]}:...)"
    )


def redact_url(url: str) -> str:
    """The URL with any password masked (for printing)."""
    if not is_postgres_url(url):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def database_errors(*extra: type[Exception]) -> tuple[type[Exception], ...]:
    """The drivers' base error classes, and ``extra`` (psycopg's only once imported: it cannot raise before)."""
    psycopg_module = sys.modules.get("psycopg")
    drivers: tuple[type[Exception], ...] = (sqlite3.Error,)
    if psycopg_module is not None:
        drivers += (psycopg_module.Error,)
    return drivers + extra


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders -> ``%s`` (the SQL of this package has no ``?`` inside string literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


_SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version"
    " (component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at REAL NOT NULL)"
)
_DDL_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


@functools.lru_cache(maxsize=256)
def _pg_ddl(statement: str) -> str:
    for pattern, replacement in _DDL_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement


class PgRow(tuple[Any, ...]):
    """A PostgreSQL row that also answers ``row["column"]`` and ``keys()``, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _pg_row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    index = {column.name: i for i, column in enumerate(description)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class Cursor:
    """A driver cursor that takes ``?`` placeholders on either backend."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self._raw = raw
        self._pg = dialect == POSTGRESQL

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self._pg:
            self._raw.execute(_pg_sql(sql), tuple(params))
        else:
            self._raw.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> Cursor:
        self._raw.executemany(_pg_sql(sql) if self._pg else sql, [tuple(p) for p in seq])
        return self

    def fetchone(self) -> Row:
        """The next row, or None (typed ``Any`` like ``sqlite3.Cursor.fetchone``)."""
        return self._raw.fetchone()

    def fetchall(self) -> list[Row]:
        return list(self._raw.fetchall())

    def __iter__(self) -> Iterator[Row]:
        return iter(self._raw)

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return getattr(self._raw, "lastrowid", None)

    def close(self) -> None:
        self._raw.close()


class Database:
    """One connection to the ledger's database, SQLite or PostgreSQL. Not thread-safe: callers lock."""

    def __init__(self, dialect: Dialect, target: str, *, timeout: float = 30.0) -> None:
        #: ``sqlite`` or ``postgresql``.
        self.dialect: Dialect = dialect
        #: The SQLite path (``:memory:`` allowed) or the PostgreSQL URL / conninfo.
        self.target = target
        self._timeout = timeout
        self._namespace = ""
        self._closed = False
        self._raw: Any = None
        self._raw = self._open()

    @classmethod
    def from_url(cls, url: str) -> Database:
        dialect, target = parse_url(url)
        return cls(dialect, target)

    @classmethod
    def sqlite(cls, path: str | Path) -> Database:
        return cls("sqlite", str(path))

    @property
    def is_postgres(self) -> bool:
        return self.dialect == POSTGRESQL

    @property
    def description(self) -> str:
        """For messages: the file, or the URL with its password masked."""
        return redact_url(self.target) if self.is_postgres else self.target

    @property
    def raw(self) -> Any:
        """The driver's connection (``sqlite3.Connection`` or ``psycopg.Connection``)."""
        return self._raw

    # ---- connecting ------------------------------------------------------------------------

    def _open(self) -> Any:
        if self.is_postgres:
            return self._open_postgres()
        if self.target != ":memory:":
            private_file(Path(self.target))
        conn = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False, timeout=self._timeout)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            _set_wal(conn, timeout=self._timeout)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_postgres(self) -> psycopg.Connection[Any]:
        import psycopg

        extra: dict[str, Any] = {} if "application_name" in self.target else {"application_name": "interlace-mcp"}
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.target, autocommit=True, row_factory=_pg_row_factory, **extra
        )
        try:
            row = conn.execute("SELECT current_schema()").fetchone()
        except BaseException:
            conn.close()
            raise
        # Lock names are per schema: deployments in different schemas of one database never contend.
        self._namespace = str(row[0]) if row and row[0] is not None else ""
        return conn

    def _ensure(self) -> None:
        """Reconnect a PostgreSQL connection that broke (server restart, network) between transactions."""
        if self.is_postgres and not self._closed and (self._raw.closed or self._raw.broken):
            with contextlib.suppress(Exception):
                self._raw.close()
            self._raw = self._open_postgres()

    def close(self) -> None:
        self._closed = True
        self._raw.close()

    # ---- statements --------------------------------------------------------------------------

    def cursor(self) -> Cursor:
        if not self.in_transaction:
            self._ensure()
        return Cursor(self._raw.cursor(), self.dialect)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """One statement outside any explicit transaction (autocommit on both backends).

        A SELECT that fails because the PostgreSQL connection broke is retried once on a new connection.
        """
        try:
            return self.cursor().execute(sql, params)
        except database_errors():
            if not (self.is_postgres and self._raw.broken and sql.lstrip()[:6].upper() == "SELECT"):
                raise
        return self.cursor().execute(sql, params)

    def ddl(self, statement: Statement) -> str | None:
        """The statement in this dialect (None: nothing to run here)."""
        if isinstance(statement, str):
            return _pg_ddl(statement) if self.is_postgres else statement
        text = statement.get(self.dialect)
        return None if text is None else (_pg_ddl(text) if self.is_postgres else text)

    def insert_id(self, cur: Cursor, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT into a table with an ``id`` key and return the new row's id."""
        if self.is_postgres:
            row = cur.execute(sql + " RETURNING id", params).fetchone()
            assert row is not None
            return int(row[0])
        cur.execute(sql, params)
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    # ---- transactions and locks ---------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        if not self.is_postgres:
            return bool(self._raw.in_transaction)
        from psycopg.pq import TransactionStatus

        return bool(self._raw.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR))

    def begin(self, cur: Cursor, *, snapshot: bool = False, read: bool = False) -> None:
        """Start a transaction on ``cur``.

        A writer (default): SQLite ``BEGIN IMMEDIATE`` (the database's write lock, held to COMMIT);
        PostgreSQL ``BEGIN`` at READ COMMITTED -- what must not interleave is then serialized with
        :meth:`lock`. ``snapshot``: a reader that needs one consistent view of several tables; SQLite
        still takes the write lock (writers are held off) unless the file is read-only; PostgreSQL
        uses a REPEATABLE READ, READ ONLY snapshot and blocks nobody. ``read``: a reader that must
        never wait for a writer: SQLite a deferred ``BEGIN`` (a WAL snapshot), PostgreSQL as ``snapshot``.
        """
        if self.is_postgres:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if snapshot or read else "BEGIN")
            return
        if read:
            cur.execute("BEGIN")  # deferred: a WAL snapshot at the first read, never the write lock
            return
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not snapshot or getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_READONLY:
                raise
            cur.execute("BEGIN")

    @contextmanager
    def transaction(self, *, snapshot: bool = False, read: bool = False) -> Iterator[Cursor]:
        """``BEGIN`` (see :meth:`begin`) ... ``COMMIT``; ``ROLLBACK`` on any exception.

        A PostgreSQL connection found broken at ``BEGIN`` (server restarted, idle connection dropped) is
        reopened and the ``BEGIN`` sent again: nothing was done yet, so this is always safe.
        """
        cur = self.cursor()
        try:
            self.begin(cur, snapshot=snapshot, read=read)
        except database_errors():
            cur.close()
            if not (self.is_postgres and self._raw.broken):
                raise
            cur = self.cursor()  # reconnects
            try:
                self.begin(cur, snapshot=snapshot, read=read)
            except BaseException:
                cur.close()
                raise
        try:
            yield cur
            if snapshot or read:
                cur.execute("ROLLBACK")  # nothing was written
            else:
                cur.execute("COMMIT")
        except BaseException:
            if self.in_transaction:
                with contextlib.suppress(*database_errors()):
                    cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def _lock_key(self, parts: Sequence[str]) -> int:
        digest = hashlib.sha256("\x00".join((self._namespace, *parts)).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def lock(self, cur: Cursor, *name: str) -> None:
        """Wait for the lock called ``name`` until this transaction ends (PostgreSQL advisory xact lock).

        SQLite: nothing to do, the writer already holds the database's write lock. Take a blocking lock
        only while holding no other lock of this module (first thing in the transaction), so lock waits
        can never form a cycle.
        """
        if self.is_postgres:
            cur.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key(name),))

    # ---- schema --------------------------------------------------------------------------------

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Bring ``component``'s tables up to ``len(migrations)``; returns the version found before.

        Migration ``n`` (1-based) runs once, in one transaction with its ``schema_version`` row, under
        the schema lock: instances starting together wait for each other and skip what is done. A
        database newer than this build is refused (an older build must not write to it).
        """
        with self.transaction() as cur:
            self.lock(cur, "schema")
            cur.execute(_pg_ddl(_SCHEMA_VERSION) if self.is_postgres else _SCHEMA_VERSION)
            row = cur.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
            found = int(row[0]) if row else 0
            if found > len(migrations):
                raise RuntimeError(
                    f"the {component} tables in {self.description} are at schema version {found}, newer than this"
                    f" build of interlace-mcp knows ({len(migrations)}); upgrade interlace-mcp"
                )
            for migration in migrations[found:]:
                for statement in migration:
                    text = self.ddl(statement)
                    if text is not None:
                        cur.execute(text)
            if found < len(migrations):
                cur.execute(
                    "INSERT INTO schema_version (component, version, applied_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (component) DO UPDATE SET version = excluded.version,"
                    " applied_at = excluded.applied_at",
                    (component, len(migrations), time.time()),
                )
        return found


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700 for the directory itself, whatever the umask.

    Only a directory this call creates is changed: an existing one (a home directory, /tmp) keeps its mode.
    """
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            return path  # created meanwhile by another process, which set its mode
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path) -> None:
    """Make sure the SQLite file ``path`` exists with mode 0600 before SQLite opens it.

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode, so they follow. Files
    left readable by others (an older version, a permissive umask) are tightened if they are ours.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(OSError):
                if existing.stat().st_mode & 0o077:
                    os.chmod(existing, 0o600)
        return
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode passes through the umask
    finally:
        os.close(fd)


def _set_wal(conn: sqlite3.Connection, *, timeout: float = 30.0) -> None:
    """Switch to WAL, retrying while another process holds the lock.

    SQLite may answer "database is locked" to this pragma at once, without calling the busy handler,
    when several processes open a new file together (the first switch needs an exclusive lock).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
