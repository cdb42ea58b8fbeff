"""Ledger scaling: does a limit check stay O(1) as the spend history grows?

Fills one ledger file with ``100`` past committed entries and another with ``--entries`` (default
1,000,000), spread over the last ~2 years for a few agents, then times ``begin`` (check every
window + reserve, one transaction) followed by ``complete`` (commit, one transaction) on each, and
prints median and p99 latency per size and the large/small ratio. The target is flat: the ratio
stays within 1.5x, because each check reads per-window running totals (``spend_totals``) instead
of summing ``spend_entries``.

The history is written with bulk SQL (not through ``Ledger.begin``) for speed; ``spend_totals`` is
then rebuilt from the entries with ``GROUP BY`` so the ledger sees a consistent state, and request
records exist for the last 90 days (the retention period), as in a long-running deployment.
Measurements of the two sizes are interleaved in rounds so that disk and cache drift hit both
equally. The ledger runs as in production (WAL, ``synchronous=FULL``), so absolute numbers mostly
measure the disk's fsync; the ratio is what matters.

Usage::

    .venv/bin/python bench/ledger_scaling.py [--entries 1000000] [--ops 2000] [--json out.json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from interlace_mcp.policy import AgentPolicy, Ledger, RequestKey, window_keys

SCOPE = "https://bench.invalid|acct-bench"
TOOL = "issue_card"
TIMEZONE = "America/New_York"
AGENTS = ("agent-0", "agent-1", "agent-2", "agent-3")
HISTORY_DAYS = 730
SMALL = 100
# Every window has a (high) limit, so each check reads all four running totals.
POLICY = AgentPolicy(
    agent=AGENTS[0],
    per_transaction=None,
    daily=Decimal("999999999.99"),
    weekly=Decimal("999999999.99"),
    monthly=Decimal("999999999.99"),
    lifetime=Decimal("999999999.99"),
    max_active_cards=None,
    timezone=TIMEZONE,
)


def fill(path: Path, entries: int, now: float, seed: int = 1) -> float:
    """Write ``entries`` committed entries over the last HISTORY_DAYS local days; return seconds taken."""
    started = time.perf_counter()
    Ledger(path).close()  # create the schema exactly as the ledger does
    zone = ZoneInfo(TIMEZONE)
    rng = random.Random(seed)
    today = datetime.fromtimestamp(now, zone).date()
    days = [today - timedelta(days=HISTORY_DAYS - i) for i in range(HISTORY_DAYS)]  # ends yesterday
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        spans = []  # per local day: [start, end) in epoch seconds and its window keys
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone).timestamp()
            spans.append((start, end, window_keys(start + 1, zone)))
        rows: list[tuple[Any, ...]] = []
        for i in range(entries):
            start, end, keys = spans[i * len(spans) // entries]  # spread evenly, in time order
            at = rng.uniform(start, end - 1)
            keys_of_day = (keys.day, keys.week, keys.month)
            amount = rng.randint(100, 5000)  # 1.00-50.00
            rows.append(
                (SCOPE, AGENTS[i % len(AGENTS)], "USD", amount, "committed", TOOL, f"hist-{i}", *keys_of_day, at, at)
            )
            if len(rows) >= 50_000:
                _insert_entries(conn, rows)
                rows.clear()
        _insert_entries(conn, rows)
        for window, column in (("day", "day_key"), ("week", "week_key"), ("month", "month_key"), ("lifetime", "'all'")):
            conn.execute(
                "INSERT INTO spend_totals (scope, agent, currency, window, window_key, reserved_minor, committed_minor)"
                f" SELECT scope, agent, currency, '{window}', {column},"
                " SUM(CASE WHEN state = 'reserved' THEN amount_minor ELSE 0 END),"
                " SUM(CASE WHEN state = 'committed' THEN amount_minor ELSE 0 END)"
                f" FROM spend_entries GROUP BY scope, agent, currency, {column}"
            )
        # Request records are kept 90 days: the recent part of the history has them.
        conn.execute(
            "INSERT INTO requests (scope, agent, tool, request_id, args_hash, status, amount_minor, currency,"
            " entry_id, approval_id, keys_json, progress_json, result_json, card_id, created_at, updated_at)"
            " SELECT scope, agent, tool, request_id, request_id, 'completed', amount_minor, currency, id, NULL,"
            ' \'{"main": "00000000-0000-4000-8000-000000000000"}\', \'{}\', \'{"status": "completed"}\', NULL,'
            " created_at, updated_at FROM spend_entries WHERE created_at >= ?",
            (now - 90 * 86400,),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


def _insert_entries(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO spend_entries (scope, agent, currency, amount_minor, state, tool, request_id, day_key, week_key,"
        " month_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def reserve_and_commit(ledger: Ledger, rid: str) -> float:
    """One ``begin`` + ``complete`` of 0.01 for the measured agent; returns seconds."""
    key = RequestKey(SCOPE, POLICY.agent, TOOL, rid)
    started = time.perf_counter()
    ledger.begin(key, args_hash=rid, policy=POLICY, spend=Decimal("0.01"), currency="USD")
    ledger.complete(key, {"status": "completed", "request_id": rid})
    return time.perf_counter() - started


def summarize(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 4),
        "p99_ms": round(statistics.quantiles(ms, n=100, method="inclusive")[98], 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(ms[-1], 4),
    }


def check_consistent(ledger: Ledger, path: Path) -> None:
    """spend_totals (what the checks read) must equal the entries (the ground truth)."""
    conn = sqlite3.connect(path)
    try:
        totals = conn.execute(
            "SELECT COALESCE(SUM(committed_minor), 0) FROM spend_totals WHERE scope = ? AND agent = ?"
            " AND window = 'lifetime'",
            (SCOPE, POLICY.agent),
        ).fetchone()[0]
    finally:
        conn.close()
    entries = ledger.committed_total(SCOPE, POLICY.agent)
    if Decimal(totals) / 100 != entries:
        raise SystemExit(f"{path}: spend_totals {Decimal(totals) / 100} != entries {entries}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=1_000_000, help="history size of the large ledger")
    parser.add_argument("--ops", type=int, default=2000, help="timed begin+complete operations per size")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the operations are split into")
    parser.add_argument("--warmup", type=int, default=100, help="untimed operations per size first")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--dir", type=Path, help="where the ledger files go (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.entries <= SMALL:
        parser.error(f"--entries must be more than {SMALL}")

    sizes = [SMALL, args.entries]
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        where = args.dir or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        ledgers: dict[int, Ledger] = {}
        fill_seconds: dict[int, float] = {}
        paths: dict[int, Path] = {}
        for n in sizes:
            paths[n] = where / f"ledger-{n}.sqlite3"
            paths[n].unlink(missing_ok=True)
            print(f"filling {n:>10,} entries ...", end=" ", flush=True, file=sys.stderr)
            fill_seconds[n] = fill(paths[n], n, now)
            print(f"{fill_seconds[n]:.1f}s", file=sys.stderr)
            ledgers[n] = Ledger(paths[n])
        try:
            for n in sizes:
                for i in range(args.warmup):
                    reserve_and_commit(ledgers[n], f"warm-{i}")
            samples: dict[int, list[float]] = {n: [] for n in sizes}
            per_round = max(args.ops // args.rounds, 1)
            op = 0
            while len(samples[sizes[-1]]) < args.ops:
                for n in sizes:
                    count = min(per_round, args.ops - len(samples[n]))
                    samples[n] += [reserve_and_commit(ledgers[n], f"op-{op}-{i}") for i in range(count)]
                op += 1
            for n in sizes:
                check_consistent(ledgers[n], paths[n])
            file_mb = {n: paths[n].stat().st_size / 1e6 for n in sizes}
        finally:
            for led in ledgers.values():
                led.close()

    stats = {n: summarize(samples[n]) for n in sizes}
    small, large = stats[SMALL], stats[args.entries]
    ratio_median = large["median_ms"] / small["median_ms"]
    ratio_p99 = large["p99_ms"] / small["p99_ms"]
    print(f"\nreserve+commit (begin + complete), {args.ops} ops per size, timezone {TIMEZONE}")
    print(f"{'entries':>12} {'file MB':>9} {'median ms':>10} {'p99 ms':>9} {'mean ms':>9} {'max ms':>9}")
    for n in sizes:
        s = stats[n]
        print(
            f"{n:>12,} {file_mb[n]:>9.1f} {s['median_ms']:>10.3f} {s['p99_ms']:>9.3f} {s['mean_ms']:>9.3f}"
            f" {s['max_ms']:>9.3f}"
        )
    verdict = "flat" if max(ratio_median, ratio_p99) <= 1.5 else "NOT flat"
    print(
        f"ratio {args.entries:,} / {SMALL}: median {ratio_median:.2f}x, p99 {ratio_p99:.2f}x"
        f" ({verdict}; target <= 1.5x)"
    )

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "ledger_scaling",
                    "operation": "begin+complete",
                    "ops_per_size": args.ops,
                    "timezone": TIMEZONE,
                    "sizes": {
                        str(n): {**stats[n], "file_mb": round(file_mb[n], 1), "fill_seconds": round(fill_seconds[n], 1)}
                        for n in sizes
                    },
                    "ratio_median": round(ratio_median, 3),
                    "ratio_p99": round(ratio_p99, 3),
                    "target_ratio": 1.5,
                    "flat": verdict == "flat",
                    "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version,
                    "platform": platform.platform(),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
