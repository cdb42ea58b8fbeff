"""The append-only, hash-chained audit log (threats H1-H5), in the ledger's database (SQLite or PostgreSQL).

Each record is canonical JSON (sorted keys, UTF-8, no whitespace) holding its ``seq``, ``ts``, every
field and ``prev_hash``; ``hash = sha256(prev_hash || record_json)``, the first ``prev_hash`` being 64
zeros. Card data never reaches the database: every string goes through :func:`redact` and the
values of secret-named keys (``card_number``, ``cvv``, ``pan``, ``token``, ...) are replaced before
hashing.

The head (``seq``, ``hash``) is also written to an *anchor*, inside the same write transaction, so a
deleted or truncated tail, or a chain recomputed from some record on, no longer matches it. On SQLite
the anchor is a file beside the database (default ``<db>.audit-head``, rewritten in place under the
write lock); on PostgreSQL, where writers run on several hosts, it is the one row of the ``audit_head``
table, updated in the same transaction as the record it names. Before each append the head is
compared with the anchor; if they differ (the tail was cut, the chain rewritten, the anchor lost), a
``audit_anchor_mismatch`` record describing both is written first, so the evidence is chained into the
log instead of being overwritten, and :meth:`AuditLog.verify` reports it for good.

With ``hmac_key`` (kept outside the database), each record also carries ``HMAC(key, hash)``: a forged
record inserted with recomputed hashes is then located exactly.

Storage and concurrency follow the ledger (same database layer and write discipline, from
:mod:`interlace_mcp.policy`): a record is appended inside a write transaction -- the server's money calls
append theirs inside the ledger store's own transactions (:meth:`AuditLog.append_in`), so a reservation
and its decision record commit together; :meth:`AuditLog.append` opens one of its own (CLI, tools that
only record). Every write transaction takes the database's write lock first (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL the advisory ``WRITE_LOCK``), before the head is read, so threads, processes and hosts get
contiguous ``seq`` values and one totally ordered chain. The anchor is written once per transaction,
just before its commit (and put back if the commit fails). Every writer of a SQLite file must use the
same anchor path (and every writer the same HMAC key).

Any failure to store a record raises :class:`AuditWriteError`; callers refuse money tools on it.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlace_mcp.audit._record import (
    GENESIS_HASH,
    REDACTED,
    AuditRecord,
    canonical_json,
    chain_hash,
    is_secret_key,
    record_mac,
    scrub,
    ts_utc,
)
from interlace_mcp.policy import WRITE_LOCK, Cursor, Database, Migration, Tx, database_errors

__all__ = ["ANCHOR_MISMATCH_EVENT", "AuditLog", "AuditWriteError", "VerifyResult"]

#: The event of the record written when the log's head did not match its anchor.
ANCHOR_MISMATCH_EVENT = "audit_anchor_mismatch"
_ANCHOR_SUFFIX = ".audit-head"

_SCHEMA: Migration = (
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        agent TEXT NOT NULL,
        tool TEXT NOT NULL,
        event TEXT NOT NULL,
        record_json TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_log_by_agent ON audit_log (agent, seq)",
    # Guards against accidental edits by other code; tamper *evidence* is the chain and the anchor.
    {
        "sqlite": "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log"
        " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "postgresql": "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    },
    {
        "sqlite": "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log"
        " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "postgresql": "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    },
    {
        "postgresql": "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    },
    {
        "postgresql": "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    },
    # The anchor where the log is shared by several hosts (SQLite keeps its anchor file).
    {
        "postgresql": "CREATE TABLE IF NOT EXISTS audit_head"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), anchor TEXT NOT NULL)"
    },
)
#: Numbered schema changes (see :meth:`Database.migrate`); append, never edit a shipped one.
_MIGRATIONS: list[Migration] = [_SCHEMA]


class AuditWriteError(RuntimeError):
    """A record could not be stored (database error, read-only or full disk, anchor write failed)."""


@dataclass(frozen=True)
class VerifyResult:
    """``records``: how many records were checked and found good (all of them when ``ok``)."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str


