"""Cold start: process start to the first ``tools/list`` answer over stdio.

Each run starts a fresh process, writes one ``tools/list`` request to its stdin at once (a 2026-07-28
request, protocol version, client info and capabilities in ``_meta``; ``--era legacy`` sends the
2025 ``initialize`` + ``notifications/initialized`` + ``tools/list`` instead) and stops the clock when
the answer to it arrives on stdout. Then stdin is closed and the process ends. Measured:

* ``interlace-mcp``: the console script, no credentials (the embedded emulator), a fresh empty
  ``INTERLACE_STATE_DIR`` per run (so the SQLite ledger and audit log, the emulator state and the
  token discovery are all created from nothing, as on a first start);
* ``bare MCPServer``: ``bench/bare_server.py``, an official ``MCPServer`` with one tool -- the floor
  of any server on this SDK;
* ``python -c pass``: the interpreter alone, for reference.

The kinds are interleaved run by run (plus ``--warmup`` untimed rounds first, so the OS file cache is
warm for all of them); the medians are compared.

Target: interlace-mcp median <= 1.3x the bare MCPServer median.

Usage::

    .venv/bin/python bench/cold_start.py [--runs 15] [--warmup 2] [--era modern|legacy] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import _harness as h

TARGET_RATIO = 1.3
CLIENT_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench-cold-start", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def requests(era: str) -> bytes:
    if era == "modern":
        messages: list[dict[str, Any]] = [
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": CLIENT_META}}
        ]
    else:
        messages = [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "bench-cold-start", "version": "0"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
        ]
    return b"".join(json.dumps(m).encode() + b"\n" for m in messages)


def one_run(command: list[str], env: dict[str, str], payload: bytes | None, cwd: str, timeout: float = 60.0) -> float:
    """Seconds from spawn to the tools/list answer (to exit, for a command without payload)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if payload is None:
            proc.stdin.close()
            proc.wait(timeout)
            return time.perf_counter() - started
        proc.stdin.write(payload)
        proc.stdin.flush()
        buffer = b""
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        fd = proc.stdout.fileno()
        while True:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{command!r}: no tools/list answer in {timeout}s")
            if not selector.select(timeout=1.0):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"{command!r} closed stdout (exit {proc.wait()}) before answering tools/list")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == 2:
                    elapsed = time.perf_counter() - started
                    if "result" not in message or not message["result"].get("tools"):
                        raise RuntimeError(f"{command!r}: tools/list failed: {message}")
                    return elapsed
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            h.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--era", choices=["modern", "legacy"], default="modern")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/cold_start.json)")
    args = parser.parse_args(argv)
    payload = requests(args.era)
    samples: dict[str, list[float]] = {"interlace-mcp": [], "bare MCPServer": [], "python -c pass": []}
    with h.temp_dir("bench-cold-") as tmp:

        def run(kind: str, index: int) -> float:
            if kind == "interlace-mcp":
                state = Path(tmp) / f"state-{index}"  # fresh and empty: created by the server itself
                return one_run(h.CLI, h.clean_env(INTERLACE_STATE_DIR=str(state)), payload, tmp)
            if kind == "bare MCPServer":
                return one_run([h.PYTHON, str(h.BENCH / "bare_server.py")], h.clean_env(), payload, tmp)
            return one_run([h.PYTHON, "-c", "pass"], h.clean_env(), None, tmp)

        for i in range(args.warmup):
            for kind in samples:
                run(kind, -1 - i)
        for i in range(args.runs):
            for kind in samples:
                samples[kind].append(run(kind, i))
    stats = {kind: h.summarize_ms(values) for kind, values in samples.items()}
    ratio = stats["interlace-mcp"]["median_ms"] / stats["bare MCPServer"]["median_ms"]
    met = ratio <= TARGET_RATIO
    print(f"\nprocess start -> first tools/list answer over stdio ({args.era} era), {args.runs} runs each")
    print(f"{'server':<16} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    for kind, values in samples.items():
        s = stats[kind]
        p90 = h.percentile([v * 1000 for v in values], 90)
        print(f"{kind:<16} {s['median_ms']:>10.1f} {p90:>8.1f} {s['min_ms']:>8.1f} {s['max_ms']:>8.1f}")
    added = stats["interlace-mcp"]["median_ms"] - stats["bare MCPServer"]["median_ms"]
    print(f"interlace-mcp / bare MCPServer: {ratio:.2f}x median (+{added:.0f} ms)")
    print(f"target: <= {TARGET_RATIO}x the bare-SDK floor -> {h.verdict(met)} ({ratio:.2f}x)")
    result = {
        "runs": args.runs,
        "era": args.era,
        "servers": stats,
        "ratio_median": round(ratio, 3),
        "added_median_ms": round(added, 1),
        "stdev_ms": {k: round(statistics.pstdev(v) * 1000, 1) for k, v in samples.items()},
        "target_ratio": TARGET_RATIO,
        "met": met,
    }
    print(f"wrote {h.write_json('cold_start', result, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
