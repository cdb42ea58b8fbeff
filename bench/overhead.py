"""Overhead of a money call: ``top_up_card`` through MCP vs the bare upstream call it wraps.

Starts the Interlace emulator (in memory) and ``interlace-mcp serve --transport http`` as separate
processes on loopback ports (uvicorn both), mints one agent token, issues one card, then times,
interleaved call by call so drift hits every variant equally:

* ``direct transfer-in``: ``POST /open-api/v3/cards/transfer-in`` with a fresh clientTransactionId and
  Idempotency-Key, made with httpx straight at the emulator (the baseline: the money movement itself);
* ``direct tool upstream``: what ``top_up_card`` asks of the upstream -- that POST, then the card's
  summary (``GET /cards/{id}/card-summary``: its balance and velocity; the rest of the card object is
  known, and the accepted load proves it ACTIVE) -- still with httpx, no MCP (splits the overhead into
  "more upstream calls" and "our own work");
* ``mcp top_up_card``: the tool through the official MCP client over streamable HTTP with a bearer
  token (token check, rate limit, policy, atomic ledger reserve + commit, audit chain, the upstream
  calls above, result validation);
* ``mcp list_payees``: a tool with no upstream call (the MCP + auth + audit floor), for reference;
* ``bare sdk add``: ``bench/bare_server.py --http`` (an official ``MCPServer``, one trivial tool, no
  auth, nothing else) through the same client: the SDK's own floor per call over HTTP, for reference.

The policy file has no limits (``"none"``) and the rate limit is raised, so no call is refused. The
ledger is SQLite in a fresh state dir (production settings: WAL, ``synchronous=FULL``), so the
disk's fsync latency is part of the money call; it is measured and reported next to the result.

Target (issue 14): the added overhead per money call (mcp top_up_card median - direct transfer-in median)
<= the bare SDK's round trip (bare sdk add median, same run) + 1.5 ms.

Usage::

    .venv/bin/python bench/overhead.py [--calls 1000] [--warmup 50] [--source SRC] [--json PATH]

``--source SRC`` serves another checkout's ``src/`` (e.g. a baseline commit) instead of this one.
``--baseline SRC`` serves it as well, beside this one (same emulator, its own state), and adds its
``top_up_card`` to the interleaved loop (``baseline top_up_card``): a before/after in one run, where the
machine's drift hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _harness as h
import anyio

#: Issue 14: the added overhead may exceed the bare SDK's own round trip by at most this much.
TARGET_BEYOND_SDK_MS = 1.5


async def measure(calls: int, warmup: int, source: Path | None = None, baseline: Path | None = None) -> dict[str, Any]:
    with h.temp_dir("bench-overhead-") as tmp:
        state = Path(tmp) / "state"
        tokens = h.mint_tokens(h.sqlite_url(state), ["bench-agent"], source)
        base_state = Path(tmp) / "baseline-state"
        base_tokens = h.mint_tokens(h.sqlite_url(base_state), ["bench-agent"], baseline) if baseline else {}
        fsync = h.fsync_ms(Path(tmp))
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(h.emulator())
            srv = stack.enter_context(h.server(upstream, state, source=source))
            base_srv = stack.enter_context(h.server(upstream, base_state, source=baseline)) if baseline else None
            bare_url = stack.enter_context(h.bare_http_server())
            async with contextlib.AsyncExitStack() as clients:
                mcp = await clients.enter_async_context(h.mcp_client(srv.url, tokens["bench-agent"]))
                direct = await clients.enter_async_context(h.DirectUpstream(upstream.url))
                bare = await clients.enter_async_context(h.mcp_client(bare_url, "unused"))
                card_id = (await h.call(mcp, "issue_card", {"amount": "1.00", "request_id": "bench-card"}))["card"][
                    "card_id"
                ]
                base_mcp: Any = None
                base_card = ""
                if base_srv is not None:
                    base_mcp = await clients.enter_async_context(h.mcp_client(base_srv.url, base_tokens["bench-agent"]))
                    issued = await h.call(base_mcp, "issue_card", {"amount": "1.00", "request_id": "bench-card"})
                    base_card = issued["card"]["card_id"]

                async def direct_transfer() -> None:
                    await direct.transfer_in(card_id)

                async def direct_tool_upstream() -> None:
                    await direct.transfer_in(card_id)
                    await direct.get(f"/open-api/v3/cards/{card_id}/card-summary")

                async def mcp_top_up() -> None:
                    args = {"card_id": card_id, "amount": "0.01", "request_id": str(uuid.uuid4())}
                    result = await h.call(mcp, "top_up_card", args)
                    if result["status"] != "completed":
                        raise RuntimeError(result)

                async def baseline_top_up() -> None:
                    args = {"card_id": base_card, "amount": "0.01", "request_id": str(uuid.uuid4())}
                    result = await h.call(base_mcp, "top_up_card", args)
                    if result["status"] != "completed":
                        raise RuntimeError(result)

                async def mcp_list_payees() -> None:
                    await h.call(mcp, "list_payees", {})

                async def bare_add() -> None:
                    await h.call(bare, "add", {"a": 1, "b": 2})

                variants: dict[str, Callable[[], Awaitable[None]]] = {
                    "direct transfer-in": direct_transfer,
                    "direct tool upstream": direct_tool_upstream,
                    "mcp top_up_card": mcp_top_up,
                    "mcp list_payees": mcp_list_payees,
                    "bare sdk add": bare_add,
                }
                if base_srv is not None:
                    variants["baseline top_up_card"] = baseline_top_up
                for _ in range(warmup):
                    for fn in variants.values():
                        await fn()
                samples: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(calls):
                    for name, fn in variants.items():
                        started = time.perf_counter()
                        await fn()
                        samples[name].append(time.perf_counter() - started)
    stats = {name: h.summarize_ms(values) for name, values in samples.items()}
    base, tool = stats["direct transfer-in"], stats["mcp top_up_card"]
    added_median = tool["median_ms"] - base["median_ms"]
    added_p99 = tool["p99_ms"] - base["p99_ms"]
    upstream_extra = stats["direct tool upstream"]["median_ms"] - base["median_ms"]
    sdk_floor = stats["bare sdk add"]["median_ms"]
    compared: dict[str, Any] = {}
    if "baseline top_up_card" in stats:
        base_added = stats["baseline top_up_card"]["median_ms"] - base["median_ms"]
        compared = {
            "baseline_source": str(baseline),
            "baseline_added_median_ms": round(base_added, 3),
            "baseline_met": base_added <= sdk_floor + TARGET_BEYOND_SDK_MS,
        }
    return {
        **compared,
        "calls_per_variant": calls,
        "warmup_per_variant": warmup,
        "database": "sqlite",
        "fsync_median_ms": fsync,
        "variants": stats,
        "ratio_median": round(tool["median_ms"] / base["median_ms"], 2),
        "ratio_p99": round(tool["p99_ms"] / base["p99_ms"], 2),
        "added_median_ms": round(added_median, 3),
        "added_p99_ms": round(added_p99, 3),
        "added_by_extra_upstream_reads_median_ms": round(upstream_extra, 3),
        "added_by_server_median_ms": round(added_median - upstream_extra, 3),
        "sdk_floor_median_ms": sdk_floor,
        "added_by_interlace_beyond_sdk_floor_median_ms": round(added_median - upstream_extra - sdk_floor, 3),
        "target_added_median_ms": round(sdk_floor + TARGET_BEYOND_SDK_MS, 3),
        "met": added_median <= sdk_floor + TARGET_BEYOND_SDK_MS,
    }


def report(result: dict[str, Any]) -> None:
    print(f"\ntop_up_card overhead, {result['calls_per_variant']} calls per variant (interleaved), SQLite ledger")
    print(f"{'variant':<22} {'median ms':>10} {'p99 ms':>9} {'mean ms':>9} {'max ms':>9}")
    for name, s in result["variants"].items():
        print(f"{name:<22} {s['median_ms']:>10.2f} {s['p99_ms']:>9.2f} {s['mean_ms']:>9.2f} {s['max_ms']:>9.2f}")
    print(
        f"mcp top_up_card / direct transfer-in: median {result['ratio_median']:.2f}x, p99 {result['ratio_p99']:.2f}x;"
        f" added {result['added_median_ms']:.2f} ms median, {result['added_p99_ms']:.2f} ms p99"
    )
    print(
        f"  of the added median: {result['added_by_extra_upstream_reads_median_ms']:.2f} ms the tool's extra"
        f" upstream read, {result['sdk_floor_median_ms']:.2f} ms the bare SDK's own floor per call,"
        f" {result['added_by_interlace_beyond_sdk_floor_median_ms']:.2f} ms interlace-mcp's own work"
        f" (auth, policy, ledger, audit; disk fsync here: {result['fsync_median_ms']:.2f} ms median)"
    )
    print(
        f"target: added <= bare SDK round trip + {TARGET_BEYOND_SDK_MS} ms = {result['target_added_median_ms']:.2f} ms"
        f" median -> {h.verdict(result['met'])} ({result['added_median_ms']:.2f} ms)"
    )
    if "baseline_added_median_ms" in result:
        print(
            f"baseline ({result['baseline_source']}), same run: added {result['baseline_added_median_ms']:.2f} ms"
            f" median -> {h.verdict(result['baseline_met'])}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per variant first")
    parser.add_argument("--source", type=Path, metavar="SRC", help="serve another checkout's src/ (e.g. a baseline)")
    parser.add_argument(
        "--baseline", type=Path, metavar="SRC", help="also serve another checkout's src/ and interleave its top_up_card"
    )
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/overhead.json)")
    args = parser.parse_args(argv)
    result = anyio.run(measure, args.calls, args.warmup, args.source, args.baseline)
    report(result)
    print(f"wrote {h.write_json('overhead', result, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
