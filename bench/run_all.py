"""Run every benchmark in turn and print one table of the results against the targets.

Runs ``overhead.py``, ``throughput.py``, ``cold_start.py`` and ``memory.py`` (each writes its JSON
into ``bench/results/``; each takes at most about two minutes), then ``profile_money.py`` if
``--profile`` is given and py-spy is installed. The ledger-scaling benchmark is separate (it builds a
260 MB ledger): run ``bench/ledger_scaling.py`` by hand.

All of them share the machine with whatever else runs: before each one this waits (up to
``--quiet-timeout`` seconds) until the 1-minute load average is below ``--quiet-load``, and reports
the load average each one ended with.

Usage::

    .venv/bin/python bench/run_all.py [--quick] [--profile] [--no-pg | --pg URL] [--quiet-load 1.0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import _harness as h


def wait_quiet(limit: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    load = h.loadavg()
    while load is not None and load >= limit and time.monotonic() < deadline:
        time.sleep(5)
        load = h.loadavg()
    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test, not for the record)")
    parser.add_argument("--profile", action="store_true", help="also profile the money call (needs py-spy)")
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument("--pg", metavar="URL", help="throughput on PostgreSQL at URL too")
    pg.add_argument("--no-pg", action="store_true", help="throughput on SQLite only")
    parser.add_argument("--quiet-load", type=float, default=1.0, help="wait for a 1-min load average below this")
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="but at most this many seconds")
    parser.add_argument("--workers", type=int, default=2, help="throughput also with serve --workers N (1: not)")
    parser.add_argument("--baseline", metavar="SRC", help="throughput also for another checkout's src/, same run")
    args = parser.parse_args(argv)

    quick = args.quick
    pg_args = ["--no-pg"] if args.no_pg else (["--pg", args.pg] if args.pg else [])
    steps: list[tuple[str, list[str]]] = [
        ("overhead", ["--calls", "200", "--warmup", "20"] if quick else []),
        (
            "throughput",
            (["--duration", "2", "--warmup", "0.5"] if quick else [])
            + pg_args
            + ["--workers", str(args.workers)]
            + (["--baseline", args.baseline] if args.baseline else []),
        ),
        ("cold_start", ["--runs", "3", "--warmup", "1"] if quick else []),
        ("memory", ["--calls", "1000", "--warm", "400", "--sample-every", "200"] if quick else []),
    ]
    if args.profile:
        steps.append(("profile_money", ["--calls", "100"] if quick else []))
    loads: dict[str, float | None] = {}
    for name, extra in steps:
        load = wait_quiet(args.quiet_load, args.quiet_timeout)
        print(f"\n=== {name} (1-min load average before: {load}) ===", flush=True)
        started = time.perf_counter()
        code = subprocess.call([h.PYTHON, str(h.BENCH / f"{name}.py"), *extra], cwd=h.ROOT)
        print(f"=== {name}: exit {code} in {time.perf_counter() - started:.0f} s ===", flush=True)
        if code != 0:
            return code
        loads[name] = h.loadavg()

    rows = summary()
    print("\nissue 14 targets")
    print(f"{'target':<46} {'measured':>22}  verdict")
    for target, measured, met in rows:
        print(f"{target:<46} {measured:>22}  {h.verdict(met)}")
    print(f"machine: {json.dumps(h.machine())}")
    return 0


def _load(name: str) -> dict[str, Any]:
    return json.loads((h.RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def summary() -> list[tuple[str, str, bool]]:
    overhead, throughput, cold, memory = (_load(n) for n in ("overhead", "throughput", "cold_start", "memory"))
    targets = throughput["targets"]
    rows = [
        (
            "top_up_card - transfer-in <= bare SDK + 1.5 ms",
            f"{overhead['added_median_ms']:.2f} <= {overhead['target_added_median_ms']:.2f} ms",
            bool(overhead["met"]),
        ),
        (
            "money calls/s, 50 agents >= 0.5 x bare no-op",
            f"{targets['money_vs_noop_ratio']['measured']}x",
            bool(targets["money_vs_noop_ratio"]["met"]),
        ),
        (
            "server CPU per money call <= 2.5 ms (50 agents)",
            f"{targets['server_cpu_ms_per_money_call']['measured']} ms",
            bool(targets["server_cpu_ms_per_money_call"]["met"]),
        ),
    ]
    more = [name for name in targets if name.startswith("money_with_")]
    if more:
        t = targets[more[0]]
        rows.append(("--workers: money calls/s higher again", f"{t['measured']} vs {t['target']} /s", bool(t["met"])))
    rows += [
        ("cold start <= 1.3x the bare-SDK floor", f"{cold['ratio_median']:.2f}x", bool(cold["met"])),
        (
            f"no memory growth across {memory['calls']:,} calls",
            f"{memory['growth_after_warmup_kb'] / 1024:+.1f} MB after warm-up",
            bool(memory["met"]),
        ),
    ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