class _ChainState:
    """One audit log's view of the chain inside one transaction."""

    def __init__(self, anchor_before: bytes | None) -> None:
        self.anchor_before = anchor_before
        #: (seq, hash) heads known to be sound in this transaction: matching the anchor, or written here.
        self.good: set[tuple[int, str]] = set()
        self.written = False


def _head(cur: Cursor) -> tuple[int, str]:
    row = cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    prev_hash: str


class _CorruptAnchor(ValueError):
    pass


def _short(digest: str) -> str:
    return digest[:12] + "..."


class AuditLog:
    """Tamper-evident audit log (SQLite file or PostgreSQL). Thread-safe; processes and hosts may share it."""

    def __init__(
        self,
        path: str | Path | Database,
        *,
        clock: Callable[[], float] = time.time,
        anchor_path: Path | None = None,
        hmac_key: bytes | None = None,
    ) -> None:
        """``path``: a SQLite file (``:memory:`` allowed) or an open :class:`Database` (see :meth:`from_url`)."""
        self.path = path.description if isinstance(path, Database) else str(path)
        #: PostgreSQL: the anchor is the ``audit_head`` row, in the same transaction as each append.
        self._anchor_in_db = isinstance(path, Database) and path.is_postgres
        memory = self.path == ":memory:"
        if anchor_path is None and not memory and not self._anchor_in_db:
            anchor_path = Path(self.path + _ANCHOR_SUFFIX)
        #: ``None`` for an in-memory database (the anchor is kept in this object) and on PostgreSQL.
        self.anchor_path = anchor_path
        self._mem_anchor: bytes | None = None
        self._clock = clock
        self._key = hmac_key
        self._lock = threading.RLock()
        try:
            self._conn = path if isinstance(path, Database) else Database.sqlite(self.path)
        except database_errors(OSError) as exc:
            raise AuditWriteError(f"cannot open the audit log {self.path}: {exc}") from exc
        try:
            self._conn.migrate("audit", _MIGRATIONS)
        except database_errors() as exc:
            self._conn.close()
            raise AuditWriteError(f"cannot open the audit log {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    @property
    def _anchor_name(self) -> str:
        if self._anchor_in_db:
            return "(the audit_head table)"
        return str(self.anchor_path) if self.anchor_path is not None else "(in memory)"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        anchor_path: Path | None = None,
        hmac_key: bytes | None = None,
    ) -> AuditLog:
        """``sqlite:///absolute/path``, ``sqlite:///:memory:`` or ``postgresql://...`` (the ledger's URL)."""
        try:
            database = Database.from_url(url)
        except database_errors(OSError) as exc:
            raise AuditWriteError(f"cannot open the audit log: {exc}") from exc
        if database.is_postgres and anchor_path is not None:
            database.close()
            raise ValueError("anchor_path is for SQLite; on PostgreSQL the anchor is the audit_head table")
        return cls(database, clock=clock, anchor_path=anchor_path, hmac_key=hmac_key)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -----------------------------------------------------------------------------

    def append(
        self,
        *,
        agent: str,
        tool: str,
        event: str,
        decision: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        amount: str | None = None,
        currency: str | None = None,
        request_id: str | None = None,
        upstream_ids: Mapping[str, str] | None = None,
        outcome: str | None = None,
        detail: str | None = None,
        actor: str | None = None,
        scope: str | None = None,
    ) -> AuditRecord:
        """Store one record durably (its own transaction) and return it; raises :class:`AuditWriteError`."""
        fields = self._fields(
            agent=agent, tool=tool, event=event, decision=decision, arguments=arguments, amount=amount,
            currency=currency, request_id=request_id, upstream_ids=upstream_ids, outcome=outcome, detail=detail,
            actor=actor, scope=scope,
        )  # fmt: skip
        with self._lock:
            tx: Tx | None = None
            try:
                with self._conn.transaction() as cur:
                    self._conn.lock(cur, WRITE_LOCK)  # one chain: appends from every host queue here
                    tx = Tx(self._conn, cur, self._clock)
                    record = self._chain_append(tx, fields)
                    tx.run_before_commit()
            except BaseException as exc:
                if tx is not None:
                    tx.run_after_rollback()
                if isinstance(exc, AuditWriteError) or not isinstance(exc, database_errors(OSError)):
                    raise
                raise AuditWriteError(f"audit record not stored: {type(exc).__name__}: {exc}") from exc
        return record

    def append_in(
        self,
        tx: Tx,
        *,
        agent: str,
        tool: str,
        event: str,
        decision: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        amount: str | None = None,
        currency: str | None = None,
        request_id: str | None = None,
        upstream_ids: Mapping[str, str] | None = None,
        outcome: str | None = None,
        detail: str | None = None,
        actor: str | None = None,
        scope: str | None = None,
    ) -> AuditRecord:
        """Append one record inside a write transaction of the ledger's store (the same database): it is
        committed -- or rolled back -- with whatever else that transaction holds. Usable as a job itself
        (``await store.write(audit.append_in, agent=...)``). The anchor is written once per transaction,
        just before its commit. Raises :class:`AuditWriteError` when the record or the anchor cannot be stored.
        """
        fields = self._fields(
            agent=agent, tool=tool, event=event, decision=decision, arguments=arguments, amount=amount,
            currency=currency, request_id=request_id, upstream_ids=upstream_ids, outcome=outcome, detail=detail,
            actor=actor, scope=scope,
        )  # fmt: skip
        try:
            return self._chain_append(tx, fields)
        except AuditWriteError:
            raise
        except database_errors(OSError) as exc:
            raise AuditWriteError(f"audit record not stored: {type(exc).__name__}: {exc}") from exc

    def _fields(self, **values: Any) -> dict[str, Any]:
        if values["event"] == ANCHOR_MISMATCH_EVENT:
            raise ValueError(f"event {ANCHOR_MISMATCH_EVENT!r} is reserved for the audit log itself")
        try:
            fields = {name: scrub(value) for name, value in values.items() if name != "upstream_ids"}
            fields["upstream_ids"] = _upstream_ids(values["upstream_ids"])
            return fields
        except (ValueError, TypeError) as exc:
            raise AuditWriteError(f"audit record not stored: {type(exc).__name__}: {exc}") from exc

    def _chain_append(self, tx: Tx, fields: dict[str, Any]) -> AuditRecord:
        """Insert one record after the chain's head (checking the head against the anchor first)."""
        state = self._chain_state(tx)
        head_seq, head_hash = _head(tx.cur)
        if (head_seq, head_hash) not in state.good:
            mismatch = self._anchor_mismatch(state.anchor_before, head_seq, head_hash)
            if mismatch is not None:
                head_seq, head_hash, _ = self._insert(tx.cur, head_seq, head_hash, mismatch)
            state.good.add((head_seq, head_hash))
        seq, digest, record_json = self._insert(tx.cur, head_seq, head_hash, fields)
        state.good.add((seq, digest))
        return AuditRecord.from_json(record_json, digest)

    def _chain_state(self, tx: Tx) -> _ChainState:
        """This log's state in this transaction: the anchor as it was, the heads known good. Registers the
        anchor write (before commit) and its undo (after a rollback) once per transaction."""
        key = ("audit-chain", id(self))
        state = tx.state.get(key)
        if state is not None:
            assert isinstance(state, _ChainState)
            return state
        try:
            anchor_before = self._read_anchor_bytes(tx.cur)
        except OSError as exc:
            raise AuditWriteError(f"audit anchor {self._anchor_name} cannot be read: {exc}") from exc
        state = _ChainState(anchor_before)
        tx.state[key] = state

        def write_anchor() -> None:
            row = tx.one("SELECT seq, hash, prev_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            if row is None:
                return
            head = _Head(int(row[0]), str(row[1]), str(row[2]))
            state.written = True
            try:
                self._write_anchor(head, tx.cur)
            except OSError as exc:
                raise AuditWriteError(f"audit anchor {self._anchor_name} not written: {exc}") from exc

        def restore_anchor() -> None:
            if state.written:
                self._restore_anchor(state.anchor_before)

        tx.before_commit(key, write_anchor)
        tx.after_rollback(key, restore_anchor)
        return state

    def _insert(self, cur: Cursor, head_seq: int, head_hash: str, fields: Mapping[str, Any]) -> tuple[int, str, str]:
        seq = head_seq + 1
        record = {**fields, "seq": seq, "ts": ts_utc(self._clock()), "prev_hash": head_hash}
        record_json = canonical_json(record)
        digest = chain_hash(head_hash, record_json)
        mac = record_mac(self._key, digest) if self._key is not None else None
        cur.execute(
            "INSERT INTO audit_log (seq, ts, agent, tool, event, record_json, prev_hash, hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, record["ts"], record["agent"], record["tool"], record["event"], record_json, head_hash, digest, mac),
        )
        return seq, digest, record_json

    def _anchor_mismatch(self, anchor_bytes: bytes | None, head_seq: int, head_hash: str) -> dict[str, Any] | None:
        """The fields of an ``audit_anchor_mismatch`` record, or ``None`` when the anchor matches the head."""
        try:
            anchor = _parse_anchor(anchor_bytes)
        except _CorruptAnchor:
            said = "the anchor is unreadable"
            anchor_seq: int | None = None
            anchor_hash: str | None = None
        else:
            if anchor is None and head_seq == 0:
                return None
            if anchor is not None and anchor.seq == head_seq and anchor.hash == head_hash:
                return None
            anchor_seq = anchor.seq if anchor else None
            anchor_hash = anchor.hash if anchor else None
            said = (
                "the anchor is missing"
                if anchor is None
                else f"the anchor says seq {anchor.seq} hash {_short(anchor.hash)}"
            )
        detail = (
            f"before this record the log ended at seq {head_seq} hash {_short(head_hash)} but {said}:"
            " records were deleted or rewritten, or the anchor was lost"
        )
        return {
            "agent": "-",
            "tool": "audit",
            "event": ANCHOR_MISMATCH_EVENT,
            "decision": None,
            "arguments": {
                "anchor_seq": anchor_seq,
                "anchor_hash": anchor_hash,
                "log_head_seq": head_seq,
                "log_head_hash": head_hash,
            },
            "amount": None,
            "currency": None,
            "request_id": None,
            "upstream_ids": None,
            "outcome": "anchor_mismatch",
            "detail": detail,
            "actor": "interlace-mcp",
            "scope": None,
        }

    # ---- the anchor --------------------------------------------------------------------------

    def _read_anchor_bytes(self, cur: Cursor) -> bytes | None:
        if self._anchor_in_db:
            row = cur.execute("SELECT anchor FROM audit_head WHERE id = 1").fetchone()
            return None if row is None else str(row[0]).encode("utf-8")
        if self.anchor_path is None:
            return self._mem_anchor
        # Read every time (a few microseconds): another process sharing the file writes it in place, and
        # file timestamps are too coarse to tell two of its writes apart.
        try:
            fd = os.open(self.anchor_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def _write_anchor(self, head: _Head, cur: Cursor) -> None:
        data = (canonical_json({"seq": head.seq, "hash": head.hash, "prev_hash": head.prev_hash}) + "\n").encode()
        if self._anchor_in_db:  # in the append's transaction: committed or rolled back with the record
            cur.execute(
                "INSERT INTO audit_head (id, anchor) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET anchor = excluded.anchor",
                (data.decode("utf-8"),),
            )
            return
        self._write_anchor_bytes(data)

    def _write_anchor_bytes(self, data: bytes) -> None:
        if self.anchor_path is None:
            self._mem_anchor = data
            return
        # Written in place, not through a temp file and a rename: replacing the file made ext4 start writing the
        # new file's blocks out on every rename (~0.3 ms idle, over 1 ms under load, twice per money call).
        # Every write of the anchor happens under the database's write lock, so no two writers interleave and
        # every reader that takes the lock (appends, verify) sees a whole write. One pwrite of a few hundred
        # bytes at offset 0 is not torn by a killed process; the file only ever shrinks when a failed commit
        # puts an older anchor back (a kill between that write and the truncate leaves an unreadable anchor,
        # which the next append and `audit verify` report loudly, never hide). Not fsynced: the record itself
        # is durable in the database (synchronous=FULL); only an OS crash could leave the anchor one record
        # behind -- reported the same way. 0600 like the database.
        fd = os.open(self.anchor_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.pwrite(fd, data, 0) != len(data):
                raise OSError(errno.EIO, "short write")
            if os.fstat(fd).st_size != len(data):
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def _restore_anchor(self, data: bytes | None) -> None:
        """Best effort: put the anchor back after a failed commit (the record it named was not stored)."""
        if self._anchor_in_db:
            return  # rolled back with the transaction
        with contextlib.suppress(OSError):
            if data is not None:
                self._write_anchor_bytes(data)
            elif self.anchor_path is None:
                self._mem_anchor = None
            else:
                self.anchor_path.unlink(missing_ok=True)

    # ---- reading -----------------------------------------------------------------------------

    def tail(self, n: int = 20, *, agent: str | None = None) -> list[AuditRecord]:
        """The last ``n`` records (of ``agent`` if given), newest last."""
        if n <= 0:
            return []
        sql = "SELECT record_json, hash FROM audit_log"
        params: tuple[Any, ...] = ()
        if agent is not None:
            sql += " WHERE agent = ?"
            params = (agent,)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*params, n)).fetchall()
        return [AuditRecord.from_json(row[0], row[1]) for row in reversed(rows)]

    def count(self, *, agent: str | None = None, event: str | None = None) -> int:
        clauses: list[str] = []
        params: list[str] = []
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        if event is not None:
            clauses.append("event = ?")
            params.append(event)
        sql = "SELECT COUNT(*) FROM audit_log" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._lock:
            return int(self._conn.execute(sql, params).fetchone()[0])

    # ---- verification ------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order and compare its head with the anchor; name the first bad record."""
        with self._lock:
            try:
                # One consistent view of the rows and the anchor (SQLite: writers held off; PostgreSQL: a
                # REPEATABLE READ snapshot).
                with self._conn.transaction(snapshot=True) as cur:
                    return self._verify(cur)
            except database_errors() as exc:
                return VerifyResult(False, 0, None, f"cannot read the audit log: {exc}")

    def _verify(self, cur: Cursor) -> VerifyResult:
        anchor_problem: str | None = None
        anchor: _Head | None = None
        try:
            anchor = _parse_anchor(self._read_anchor_bytes(cur))
        except _CorruptAnchor:
            anchor_problem = f"the anchor {self._anchor_name} is unreadable"
        except OSError as exc:
            anchor_problem = f"the anchor {self._anchor_name} cannot be read: {exc}"

        good = 0
        expected = 1
        prev_hash = GENESIS_HASH
        hash_at_anchor: str | None = None

        def bad(seq: int | None, reason: str) -> VerifyResult:
            return VerifyResult(False, good, seq, reason)

        rows = cur.execute(
            "SELECT seq, ts, agent, tool, event, record_json, prev_hash, hash, mac FROM audit_log ORDER BY seq"
        )
        for seq, ts, agent, tool, event, record_json, row_prev, row_hash, mac in rows:
            if seq != expected:
                if seq < expected:
                    return bad(seq, f"seq {seq}: unexpected record before seq {expected} (inserted)")
                return bad(
                    expected,
                    f"seq {expected}: record missing (deleted); the next record is seq {seq}",
                )
            if not isinstance(record_json, str) or not isinstance(row_prev, str):
                return bad(seq, f"seq {seq}: record is not text (edited)")
            if chain_hash(row_prev, record_json) != row_hash:
                return bad(seq, f"seq {seq}: hash does not match the record (record edited)")
            try:
                data = json.loads(record_json)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except ValueError:
                return bad(seq, f"seq {seq}: record is not a JSON object (edited)")
            if data.get("seq") != seq:
                return bad(seq, f"seq {seq}: record holds seq {data.get('seq')!r} (moved, swapped or inserted)")
            if data.get("prev_hash") != row_prev:
                return bad(seq, f"seq {seq}: prev_hash column differs from the hashed record (edited)")
            columns = {"ts": ts, "agent": agent, "tool": tool, "event": event}
            for name, value in columns.items():
                if data.get(name) != value:
                    return bad(seq, f"seq {seq}: column {name} differs from the hashed record (edited)")
            if self._key is not None and (
                not isinstance(mac, str) or not hmac.compare_digest(mac, record_mac(self._key, row_hash))
            ):
                return bad(seq, f"seq {seq}: HMAC does not match (forged, or re-hashed without the key)")
            if row_prev != prev_hash:
                if seq == 1:
                    return bad(1, "seq 1: prev_hash is not the genesis hash (records before it removed or forged)")
                return bad(
                    seq - 1,
                    f"seq {seq - 1}: its hash is not the prev_hash that seq {seq} holds for it"
                    " (record edited and re-hashed, or records removed or inserted here)",
                )
            if data.get("event") == ANCHOR_MISMATCH_EVENT:
                return bad(seq, f"seq {seq}: written after a tamper check failed: {data.get('detail')}")
            if anchor is not None and seq == anchor.seq:
                hash_at_anchor = row_hash
            good += 1
            expected = seq + 1
            prev_hash = row_hash

        last_seq = expected - 1
        if anchor_problem is not None:
            return bad(None, f"{anchor_problem}; the tail of the log cannot be checked")
        if anchor is None:
            if last_seq == 0:
                return VerifyResult(True, 0, None, "empty audit log")
            return bad(None, f"the anchor {self._anchor_name} is missing; the tail of the log cannot be checked")
        if anchor.seq > last_seq:
            if anchor.seq == last_seq + 1 and anchor.prev_hash == prev_hash:
                return bad(
                    last_seq + 1,
                    f"seq {last_seq + 1}: last record missing (deleted, or lost in a crash before it was"
                    f" committed); the anchor names it as the head",
                )
            return bad(
                last_seq + 1,
                f"seq {last_seq + 1}: records {last_seq + 1}..{anchor.seq} missing (tail truncated);"
                f" the anchor says the head is seq {anchor.seq}",
            )
        if hash_at_anchor != anchor.hash:
            return bad(
                None,
                f"the record at the anchored head (seq {anchor.seq}) has hash {_short(str(hash_at_anchor))},"
                f" the anchor says {_short(anchor.hash)}: the chain was rewritten at or before seq {anchor.seq}"
                " and recomputed (which record was changed first cannot be told without an HMAC key)",
            )
        if anchor.seq < last_seq:
            return bad(
                anchor.seq + 1,
                f"seq {anchor.seq + 1}: records {anchor.seq + 1}..{last_seq} follow the anchored head"
                f" (seq {anchor.seq}) but were not anchored (appended outside the audit log)",
            )
        return VerifyResult(True, good, None, f"{good} records, chain intact, head seq {last_seq} matches the anchor")


def _parse_anchor(data: bytes | None) -> _Head | None:
    if data is None:
        return None
    try:
        obj = json.loads(data)
        head = _Head(int(obj["seq"]), str(obj["hash"]), str(obj["prev_hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise _CorruptAnchor(str(exc)) from exc
    if head.seq < 1:
        raise _CorruptAnchor(f"seq {head.seq}")
    return head


#: An id as Interlace hands them out: a plain digit string (transaction ids are 19 digits) or a plain token.
_UPSTREAM_ID = re.compile(r"[0-9]{1,32}|[A-Za-z0-9_-]{1,64}", re.ASCII)


def _upstream_ids(ids: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``upstream_ids`` scrubbed, except that an id of Interlace's own shape is kept exactly: it is the record's
    link to Interlace, and about one in ten of its 19-digit transaction ids passes the Luhn check that masks
    card numbers everywhere else. Anything not shaped like an id (separators, text) is scrubbed as ever."""
    if ids is None:
        return None
    out: dict[str, Any] = {}
    for key, value in ids.items():
        if is_secret_key(str(key)):
            out[scrub(str(key))] = REDACTED
        else:
            kept = isinstance(value, str) and _UPSTREAM_ID.fullmatch(value)
            out[scrub(str(key))] = value if kept else scrub(value)
    return out
