"""Shared plumbing of the benchmarks in bench/ (not a benchmark itself).

Every benchmark runs the real thing as separate processes on loopback ports:

* the Interlace emulator (``interlace_mcp.sandbox.run_sandbox``, in memory: no state file, so its
  cost does not grow with the number of calls) under uvicorn;
* ``interlace-mcp serve --transport http`` (uvicorn, default settings apart from the upstream, the
  state dir, the database, the policy file and the rate limit), pointed at that emulator;
* the benchmark's own clients (the official ``mcp`` client over streamable HTTP, or plain httpx).

Nothing here touches ``src/``: tokens are minted the way ``interlace-mcp agents token`` mints them
(sha256 into the database before the server starts), and the policy is an ordinary policy file.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
#: The console script a client configures (``command`` in mcp.json); ``python -m interlace_mcp`` if absent.
CLI = (
    [str(Path(PYTHON).with_name("interlace-mcp"))]
    if Path(PYTHON).with_name("interlace-mcp").exists()
    else [
        PYTHON,
        "-m",
        "interlace_mcp",
    ]
)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: Emulator seeds (interlace_mcp.sandbox._seeds); repeated here so a harness import stays light.
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret-0123456789abcdef!"
ACCOUNT_ID = "6b1f3f7e-0c1a-4d2b-9e61-3a5c0d9e1a01"

#: Limits high enough never to refuse a benchmark call; every other key keeps its default.
HIGH_LIMITS_POLICY = """\
[defaults]
per_transaction = "none"
daily = "none"
weekly = "none"
monthly = "none"
lifetime = "none"
max_active_cards = "none"
transfer_payees = ["sandbox-payee"]  # the emulator's seeded payee (known whenever the upstream is the emulator)
"""
#: INTERLACE_RATE_LIMIT_PER_MINUTE for the benchmarks: far above anything they send.
HIGH_RATE_LIMIT = 10_000_000


# ---- machine and statistics ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_1m_at_end": loadavg(),
    }


def loadavg() -> float | None:
    """The 1-minute load average (other work on the machine skews every number here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def percentile(values: Sequence[float], pct: float) -> float:
    """Inclusive percentile (as ``statistics.quantiles(..., method="inclusive")``)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def write_json(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``data`` (plus the machine) to ``path`` or ``bench/results/NAME.json``."""
    target = path or RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data, "machine": machine()}
    target.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return target


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# ---- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any developer INTERLACE_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLACE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0, expect: int | None = 200) -> None:
    """Poll ``url`` until it answers ``expect`` (None: any status; raises if the process dies or time runs out)."""
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2)
            if expect is None or response.status_code == expect:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s (last: {last})")


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM this one process (graceful shutdown), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def rss_kb(pid: int) -> int:
    """Resident set size of one process (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Emulator:
    """The running emulator: its base URL and process id."""

    def __init__(self, proc: subprocess.Popen[Any], url: str) -> None:
        self.proc = proc
        self.url = url

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def emulator(log: IO[str] | None = None) -> Iterator[Emulator]:
    """The Interlace emulator on a loopback port, in memory (its cost does not grow with the calls)."""
    port = free_port()
    code = f"from interlace_mcp.sandbox import run_sandbox; run_sandbox('127.0.0.1', {port})"
    proc = subprocess.Popen(
        [PYTHON, "-c", code], env=clean_env(), stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/_sandbox/state", proc)
        yield Emulator(proc, base)
    finally:
        stop(proc)


class Server:
    """``interlace-mcp serve --transport http`` on a loopback port, as a subprocess."""

    def __init__(self, proc: subprocess.Popen[Any], url: str, state_dir: Path) -> None:
        self.proc = proc
        self.url = url  # base URL; the MCP endpoint is url + "/mcp"
        self.state_dir = state_dir

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)


@contextlib.contextmanager
def server(
    upstream: Emulator,
    state_dir: Path,
    *,
    database_url: str | None = None,
    policy: str = HIGH_LIMITS_POLICY,
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    log: Path | None = None,
    args: Sequence[str] = (),
    source: Path | None = None,
) -> Iterator[Server]:
    """Start the HTTP server against ``upstream`` (the emulator); tokens must already be minted.

    ``wrap`` prefixes the command (a profiler, e.g. ``py-spy record -o X --``); ``log`` receives its
    stderr (default: ``state_dir/server.log``); ``args`` are added to ``serve`` (e.g. ``--workers 2``);
    ``source``: run another checkout's ``src/`` (e.g. a baseline commit) with this interpreter.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    policy_file = state_dir / "policy.toml"
    policy_file.write_text(policy, encoding="utf-8")
    port = free_port()
    settings = {
        "INTERLACE_BASE_URL": upstream.url,
        "INTERLACE_CLIENT_ID": CLIENT_ID,
        "INTERLACE_CLIENT_SECRET": CLIENT_SECRET,
        "INTERLACE_STATE_DIR": str(state_dir),
        "INTERLACE_POLICY_FILE": str(policy_file),
        "INTERLACE_RATE_LIMIT_PER_MINUTE": str(HIGH_RATE_LIMIT),
        **({"INTERLACE_DATABASE_URL": database_url} if database_url else {}),
        **(env or {}),
    }
    log_path = log or state_dir / "server.log"
    with open(log_path, "w", encoding="utf-8") as log_file:
        command = [PYTHON, "-m", "interlace_mcp"] if source is not None else CLI
        if source is not None:
            settings["PYTHONPATH"] = str(source)
        proc = subprocess.Popen(
            [*wrap, *command, "serve", "--transport", "http", "--port", str(port), *args],
            env=clean_env(**settings),
            cwd=state_dir,  # no .env from the repository
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", proc, timeout=60)
            yield Server(proc, base, state_dir)
        finally:
            stop(proc, timeout=30)


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'interlace-mcp.sqlite3'}"


