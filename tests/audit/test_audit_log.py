"""The audit log (threats H1-H5, C2): hash chain, anchor, tamper detection, concurrency, redaction, fail closed.

The chain, tamper and concurrency tests run on SQLite (anchor file) and PostgreSQL (``audit_head`` row).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import audit_race_worker
import pytest

from helpers import BOTH_BACKENDS
from interlace_mcp._logging import luhn_ok
from interlace_mcp.audit import ANCHOR_MISMATCH_EVENT, GENESIS_HASH, AuditLog, AuditWriteError
from interlace_mcp.policy import Database, Ledger
from interlace_mcp.policy._schema import MIGRATIONS as LEDGER_MIGRATIONS

PAN = "4111111111111111"
COLUMNS = ("seq", "ts", "agent", "tool", "event", "record_json", "prev_hash", "hash", "mac")


# ---- an independent implementation of the record format, for checks and forgeries ---------------


def canon(obj: dict[str, Any]) -> str:
    """Canonical JSON as the format defines it: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha(prev_hash: str, record_json: str) -> str:
    """sha256(prev_hash || record_json), hex."""
    return hashlib.sha256((prev_hash + record_json).encode()).hexdigest()


@dataclass(frozen=True)
class Store:
    """One audit database as an attacker (or a test) sees it: raw SQL on the rows and on the anchor."""

    url: str

    @property
    def postgres(self) -> bool:
        return self.url.startswith("postgresql://")

    @property
    def anchor_file(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///") + ".audit-head")

    def open(self, **kwargs: Any) -> AuditLog:
        return AuditLog.from_url(self.url, **kwargs)

    def raw(self) -> Database:
        """A plain connection with the append-only triggers dropped, as an attacker with database access would."""
        conn = Database.from_url(self.url)
        for trigger in ("audit_log_no_update", "audit_log_no_delete", "audit_log_no_truncate"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON audit_log" if self.postgres else ""))
        return conn

    def rows(self) -> list[dict[str, Any]]:
        """Every audit row, in seq order, as dicts."""
        conn = Database.from_url(self.url)
        try:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq").fetchall()
        finally:
            conn.close()
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def anchor(self) -> bytes | None:
        if not self.postgres:
            return self.anchor_file.read_bytes() if self.anchor_file.exists() else None
        conn = Database.from_url(self.url)
        try:
            row = conn.execute("SELECT anchor FROM audit_head WHERE id = 1").fetchone()
        finally:
            conn.close()
        return None if row is None else str(row[0]).encode()

    def set_anchor(self, data: bytes | None) -> None:
        """Write (or with None, delete) the anchor."""
        if not self.postgres:
            if data is None:
                self.anchor_file.unlink(missing_ok=True)
            else:
                self.anchor_file.write_bytes(data)
            return
        conn = Database.from_url(self.url)
        try:
            conn.execute("DELETE FROM audit_head")
            if data is not None:
                conn.execute("INSERT INTO audit_head (id, anchor) VALUES (1, ?)", (data.decode(),))
        finally:
            conn.close()


@pytest.fixture
def store(database_url: str) -> Store:
    return Store(database_url)


def read_rows(db: Store) -> list[dict[str, Any]]:
    return db.rows()


def raw(db: Store) -> Database:
    return db.raw()


def replace_all(db: Store, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole table with ``rows``."""
    conn = raw(db)
    try:
        with conn.transaction() as cur:
            cur.execute("DELETE FROM audit_log")
            cur.executemany(
                f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [tuple(row[c] for c in COLUMNS) for row in rows],
            )
    finally:
        conn.close()


def rechain(rows: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """Renumber from 1 and recompute prev_hash/hash for rows[start:] (the forger's move; no HMAC key)."""
    out: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for i, row in enumerate(rows):
        row = dict(row)
        if i >= start:
            data = json.loads(row["record_json"])
            data["seq"], data["prev_hash"] = i + 1, prev
            row.update(seq=i + 1, prev_hash=prev, record_json=canon(data))
            row["hash"] = sha(prev, row["record_json"])
        out.append(row)
        prev = row["hash"]
    return out


def edited(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The row with one field of its record changed (columns kept in step, hash not touched)."""
    data = json.loads(row["record_json"])
    field = rng.choice(["agent", "amount", "detail", "outcome"])
    data[field] = "forged-" + str(data.get(field))
    row = dict(row, record_json=canon(data))
    if field == "agent":
        row["agent"] = data["agent"]
    return row


def fill(log: AuditLog, n: int) -> None:
    """Append ``n`` varied records."""
    for i in range(n):
        log.append(
            agent=f"agent-{i % 3}",
            tool=("issue_card", "top_up_card", "close_card")[i % 3],
            event=("decision", "sent", "outcome")[i % 3],
            decision="allow" if i % 3 == 0 else None,
            arguments={"amount": f"{i}.00", "label": f"card {i}", "tags": ["a", i]},
            amount=f"{i}.00",
            currency="USD",
            request_id=f"req-{i}",
            upstream_ids={"cardId": f"card-{i}"},
            outcome="ok",
            detail=f"record {i} — ünïcode",
            actor="agent",
        )


# ---- the chain ----------------------------------------------------------------------------------


@BOTH_BACKENDS
def test_chain_of_200_appends_verifies(store: Store) -> None:
    """200 appends give seq 1..200, each hash = sha256(prev_hash + canonical JSON), and verify() passes."""
    db = store
    with db.open(clock=lambda: 1_795_000_000.1234) as log:
        records = [log.append(agent="a", tool="issue_card", event="decision", amount=f"{i}.00") for i in range(200)]
        result = log.verify()
    assert [r.seq for r in records] == list(range(1, 201))
    assert result.ok and result.records == 200 and result.first_bad_seq is None, result
    rows = read_rows(db)
    assert [r["seq"] for r in rows] == list(range(1, 201))
    assert rows[0]["prev_hash"] == GENESIS_HASH == "0" * 64
    prev = GENESIS_HASH
    for row in rows:
        data = json.loads(row["record_json"])
        assert row["record_json"] == canon(data)
        assert data["seq"] == row["seq"] and data["prev_hash"] == prev == row["prev_hash"]
        assert row["hash"] == sha(prev, row["record_json"])
        prev = row["hash"]
    assert rows[-1]["hash"] == records[-1].hash
    expected_ts = datetime.fromtimestamp(1_795_000_000.1234, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.123Z")
    assert records[0].ts == expected_ts
    anchor = json.loads(db.anchor() or b"null")
    assert (anchor["seq"], anchor["hash"]) == (200, rows[-1]["hash"])


@BOTH_BACKENDS
def test_records_round_trip_and_tail_is_newest_last(store: Store) -> None:
    """tail() returns the stored fields newest last, filters by agent; count() filters by agent and event."""
    with store.open() as log:
        first = log.append(
            agent="shopper",
            tool="issue_card",
            event="decision",
            decision="allow",
            arguments={"amount": "5.00", "label": "ads"},
            amount="5.00",
            currency="USD",
            request_id="r1",
            upstream_ids={"cardId": "c1"},
            outcome="ok",
            detail="issued",
            actor="agent",
            scope="https://sandbox|acct",
        )
        for i in range(5):
            log.append(agent="other", tool="top_up_card", event="sent", request_id=f"o{i}")
        log.append(agent="shopper", tool="issue_card", event="outcome", outcome="completed")
        tail = log.tail(3)
        mine = log.tail(10, agent="shopper")
        assert [r.seq for r in tail] == [5, 6, 7]
        assert [r.seq for r in mine] == [1, 7]
        assert mine[0] == first
        assert first.as_dict()["arguments"] == {"amount": "5.00", "label": "ads"}
        assert first.as_dict()["upstream_ids"] == {"cardId": "c1"}
        assert first.scope == "https://sandbox|acct" and first.decision == "allow"
        assert log.tail(0) == []
        assert log.count() == 7
        assert log.count(agent="other") == 5
        assert log.count(agent="shopper", event="outcome") == 1
        with pytest.raises(ValueError, match="reserved"):
            log.append(agent="a", tool="t", event=ANCHOR_MISMATCH_EVENT)


@BOTH_BACKENDS
def test_from_url_follows_the_ledger_rules(database_url: str, backend: str) -> None:
    """The ledger's URL opens the same database for both; other schemes are refused as Ledger refuses them."""
    ledger = Ledger.from_url(database_url)
    try:
        with AuditLog.from_url(database_url) as log:
            log.append(agent="a", tool="t", event="e")
            assert log.verify().ok
            assert (log.anchor_path is None) == (backend == "postgresql")  # there: the audit_head table
        conn = Database.from_url(database_url)
        tables_sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            if backend == "postgresql"
            else "SELECT name FROM sqlite_master"
        )
        tables = {row[0] for row in conn.execute(tables_sql)}
        versions = dict(conn.execute("SELECT component, version FROM schema_version").fetchall())
        conn.close()
        assert {"audit_log", "spend_entries", "schema_version"} <= tables
        assert versions == {"ledger": len(LEDGER_MIGRATIONS), "audit": 1}  # every ledger migration applied
    finally:
        ledger.close()
    with AuditLog.from_url("sqlite:///:memory:") as mem:
        mem.append(agent="a", tool="t", event="e")
        assert mem.verify().ok and mem.anchor_path is None
    with pytest.raises(ValueError, match="sqlite:///"):
        AuditLog.from_url("mysql://h/db")
    with pytest.raises(ValueError, match="sqlite:///"):
        Ledger.from_url("mysql://h/db")


# ---- tampering (the acceptance test of H1) ------------------------------------------------------

Mutation = Callable[[Store, list[dict[str, Any]], random.Random], int | None]
N = 50


def m_edit(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Edit a field of one record with raw SQL; hashes untouched."""
    k = rng.randint(1, N)
    row = edited(rows[k - 1], rng)
    conn = raw(db)
    conn.execute("UPDATE audit_log SET record_json = ?, agent = ? WHERE seq = ?", (row["record_json"], row["agent"], k))
    conn.close()
    return k


def m_flip_byte(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Change one character of one record's JSON."""
    k = rng.randint(1, N)
    text = rows[k - 1]["record_json"]
    i = rng.randrange(len(text))
    text = text[:i] + ("x" if text[i] != "x" else "y") + text[i + 1 :]
    conn = raw(db)
    conn.execute("UPDATE audit_log SET record_json = ? WHERE seq = ?", (text, k))
    conn.close()
    return k


def m_edit_rehash(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Edit one record and recompute its own hash (the next record still holds the old one)."""
    k = rng.randint(1, N)
    row = edited(rows[k - 1], rng)
    conn = raw(db)
    conn.execute(
        "UPDATE audit_log SET record_json = ?, agent = ?, hash = ? WHERE seq = ?",
        (row["record_json"], row["agent"], sha(row["prev_hash"], row["record_json"]), k),
    )
    conn.close()
    return k if k < N else None  # the head: only the anchor sees it, and not where the rewrite began


def m_delete_middle(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Delete one record from the middle."""
    k = rng.randint(2, N - 1)
    conn = raw(db)
    conn.execute("DELETE FROM audit_log WHERE seq = ?", (k,))
    conn.close()
    return k


def m_delete_first(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Delete the genesis record."""
    conn = raw(db)
    conn.execute("DELETE FROM audit_log WHERE seq = 1")
    conn.close()
    return 1


def m_delete_last(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Delete the last record (only the anchor can tell)."""
    conn = raw(db)
    conn.execute("DELETE FROM audit_log WHERE seq = ?", (N,))
    conn.close()
    return N


def m_swap(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Swap the full contents (everything but seq) of two records."""
    i, j = sorted(rng.sample(range(1, N + 1), 2))
    a, b = dict(rows[i - 1], seq=j), dict(rows[j - 1], seq=i)
    new = list(rows)
    new[i - 1], new[j - 1] = b, a
    replace_all(db, new)
    return i


def m_insert_forged(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Insert a forged record and recompute every hash after it (a consistent chain; the anchor disagrees)."""
    k = rng.randint(1, N)
    forged = dict(rows[k - 1], agent="mallory")
    data = json.loads(forged["record_json"])
    data.update(agent="mallory", detail="forged")
    forged["record_json"] = canon(data)
    replace_all(db, rechain([*rows[: k - 1], forged, *rows[k - 1 :]], k - 1))
    return None  # without an HMAC key the forgery's position cannot be told


def m_truncate(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Cut the tail off from some record on."""
    k = rng.randint(2, N)
    conn = raw(db)
    conn.execute("DELETE FROM audit_log WHERE seq >= ?", (k,))
    conn.close()
    return k


def m_rewrite_chain(db: Store, rows: list[dict[str, Any]], rng: random.Random) -> int | None:
    """Edit one record and recompute the chain from it to the head."""
    k = rng.randint(1, N)
    new = list(rows)
    new[k - 1] = edited(rows[k - 1], rng)
    replace_all(db, rechain(new, k - 1))
    return None


MUTATIONS: list[Mutation] = [
    m_edit,
    m_flip_byte,
    m_edit_rehash,
    m_delete_middle,
    m_delete_first,
    m_delete_last,
    m_swap,
    m_insert_forged,
    m_truncate,
    m_rewrite_chain,
]


@BOTH_BACKENDS
def test_100_random_single_mutations_are_each_detected_at_the_first_bad_seq(store: Store) -> None:
    """Each of 100 random mutations of a verified 50-record log fails verify(), at the right seq where defined."""
    db = store
    with db.open(clock=lambda: 1_795_000_000.0) as log:
        fill(log, N)
        assert log.verify().ok
    rows = read_rows(db)
    anchor = db.anchor()
    rng = random.Random(20261124)
    problems: list[str] = []
    with db.open() as reader:
        for i in range(100):
            mutate = MUTATIONS[i % len(MUTATIONS)]
            replace_all(db, rows)  # back to the verified log (triggers dropped from here on)
            db.set_anchor(anchor)
            assert reader.verify().ok
            expected = mutate(db, rows, rng)
            result = reader.verify()
            if result.ok or result.first_bad_seq != expected or not result.reason:
                problems.append(f"#{i} {mutate.__name__}: expected first_bad_seq={expected}, got {result}")
    assert not problems, "\n".join(problems)


@BOTH_BACKENDS
def test_hmac_key_locates_a_forged_insert_with_recomputed_hashes(store: Store) -> None:
    """With an HMAC key outside the DB, a forged record with a recomputed chain is caught at its own seq."""
    key = b"k" * 32
    db = store
    with db.open(hmac_key=key) as log:
        fill(log, 20)
        assert log.verify().ok
    rows = read_rows(db)
    data = json.loads(rows[6]["record_json"])
    data["detail"] = "forged"
    forged = dict(rows[6], record_json=canon(data))  # keeps the real MAC of the record it imitates
    replace_all(db, rechain([*rows[:6], forged, *rows[6:]], 6))
    with db.open(hmac_key=key) as log:
        result = log.verify()
    assert not result.ok and result.first_bad_seq == 7, result
    assert "HMAC" in result.reason


@BOTH_BACKENDS
def test_truncation_stays_detected_after_later_appends(store: Store) -> None:
    """Cutting the tail and then appending does not erase the evidence: a mismatch record is chained in."""
    db = store
    with db.open() as log:
        fill(log, 10)
        conn = raw(db)
        conn.execute("DELETE FROM audit_log WHERE seq > 7")
        conn.close()
        log.append(agent="a", tool="t", event="after")
        log.append(agent="a", tool="t", event="after")
        result = log.verify()
        assert log.count(event=ANCHOR_MISMATCH_EVENT) == 1
        marker = log.tail(3)[0]
    assert not result.ok and result.first_bad_seq == 8, result
    assert marker.seq == 8 and marker.event == ANCHOR_MISMATCH_EVENT
    assert marker.arguments is not None and marker.arguments["anchor_seq"] == 10
    assert marker.arguments["log_head_seq"] == 7


@BOTH_BACKENDS
def test_missing_anchor_fails_verification(store: Store) -> None:
    """Deleting the anchor (file or audit_head row, to hide a truncation) makes verify() fail rather than pass."""
    with store.open() as log:
        fill(log, 3)
        store.set_anchor(None)
        result = log.verify()
    assert not result.ok and "anchor" in result.reason


def test_an_anchor_rewritten_in_place_is_read_again_at_once(tmp_path: Path) -> None:
    """An anchor overwritten in place right after an append (same inode, same size, within the same file
    timestamp tick) is still compared at the next append: the file is read on every append, not cached."""
    with AuditLog(tmp_path / "a.sqlite3") as log:
        fill(log, 3)
        assert log.anchor_path is not None
        before = log.anchor_path.read_bytes()
        assert before.startswith(b'{"hash":"')
        forged = before[:9] + (b"0" if before[9:10] != b"0" else b"1") + before[10:]  # one hex digit of the hash
        fd = os.open(log.anchor_path, os.O_WRONLY)
        try:
            os.pwrite(fd, forged, 0)
        finally:
            os.close(fd)
        log.append(agent="a", tool="t", event="after")
        assert log.count(event=ANCHOR_MISMATCH_EVENT) == 1


# ---- concurrency (H2) ---------------------------------------------------------------------------


@BOTH_BACKENDS
def test_threads_append_one_contiguous_chain(store: Store) -> None:
    """8 threads x 50 appends on one AuditLog and on their own AuditLogs give seq 1..400 that verify."""
    db = store
    shared = db.open()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        own = db.open() if t % 2 else shared
        try:
            barrier.wait()
            for i in range(50):
                own.append(agent=f"t{t}", tool="top_up_card", event="decision", request_id=f"{t}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            if own is not shared:
                own.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    try:
        result = shared.verify()
        assert result.ok and result.records == 400, result
        assert [r["seq"] for r in read_rows(db)] == list(range(1, 401))
        assert all(shared.count(agent=f"t{t}") == 50 for t in range(8))
    finally:
        shared.close()


@BOTH_BACKENDS
def test_two_processes_append_one_contiguous_chain(store: Store) -> None:
    """2 spawned processes x 100 appends on the same database give seq 1..200 that verify."""
    db = store
    db.open().close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=audit_race_worker.append_many, args=(db.url, w, 100, barrier, results)) for w in range(2)
    ]
    for p in procs:
        p.start()
    reported = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(reported[0] + reported[1]) == list(range(1, 201))
    with db.open() as log:
        result = log.verify()
        assert log.count(agent="p0") == log.count(agent="p1") == 100
    assert result.ok and result.records == 200, result


# ---- card data (C2, H5) -------------------------------------------------------------------------


def test_card_data_never_reaches_the_database_files(tmp_path: Path) -> None:
    """A PAN and CVV in arguments/detail are masked before hashing: no file byte holds them."""
    db = tmp_path / "card.sqlite3"
    log = AuditLog(db)
    record = log.append(
        agent="shopper",
        tool="reveal_card",
        event="outcome",
        arguments={
            "card_number": PAN,
            "cardNumber": "4111 1111 1111 1111",
            "cvv": "123",
            "nested": {"pan": PAN, "items": [PAN, {"cvv": "123"}], "accessToken": "tok-abcdef"},
            "note": f"card {PAN} cvv: 123",
            "as_int": int(PAN),
        },
        detail=f'upstream said {{"cardNumber": "{PAN}", "cvv": "123"}}',
        upstream_ids={"cardId": "c-1"},
    )
    files = [db, Path(f"{db}-wal"), tmp_path / "card.sqlite3.audit-head"]
    live = b"".join(p.read_bytes() for p in files if p.exists())
    log.close()
    closed = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for blob in (live, closed):
        assert PAN.encode() not in blob
        assert b"4111 1111 1111 1111" not in blob
        assert b'"123"' not in blob and b"cvv: 123" not in blob and b'"cvv":"123"' not in blob
        assert b"tok-abcdef" not in blob
    args = record.arguments
    assert args is not None
    assert args["card_number"] == args["cardNumber"] == args["cvv"] == "[redacted]"
    assert args["nested"]["items"][0] == "[card ...1111]" and args["as_int"] == "[card ...1111]"
    assert record.upstream_ids == {"cardId": "c-1"}


def test_interlace_ids_are_kept_exactly_even_when_they_pass_the_luhn_check(tmp_path: Path) -> None:
    """Interlace's transaction ids are 19-digit numbers ("1986330518716162050"); about one in ten passes the
    Luhn check. The outcome's ``upstream_ids`` is the audit log's link to Interlace: kept exactly, while the
    same digits anywhere else in the record (an argument, a detail) are still masked."""
    interlace_id = "5362471216348961211"  # Luhn-valid, as the emulator and Interlace hand them out
    assert luhn_ok(interlace_id)
    with AuditLog(tmp_path / "ids.sqlite3") as log:
        record = log.append(
            agent="shopper",
            tool="create_transfer",
            event="outcome",
            arguments={"memo": interlace_id},
            detail=f"id {interlace_id}",
            upstream_ids={"transaction_id": interlace_id, "card_id": "4111 1111 1111 1111"},
        )
        stored = log.tail(1)[0]
    for found in (record, stored):
        assert found.upstream_ids is not None and found.upstream_ids["transaction_id"] == interlace_id
        assert found.upstream_ids["card_id"] != "4111 1111 1111 1111"  # not an id's shape: scrubbed as ever
        assert found.arguments == {"memo": "[card ...1211]"} and interlace_id not in (found.detail or "")


def test_card_data_is_masked_every_time_it_is_appended_not_only_the_first(tmp_path: Path) -> None:
    """The same strings appended again and again (as a money call's two records repeat them), clean ones and
    ones holding card data alternately, are stored exactly as scrubbing them the first time gave."""
    with AuditLog(tmp_path / "again.sqlite3") as log:
        for i in range(3):
            log.append(
                agent="shopper",
                tool="top_up_card",
                event="outcome",
                arguments={"request_id": "r-1", "label": f"card {PAN}", "memo": "plain words", "cvv": "123"},
                detail=f"round {i}: {PAN} then r-1",
                request_id="r-1",
            )
        records = log.tail(3)
    for record in records:
        assert record.arguments == {
            "request_id": "r-1",
            "label": "card [card ...1111]",
            "memo": "plain words",
            "cvv": "[redacted]",
        }
        assert record.detail is not None and PAN not in record.detail and "[card ...1111] then r-1" in record.detail


# ---- fail closed (H4) ---------------------------------------------------------------------------


def test_append_fails_closed_when_the_store_cannot_be_written(tmp_path: Path) -> None:
    """A read-only database (or, as root, an unwritable anchor) makes append raise AuditWriteError."""
    db = tmp_path / "ro.sqlite3"
    log = AuditLog(db)
    log.append(agent="a", tool="t", event="e")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        log.close()
        db.chmod(0o444)
        try:
            with pytest.raises(AuditWriteError), AuditLog(db) as ro:
                ro.append(agent="a", tool="top_up_card", event="decision")
        finally:
            db.chmod(0o644)
        log = AuditLog(db)
    else:  # root ignores file modes: make the anchor write fail instead
        assert log.anchor_path is not None
        log.anchor_path.unlink()
        log.anchor_path.mkdir()
        with pytest.raises(AuditWriteError):
            log.append(agent="a", tool="top_up_card", event="decision")
    try:
        assert log.count() == 1
    finally:
        log.close()


def test_append_fails_closed_when_the_disk_is_full(tmp_path: Path) -> None:
    """SQLITE_FULL (the database may not grow) raises AuditWriteError and leaves chain and anchor as they were."""
    db = tmp_path / "full.sqlite3"
    anchor = tmp_path / "full.sqlite3.audit-head"
    with AuditLog(db) as log:
        log.append(agent="a", tool="t", event="e")
        before = anchor.read_bytes()
        pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
        log._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(AuditWriteError, match="full"):
            log.append(agent="a", tool="top_up_card", event="decision", detail="x" * 200_000)
        assert anchor.read_bytes() == before
        assert log.count() == 1
        assert log.verify().ok
