"""Profile the money call path: where a ``top_up_card`` spends its time inside the server.

Starts the emulator and ``interlace-mcp serve --transport http`` as in ``bench/overhead.py``, warms
up, attaches ``py-spy`` (a sampling profiler; ``pip install py-spy`` into the venv -- it is not a
project dependency) to the server process, drives ``--calls`` ``top_up_card`` calls (one agent,
one at a time; ``--agents N`` for N concurrent agents), detaches and summarizes the samples:

* per thread kind (event loop, AnyIO worker threads): busy vs idle share of the wall time;
* the busy samples by category (the upstream HTTP client, the audit log and its anchor file, the
  ledger, the hand-off to worker threads, the MCP SDK + pydantic, the HTTP server, the tool code),
  as a share of the event loop's wall time and as milliseconds per call;
* the top frames (self time) and the project's own frames with the most time below them
  (``file:line``), so a cost can be traced to the line that pays it.

Sampling is wall-clock (``--idle``: a worker thread blocked in ``fsync`` counts) at ``--rate`` Hz;
py-spy pauses the process for each sample, so calls are slower while profiled: read the shares,
not the absolute latency. The raw collapsed stacks are written next to the JSON
(``bench/results/profile_money.stacks.txt``; speedscope.app and flamegraph.pl read them).
py-spy needs ptrace permission over the server process (root, or kernel.yama.ptrace_scope = 0).

Usage::

    .venv/bin/python bench/profile_money.py [--calls 400] [--agents 1] [--rate 250] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import _harness as h
import anyio

#: Specific costs: (category, test on one stack frame); the first whose test matches ANY frame wins.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("httpcore: failed `import sniffio` per lock", re.compile(r"current_async_library \(httpcore")),
    ("audit: anchor file write (temp file + rename)", re.compile(r"_write_anchor_bytes|_fsync_dir")),
    ("audit: chain append (head, scrub, hash, INSERT)", re.compile(r"AuditLog\._chain_append|AuditLog\.append")),
    (
        "ledger: SQLite jobs (writer thread, readers)",
        re.compile(r"\(interlace_mcp/policy/_(store|requests|reservations|approvals|cards|tokens|db)\.py"),
    ),
    ("upstream: httpx/httpcore client", re.compile(r"InterlaceClient\._send")),
    ("thread hand-off (anyio.to_thread)", re.compile(r"run_sync_in_worker_thread|call_soon_threadsafe")),
    ("logging (access log etc.)", re.compile(r"\(logging/__init__\.py|Handler\.emit")),
    ("policy file stat per call", re.compile(r"file_stamp \(interlace_mcp")),
]
#: Everything else: the package of the frame nearest the leaf that belongs to one of these groups.
GROUPS: list[tuple[str, re.Pattern[str]]] = [
    ("interlace-mcp code (tools, auth, policy checks)", re.compile(r"\(interlace_mcp/")),
    ("MCP SDK + pydantic (dispatch, validation, JSON)", re.compile(r"\((mcp|mcp_types|pydantic|pydantic_core)/")),
    ("HTTP server (uvicorn, h11, starlette)", re.compile(r"\((uvicorn/protocols|h11|starlette)/")),
]
IDLE_LEAVES = re.compile(r"^(EpollSelector\.select|Condition\.wait|Queue\.get|Event\.wait|_wait_for_tstate_lock)")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(h.PYTHON).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy (not a project dependency)")
    return found


async def drive(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    agents = [f"prof-agent-{i}" for i in range(args.agents)]
    with h.temp_dir("bench-profile-") as tmp:
        state = Path(tmp) / "state"
        tokens = h.mint_tokens(h.sqlite_url(state), agents)
        with h.emulator() as upstream, h.server(upstream, state) as srv:
            async with anyio.create_task_group() as tg:
                clients: dict[str, Any] = {}
                ready = anyio.Event()
                go = anyio.Event()
                finished = anyio.Event()
                counts = collections.Counter()

                async def agent(name: str) -> None:
                    async with h.mcp_client(srv.url, tokens[name]) as client:
                        issued = await h.call(client, "issue_card", {"amount": "1.00", "request_id": f"c-{name}"})
                        card = issued["card"]["card_id"]
                        for _ in range(args.warmup):
                            await top_up(client, card)
                        clients[name] = client
                        if len(clients) == len(agents):
                            ready.set()
                        await go.wait()
                        while sum(counts.values()) < args.calls:
                            counts[name] += 1
                            await top_up(client, card)
                        if sum(counts.values()) >= args.calls:
                            finished.set()

                for name in agents:
                    tg.start_soon(agent, name)
                await ready.wait()
                spy = subprocess.Popen(
                    [py_spy(), "record", "--pid", str(srv.pid), "--output", str(out), "--format", "raw",
                     "--rate", str(args.rate), "--threads", *([] if args.cpu else ["--idle"])],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
                await anyio.sleep(1.0)  # attached
                started = time.perf_counter()
                go.set()
                await finished.wait()
                elapsed = time.perf_counter() - started
                spy.send_signal(signal.SIGINT)
                _, err = spy.communicate(timeout=60)
                if not out.exists():
                    raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
    return {"calls": sum(counts.values()), "seconds": round(elapsed, 2)}


async def top_up(client: Any, card: str) -> None:
    args = {"card_id": card, "amount": "0.01", "request_id": str(uuid.uuid4())}
    if (await h.call(client, "top_up_card", args))["status"] != "completed":
        raise RuntimeError("top_up_card did not complete")


def categorize(frames: list[str]) -> str:
    for name, test in CATEGORIES:
        if any(test.search(f) for f in frames):
            return name
    for frame in reversed(frames):
        for name, test in GROUPS:
            if test.search(frame):
                return name
    return "other (event loop, asyncio, anyio)"


def analyze(stacks: Path, calls: int, rate: int, top: int) -> dict[str, Any]:
    kinds = ("event loop", "workers")
    threads: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in kinds}
    categories: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in kinds}
    leaves: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy_total = 0
    for line in stacks.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        kind = "event loop" if "MainThread" in frames[0] else "workers"
        frames = frames[1:]
        leaf = frames[-1] if frames else "?"
        if IDLE_LEAVES.match(leaf) or not frames:
            threads[kind]["idle"] += n
            continue
        threads[kind]["busy"] += n
        busy_total += n
        leaves[leaf] += n
        categories[kind][categorize(frames)] += n
        for f in set(frames):
            if "(interlace_mcp/" in f and "interlace_mcp/cli.py" not in f:
                own[f] += n
    loop_wall = sum(threads["event loop"].values()) or 1
    ms_per_sample = 1000.0 / rate

    def rows(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": k, "samples": v, "pct_of_wall": round(100 * v / loop_wall, 1),
             "ms_per_call": round(v * ms_per_sample / calls, 3)}
            for k, v in counter.most_common()
        ]  # fmt: skip

    return {
        "threads": {
            k: {"busy_pct": round(100 * c["busy"] / max(1, sum(c.values())), 1), "samples": sum(c.values())}
            for k, c in threads.items()
        },
        "categories": {k: rows(c) for k, c in categories.items()},
        "top_self": rows(collections.Counter(dict(leaves.most_common(top)))),
        "top_own_inclusive": rows(collections.Counter(dict(own.most_common(top)))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=400, help="profiled top_up_card calls")
    parser.add_argument("--warmup", type=int, default=30, help="unprofiled calls per agent first")
    parser.add_argument("--agents", type=int, default=1, help="concurrent agents")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows in the frame tables")
    parser.add_argument("--cpu", action="store_true", help="sample on-CPU only (default: wall-clock, idle included)")
    parser.add_argument("--json", type=Path, help="results (default bench/results/profile_money.json)")
    args = parser.parse_args(argv)
    target = args.json or h.RESULTS / "profile_money.json"
    stacks = target.with_suffix(".stacks.txt")
    stacks.parent.mkdir(parents=True, exist_ok=True)
    stacks.unlink(missing_ok=True)
    run = anyio.run(drive, args, stacks)
    result = {**run, "agents": args.agents, "rate": args.rate, "stacks": str(stacks)}
    result.update(analyze(stacks, run["calls"], args.rate, args.top))

    print(
        f"\nprofile of {run['calls']} top_up_card calls ({args.agents} agent(s), {run['seconds']} s under py-spy"
        f" at {args.rate} Hz, wall-clock)"
    )
    for kind, t in result["threads"].items():
        print(f"  {kind}: busy {t['busy_pct']:.0f}% of its wall time")
    for kind in ("event loop", "workers"):
        print(f"\n{kind}: busy samples by category (% of the event loop's wall time, ms per call under the profiler)")
        for row in result["categories"][kind]:
            print(f"  {row['pct_of_wall']:>5.1f}%  {row['ms_per_call']:>6.2f} ms  {row['name']}")
    print("\ntop frames, self time (all threads)")
    for row in result["top_self"]:
        print(f"  {row['pct_of_wall']:>5.1f}%  {row['name']}")
    print("\ninterlace_mcp frames with the most time below them (all threads)")
    for row in result["top_own_inclusive"]:
        print(f"  {row['pct_of_wall']:>5.1f}%  {row['name']}")
    print(f"wrote {h.write_json('profile_money', result, target)} and {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