def mint_tokens(database_url: str, agents: Sequence[str], source: Path | None = None) -> dict[str, str]:
    """One bearer token per agent, stored as ``interlace-mcp agents token NAME`` stores it.

    ``source``: with another checkout's code (its ledger schema may be older than this one's).
    """
    if source is not None:
        code = (
            "import json, sys; from interlace_mcp.policy import Ledger, token_digest\n"
            "tokens = json.loads(sys.argv[2]); ledger = Ledger.from_url(sys.argv[1])\n"
            "[ledger.add_token(agent, token_digest(token)) for agent, token in tokens.items()]\n"
            "ledger.close()\n"
        )
        tokens = {agent: "itl_agent_" + secrets.token_urlsafe(32) for agent in agents}
        env = clean_env(PYTHONPATH=str(source))
        subprocess.run([PYTHON, "-c", code, database_url, json.dumps(tokens)], env=env, check=True)
        return tokens
    from interlace_mcp.policy import Ledger, token_digest

    ledger = Ledger.from_url(database_url)
    try:
        tokens = {}
        for agent in agents:
            token = "itl_agent_" + secrets.token_urlsafe(32)
            ledger.add_token(agent, token_digest(token))
            tokens[agent] = token
        return tokens
    finally:
        ledger.close()


# ---- PostgreSQL (optional) ---------------------------------------------------------------------------


def pg_unreachable(url: str) -> str | None:
    """None when a PostgreSQL server answers at ``url``, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema in ``url``'s database (dropped afterwards); yields a URL whose connections use it."""
    import psycopg

    schema = "bench_" + secrets.token_hex(5)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SET lock_timeout = '20s'")
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# ---- MCP clients -------------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(server_url: str, token: str) -> AsyncIterator[Any]:
    """The official client over streamable HTTP with a bearer token (protocol negotiated: 2026-07-28)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"{server_url}/mcp", http_client=http)) as client:
            yield client


async def call(client: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        text = result.content[0].text if result.content else "?"
        raise RuntimeError(f"{tool} failed: {text}")
    assert result.structured_content is not None
    return dict(result.structured_content)


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


def fsync_ms(directory: Path, rounds: int = 50) -> float:
    """Median time of a small write + fsync in ``directory`` (what every SQLite commit pays, ms)."""
    path = directory / ".fsync-probe"
    samples = []
    with open(path, "wb") as f:
        for _ in range(rounds):
            started = time.perf_counter()
            f.write(b"x" * 512)
            f.flush()
            os.fsync(f.fileno())
            samples.append(time.perf_counter() - started)
    path.unlink()
    return round(statistics.median(samples) * 1000, 3)


class DirectUpstream:
    """Plain httpx against the emulator: OAuth once, then signed Open API calls (the baseline)."""

    def __init__(self, base_url: str) -> None:
        import httpx

        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=30, headers={"accept": "application/json", "user-agent": "bench"}
        )
        self.token = ""

    async def __aenter__(self) -> DirectUpstream:
        code = self._data(await self.http.get("/open-api/v3/oauth/authorize", params={"clientId": CLIENT_ID}))["code"]
        body = {"clientId": CLIENT_ID, "code": code, "clientSecret": CLIENT_SECRET}
        self.token = self._data(await self.http.post("/open-api/v3/oauth/access-token", json=body))["accessToken"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @staticmethod
    def _data(response: Any) -> Any:
        payload = json.loads(response.content)
        if response.status_code != 200 or payload.get("code") != "000000":
            raise RuntimeError(f"emulator answered {response.status_code}: {payload}")
        return payload["data"]

    async def transfer_in(self, card_id: str, amount: str = "0.01") -> Any:
        """``POST /open-api/v3/cards/transfer-in`` with a fresh clientTransactionId (= Idempotency-Key)."""
        import uuid

        key = str(uuid.uuid4())
        body = {"accountId": ACCOUNT_ID, "cardId": card_id, "clientTransactionId": key, "amount": amount}
        response = await self.http.post(
            "/open-api/v3/cards/transfer-in",
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"content-type": "application/json", "Idempotency-Key": key, "x-access-token": self.token},
        )
        return self._data(response)

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(
            path, params={"accountId": ACCOUNT_ID, **params}, headers={"x-access-token": self.token}
        )
        return self._data(response)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by one process (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of the full line)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (``serve --workers N``: the supervisor and its workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


@contextlib.contextmanager
def bare_http_server_process() -> Iterator[tuple[str, int]]:
    """``bench/bare_server.py --http PORT``: its base URL and process id."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, str(BENCH / "bare_server.py"), "--http", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/mcp", proc, expect=None)  # any answer: it is up
        yield base, proc.pid
    finally:
        stop(proc)


@contextlib.contextmanager
def bare_http_server() -> Iterator[str]:
    """``bench/bare_server.py --http PORT`` (the SDK's floor); yields its base URL (endpoint: + /mcp)."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, str(BENCH / "bare_server.py"), "--http", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/mcp", proc, expect=None)  # any answer: it is up
        yield base
    finally:
        stop(proc)
