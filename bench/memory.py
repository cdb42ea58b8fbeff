"""Memory: the server's resident set size idle and across 10,000 tool calls over streamable HTTP.

Starts the Interlace emulator (in memory) and ``interlace-mcp serve --transport http`` as separate
processes, mints ``--agents`` tokens, issues one card per agent, and reads the server's RSS
(``/proc/PID/status`` VmRSS):

* ``idle``: after start-up (healthz answered), before any tool call;
* then every ``--sample-every`` calls while the agents (concurrently, each its own client) work
  through ``--calls`` calls in total, cycling through a fixed mix of 3 money and 7 read tools:
  ``top_up_card``, ``withdraw_from_card``, ``create_transfer`` (to the emulator's seeded payee) and
  ``get_card``, ``list_cards``, ``get_balance``, ``get_spend_status``, ``get_request_status``,
  ``list_payees``, ``get_card_transactions``;
* ``settled``: once more, ``--settle`` seconds after the last call.

Growth is judged after warm-up (imports, caches, connection pools and the SQLite page caches fill
during the first calls): the RSS at ``--warm`` calls vs the last sample, and the least-squares slope
over the samples from ``--warm`` on, in kB per 1,000 calls. "No growth" means the last sample is
within ``--tolerance-mb`` (default 2 MB: allocator noise) of the warm sample. The policy has no limits
and the rate limit is raised, so nothing is refused (any error aborts the run).

Target: no memory growth across 10,000 calls.

Usage::

    .venv/bin/python bench/memory.py [--calls 10000] [--agents 8] [--warm 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import _harness as h
import anyio

MIX = (
    "top_up_card",
    "get_card",
    "list_cards",
    "withdraw_from_card",
    "get_balance",
    "get_spend_status",
    "create_transfer",
    "get_request_status",
    "list_payees",
    "get_card_transactions",
)
MONEY = {"top_up_card", "withdraw_from_card", "create_transfer"}


def arguments(tool: str, card_id: str, last_request: str) -> dict[str, Any]:
    rid = str(uuid.uuid4())
    return {
        "top_up_card": {"card_id": card_id, "amount": "0.02", "request_id": rid},
        "withdraw_from_card": {"card_id": card_id, "amount": "0.01", "request_id": rid},
        "create_transfer": {"payee": "sandbox-payee", "amount": "0.01", "request_id": rid},
        "get_card": {"card_id": card_id},
        "list_cards": {},
        "get_balance": {},
        "get_spend_status": {},
        "get_request_status": {"request_id": last_request},
        "list_payees": {},
        "get_card_transactions": {"card_id": card_id, "limit": 5},
    }[tool]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    agents = [f"mem-agent-{i}" for i in range(args.agents)]
    with h.temp_dir("bench-memory-") as tmp:
        state = Path(tmp) / "state"
        tokens = h.mint_tokens(h.sqlite_url(state), agents)
        with h.emulator() as upstream, h.server(upstream, state) as srv:
            await anyio.sleep(1.0)
            idle = srv.rss_kb()
            samples: list[tuple[int, int]] = [(0, idle)]
            done = 0
            next_sample = args.sample_every
            counter = itertools.count()
            started = time.perf_counter()

            async def work(agent: str) -> None:
                nonlocal done, next_sample
                async with h.mcp_client(srv.url, tokens[agent]) as client:
                    issued = await h.call(client, "issue_card", {"amount": "5.00", "request_id": f"card-{agent}"})
                    card_id = issued["card"]["card_id"]
                    last_request = f"card-{agent}"
                    while True:
                        i = next(counter)
                        if i >= args.calls:
                            return
                        tool = MIX[i % len(MIX)]
                        call_args = arguments(tool, card_id, last_request)
                        await h.call(client, tool, call_args)
                        if tool in MONEY:
                            last_request = call_args["request_id"]
                        done += 1
                        if done >= next_sample:
                            samples.append((done, srv.rss_kb()))
                            next_sample += args.sample_every

            async with anyio.create_task_group() as tg:
                for agent in agents:
                    tg.start_soon(work, agent)
            elapsed = time.perf_counter() - started
            if samples[-1][0] != done:
                samples.append((done, srv.rss_kb()))
            await anyio.sleep(args.settle)
            settled = srv.rss_kb()
    warm = next((kb for n, kb in samples if n >= args.warm), samples[-1][1])
    tail = [(n, kb) for n, kb in samples if n >= args.warm]
    slope = _slope(tail) * 1000 if len(tail) >= 2 else 0.0
    growth_kb = samples[-1][1] - warm
    met = growth_kb <= args.tolerance_mb * 1024
    return {
        "calls": done,
        "agents": args.agents,
        "mix": list(MIX),
        "seconds": round(elapsed, 1),
        "calls_per_second": round(done / elapsed, 1),
        "idle_kb": idle,
        "warm_calls": args.warm,
        "warm_kb": warm,
        "final_kb": samples[-1][1],
        "settled_kb": settled,
        "growth_after_warmup_kb": growth_kb,
        "growth_from_idle_kb": samples[-1][1] - idle,
        "slope_kb_per_1000_calls": round(slope, 1),
        "samples": [{"calls": n, "rss_kb": kb} for n, kb in samples],
        "tolerance_mb": args.tolerance_mb,
        "met": met,
    }


def _slope(points: list[tuple[int, int]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=10_000, help="tool calls in total")
    parser.add_argument("--agents", type=int, default=8, help="concurrent agents (each its own token and client)")
    parser.add_argument("--sample-every", type=int, default=1000, help="read RSS every N calls")
    parser.add_argument("--warm", type=int, default=2000, help="calls after which growth is judged")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before the settled sample")
    parser.add_argument("--tolerance-mb", type=float, default=2.0, help="allowed growth after warm-up")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/memory.json)")
    args = parser.parse_args(argv)
    result = anyio.run(measure, args)
    mb = 1 / 1024
    print(
        f"\nserver RSS over {result['calls']:,} tool calls ({result['agents']} agents, 3 money + 7 read tools,"
        f" {result['calls_per_second']:.0f} calls/s)"
    )
    print(f"{'calls':>8} {'RSS MB':>8}")
    for sample in result["samples"]:
        print(f"{sample['calls']:>8,} {sample['rss_kb'] * mb:>8.1f}")
    print(f"{'settled':>8} {result['settled_kb'] * mb:>8.1f}")
    print(
        f"idle {result['idle_kb'] * mb:.1f} MB -> after {result['warm_calls']:,} calls {result['warm_kb'] * mb:.1f} MB"
        f" -> after {result['calls']:,} calls {result['final_kb'] * mb:.1f} MB;"
        f" growth after warm-up {result['growth_after_warmup_kb'] * mb:+.1f} MB"
        f" (slope {result['slope_kb_per_1000_calls']:+.0f} kB per 1,000 calls)"
    )
    print(
        f"target: no growth across {result['calls']:,} calls (<= {args.tolerance_mb:g} MB after warm-up)"
        f" -> {h.verdict(result['met'])} ({result['growth_after_warmup_kb'] * mb:+.1f} MB)"
    )
    print(f"wrote {h.write_json('memory', result, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
