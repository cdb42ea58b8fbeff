"""Throughput: tool calls per second with 1, 10 and 50 concurrent agents over streamable HTTP.

Starts the Interlace emulator (in memory) and ``interlace-mcp serve --transport http`` (uvicorn, one
process, or ``--workers N``) as separate processes on loopback ports. Every agent has its own bearer
token, its own official MCP client (its own HTTP connection) and its own card, and calls in a closed
loop -- the next call as soon as the previous answer arrives -- for ``--duration`` seconds after
``--warmup`` seconds. Workloads per concurrency level:

* ``noop``: the bare SDK's floor, measured in the same run with the same clients and load:
  ``bench/bare_server.py --http`` (an official ``MCPServer`` with one trivial tool, no auth);
* ``money``: ``top_up_card`` of 0.01 with a fresh request_id (token check, caller and policy checks,
  ledger reserve + commit with their audit records, the upstream POST and one card read);
* ``read``: ``get_card`` (token check, ownership lookup, audit, two upstream reads).

The policy has no limits and the rate limit is raised, so nothing is refused (any error aborts the
run). The load generator runs in ``--procs`` worker processes (default 1) that share the agents; the
CPU seconds each process used (server -- all its processes --, emulator, load generator) are reported,
because on a small machine all three compete for the same cores. ``--baseline SRC`` also measures
another checkout's ``src/`` (e.g. ``git archive`` of a baseline commit) in the same run: the machine is
noisy, so compare ratios within one run rather than numbers across runs.

Ledger backends: SQLite (a fresh file, production settings) always; PostgreSQL as well with ``--pg
URL``, or by default when a server answers at postgresql://postgres@127.0.0.1:5432/test (a fresh
schema, dropped afterwards); ``--no-pg`` skips it.

Targets (issue 14, SQLite, 50 agents): money calls/s >= 0.5 x the no-op server's; higher again with
``--workers 2``; server CPU per money call <= 2.5 ms.

Usage::

    .venv/bin/python bench/throughput.py [--agents 1,10,50] [--duration 5] [--warmup 1] [--procs 1]
                                         [--workloads noop,money,read] [--workers 2] [--baseline SRC]
                                         [--pg URL | --no-pg] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _harness as h
import anyio

TARGET_AGENTS = 50
#: Issue 14: money calls/s with 50 agents >= half the bare-SDK no-op server's, in the same run (one worker).
TARGET_RATIO = 0.5
#: Issue 14: server CPU per money call at 50 agents.
TARGET_CPU_MS = 2.5


# ---- load generator (runs in worker processes) -----------------------------------------------------


async def _agent_loop(
    server_url: str, token: str, card_id: str, workload: str, start_at: float, warmup: float, duration: float
) -> tuple[int, list[float], list[str]]:
    count, latencies, errors = 0, [], []
    async with h.mcp_client(server_url, token) as client:
        await anyio.sleep(max(0.0, start_at - time.time()))
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            if workload == "money":
                tool, args = "top_up_card", {"card_id": card_id, "amount": "0.01", "request_id": str(uuid.uuid4())}
            elif workload == "noop":
                tool, args = "add", {"a": 1, "b": 2}  # the bare SDK server's one tool
            else:
                tool, args = "get_card", {"card_id": card_id}
            try:
                await h.call(client, tool, args)
            except Exception as exc:  # reported, and the run fails
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                break
            done = time.perf_counter()
            if measure_from <= now and done <= stop_at:
                count += 1
                latencies.append(done - now)
    return count, latencies, errors


def _worker(
    server_url: str, agents: list[tuple[str, str]], workload: str, start_at: float, warmup: float, duration: float
) -> dict[str, Any]:
    results: list[tuple[int, list[float], list[str]]] = []

    async def run() -> None:
        async def one(token: str, card_id: str) -> None:
            results.append(await _agent_loop(server_url, token, card_id, workload, start_at, warmup, duration))

        async with anyio.create_task_group() as tg:
            for token, card_id in agents:
                tg.start_soon(one, token, card_id)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    anyio.run(run)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "calls": sum(r[0] for r in results),
        "latencies": [x for r in results for x in r[1]],
        "errors": [e for r in results for e in r[2]],
        "cpu_seconds": cpu,
    }


# ---- orchestration -------------------------------------------------------------------------------


async def _issue_cards(server_url: str, tokens: dict[str, str]) -> dict[str, str]:
    cards = {}
    for agent, token in tokens.items():
        async with h.mcp_client(server_url, token) as client:
            issued = await h.call(client, "issue_card", {"amount": "1.00", "request_id": f"card-{agent}"})
            cards[agent] = issued["card"]["card_id"]
    return cards


def run_level(
    url: str,
    pid: int,
    upstream: h.Emulator,
    tokens: dict[str, str],
    cards: dict[str, str],
    n_agents: int,
    workload: str,
    *,
    procs: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """One concurrency level of one workload against the server at ``url`` (process ``pid`` and its children)."""
    agents = [(tokens[a], cards[a]) for a in list(tokens)[:n_agents]]
    n_procs = max(1, min(procs, n_agents))
    slices = [agents[i::n_procs] for i in range(n_procs)]
    start_at = time.time() + 1.0 + 0.02 * n_agents  # time for every worker to connect its clients
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n_procs) as pool:
        pending = [pool.apply_async(_worker, (url, part, workload, start_at, warmup, duration)) for part in slices]
        # Server (all its processes) and emulator CPU over the measured window only (sampled at its edges).
        time.sleep(max(0.0, start_at + warmup - time.time()))
        server_cpu0, emulator_cpu0 = h.tree_cpu_seconds(pid), h.cpu_seconds(upstream.pid)
        time.sleep(duration)
        server_cpu1, emulator_cpu1 = h.tree_cpu_seconds(pid), h.cpu_seconds(upstream.pid)
        outputs = [p.get(timeout=duration + warmup + 120) for p in pending]
    errors = [e for o in outputs for e in o["errors"]]
    if errors:
        raise RuntimeError(f"{len(errors)} call(s) failed at {n_agents} agents ({workload}); first: {errors[0]}")
    calls = sum(o["calls"] for o in outputs)
    latencies = [x for o in outputs for x in o["latencies"]]
    lat = h.summarize_ms(latencies) if latencies else {}
    return {
        "agents": n_agents,
        "workload": workload,
        "calls": calls,
        "calls_per_second": round(calls / duration, 1),
        "latency_median_ms": lat.get("median_ms"),
        "latency_p99_ms": lat.get("p99_ms"),
        "server_cpu_percent": round(100 * (server_cpu1 - server_cpu0) / duration, 1),
        # CPU time the server (all its threads) spent per completed call: the budget that caps throughput.
        "server_cpu_ms_per_call": round(1000 * (server_cpu1 - server_cpu0) / calls, 2) if calls else None,
        "emulator_cpu_percent": round(100 * (emulator_cpu1 - emulator_cpu0) / duration, 1),
        # The generator's CPU includes connecting and the warm-up: an upper bound for the window.
        "load_generator_cpu_seconds": round(sum(o["cpu_seconds"] for o in outputs), 2),
    }


@contextlib.contextmanager
def _database(backend: str, tmp: Path, pg_url: str | None) -> Iterator[str]:
    if backend == "sqlite":
        yield h.sqlite_url(tmp / "state")
    else:
        assert pg_url is not None
        with h.pg_schema(pg_url) as url:
            yield url


def run_backend(
    backend: str, args: argparse.Namespace, levels: list[int], workloads: list[str], label: str, source: Path | None
) -> dict[str, Any]:
    serve_args = ["--workers", str(args.workers)] if args.workers > 1 else []
    with h.temp_dir(f"bench-throughput-{backend}-") as tmp, _database(backend, Path(tmp), args.pg) as db_url:
        agents = [f"agent-{i:02d}" for i in range(max(levels))]
        tokens = h.mint_tokens(db_url, agents, source)
        with (
            h.emulator() as upstream,
            h.server(upstream, Path(tmp) / "state", database_url=db_url, args=serve_args, source=source) as srv,
        ):
            cards = anyio.run(_issue_cards, srv.url, tokens)
            rows = []
            for workload in workloads:
                if workload == "noop":
                    continue  # the bare SDK server's own row, measured once per run (run_noop)
                for n in levels:
                    print(f"  {label} {backend}: {workload}, {n} agent(s) ...", end=" ", flush=True)
                    row = run_level(
                        srv.url,
                        srv.pid,
                        upstream,
                        tokens,
                        cards,
                        n,
                        workload,
                        procs=args.procs,
                        warmup=args.warmup,
                        duration=args.duration,
                    )
                    print(f"{row['calls_per_second']:.1f} calls/s")
                    rows.append(row)
    return {"backend": backend, "label": label, "workers": args.workers, "rows": rows}


def run_noop(args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    """The bare-SDK floor in the same run: an official MCPServer with one trivial tool, same clients, same load."""
    tokens = {f"agent-{i:02d}": "unused" for i in range(max(levels))}
    cards = dict.fromkeys(tokens, "")
    rows = []
    with h.emulator() as upstream, h.bare_http_server_process() as (url, pid):
        for n in levels:
            print(f"  bare SDK no-op: {n} agent(s) ...", end=" ", flush=True)
            row = run_level(
                url,
                pid,
                upstream,
                tokens,
                cards,
                n,
                "noop",
                procs=args.procs,
                warmup=args.warmup,
                duration=args.duration,
            )
            print(f"{row['calls_per_second']:.1f} calls/s")
            rows.append(row)
    return {"backend": "none", "label": "bare SDK", "workers": 1, "rows": rows}


def _row(backends: list[dict[str, Any]], label: str, workload: str, agents: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for b in backends
            if b["label"] == label and b["backend"] in ("sqlite", "none")
            for r in b["rows"]
            if r["agents"] == agents and r["workload"] == workload
        ),
        None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", default="1,10,50", help="comma list of concurrency levels")
    parser.add_argument("--workloads", default="noop,money,read", help="comma list: noop, money, read")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per level first")
    parser.add_argument("--procs", type=int, default=1, help="load-generator worker processes")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N (also measured with 1 when > 1)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also measure another checkout's src/ (e.g. a baseline commit, git archive'd) in the same run",
    )
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument("--pg", metavar="URL", help="also run on PostgreSQL at URL (a fresh schema is used)")
    pg.add_argument("--no-pg", action="store_true", help=f"never try PostgreSQL (default: try {h.DEFAULT_PG_URL})")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/throughput.json)")
    args = parser.parse_args(argv)
    levels = sorted({int(x) for x in args.agents.split(",") if x.strip()})
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not set(workloads) <= {"noop", "money", "read"}:
        parser.error("--workloads: noop, money and/or read")

    backends: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    if "noop" in workloads:
        print("bare SDK (the floor, same clients and load):")
        backends.append(run_noop(args, levels))
    workers = args.workers
    args.workers = 1
    if args.baseline is not None:
        print(f"baseline ({args.baseline}), sqlite:")
        backends.append(run_backend("sqlite", args, levels, workloads, "baseline", args.baseline))
    print("sqlite:")
    backends.append(run_backend("sqlite", args, levels, workloads, "this", None))
    if workers > 1:
        args.workers = workers
        print(f"sqlite, serve --workers {workers}:")
        backends.append(run_backend("sqlite", args, levels, workloads, f"this --workers {workers}", None))
        args.workers = 1
    if not args.no_pg:
        explicit = args.pg is not None
        args.pg = args.pg or h.DEFAULT_PG_URL
        reason = h.pg_unreachable(args.pg)
        if reason is not None:
            if explicit:
                parser.error(f"--pg {args.pg}: {reason}")
            skipped["postgresql"] = f"no server at {h.DEFAULT_PG_URL} ({reason})"
        else:
            print("postgresql:")
            try:
                backends.append(run_backend("postgresql", args, levels, workloads, "this", None))
            except Exception as exc:  # e.g. this build does not support INTERLACE_DATABASE_URL=postgresql:// yet
                if explicit:
                    raise
                skipped["postgresql"] = f"{type(exc).__name__}: {exc}"[:500]
                print(f"  skipped: {skipped['postgresql']}")

    print(f"\ntool calls per second over streamable HTTP, closed loop, {args.duration:g} s per level")
    print(
        f"{'server':<22} {'backend':<10} {'workload':<8} {'agents':>6} {'calls/s':>8} {'median ms':>10} {'p99 ms':>8}"
        f" {'server CPU':>10} {'CPU ms/call':>11} {'emulator CPU':>12}"
    )
    for b in backends:
        for r in b["rows"]:
            print(
                f"{b['label']:<22} {b['backend']:<10} {r['workload']:<8} {r['agents']:>6} {r['calls_per_second']:>8.1f}"
                f" {r['latency_median_ms'] or 0:>10.1f} {r['latency_p99_ms'] or 0:>8.1f}"
                f" {r['server_cpu_percent']:>9.0f}% {r['server_cpu_ms_per_call'] or 0:>11.2f}"
                f" {r['emulator_cpu_percent']:>11.0f}%"
            )
    for name, reason in skipped.items():
        print(f"{name}: skipped ({reason})")

    floor = _row(backends, "bare SDK", "noop", TARGET_AGENTS)
    money = _row(backends, "this", "money", TARGET_AGENTS)
    ratio = round(money["calls_per_second"] / floor["calls_per_second"], 3) if money and floor else None
    cpu = money["server_cpu_ms_per_call"] if money else None
    targets = {
        "money_vs_noop_ratio": {
            "measured": ratio,
            "target": TARGET_RATIO,
            "met": ratio is not None and ratio >= TARGET_RATIO,
        },
        "server_cpu_ms_per_money_call": {
            "measured": cpu,
            "target": TARGET_CPU_MS,
            "met": cpu is not None and cpu <= TARGET_CPU_MS,
        },
    }
    if workers > 1:
        more = _row(backends, f"this --workers {workers}", "money", TARGET_AGENTS)
        higher = more is not None and money is not None and more["calls_per_second"] > money["calls_per_second"]
        targets[f"money_with_{workers}_workers_higher"] = {
            "measured": more["calls_per_second"] if more else None,
            "target": money["calls_per_second"] if money else None,
            "met": higher,
        }
    baseline = _row(backends, "baseline", "money", TARGET_AGENTS)
    if baseline is not None and floor is not None:
        targets["baseline_money_vs_noop_ratio"] = {
            "measured": round(baseline["calls_per_second"] / floor["calls_per_second"], 3),
            "target": TARGET_RATIO,
            "met": baseline["calls_per_second"] / floor["calls_per_second"] >= TARGET_RATIO,
        }
    for name, t in targets.items():
        print(f"target {name}: {t['measured']} vs {t['target']} -> {h.verdict(bool(t['met']))}")
    result = {
        "duration_seconds": args.duration,
        "warmup_seconds": args.warmup,
        "load_generator_processes": args.procs,
        "backends": backends,
        "skipped": skipped,
        "target_agents": TARGET_AGENTS,
        "targets": targets,
        "met": all(t["met"] for name, t in targets.items() if not name.startswith("baseline")),
    }
    print(f"wrote {h.write_json('throughput', result, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
