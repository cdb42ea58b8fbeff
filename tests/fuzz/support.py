"""Helpers for the fault, fuzz and property suites (import as ``fuzz.support``).

``loopback_emulator`` serves the emulator with uvicorn on a loopback port inside the test's own event
loop (real sockets: timeouts and connection resets are real), and ``loopback_server`` builds an MCP
server that reaches it over HTTP with real OAuth, as a deployment pointed at ``interlace-mcp sandbox``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.server import MCPServer
from starlette.applications import Starlette

from helpers import Clock
from interlace_mcp.app import Runtime
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET, SandboxConnectionDropped, SandboxState, create_sandbox_app
from interlace_mcp.server import build_server

#: Read at import: the autouse fixture clears INTERLACE_* before each test runs.
FULL = os.environ.get("INTERLACE_TEST_FULL", "") not in ("", "0")

V3 = "/open-api/v3"
#: Every code a refusal may carry (DESIGN section 6, plus the ones this server adds).
KNOWN_CODES = frozenset(
    {
        "per_transaction_limit", "daily_limit", "weekly_limit", "monthly_limit", "lifetime_limit",
        "max_active_cards", "payee_not_allowed", "tool_not_allowed", "agent_frozen", "not_found",
        "insufficient_funds", "card_frozen", "request_id_conflict", "approval_denied", "approval_expired",
        "rate_limited", "validation_error", "upstream_error", "reveal_not_allowed", "audit_unavailable",
        "policy_error", "confirmation_declined", "fund_limit",
    }
)  # fmt: skip


def error_code(text: str) -> str | None:
    """The ``[code]`` a refusal starts with, or None."""
    if not text.startswith("["):
        return None
    code, sep, _ = text[1:].partition("]")
    return code if sep else None


class _HideInjectedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SandboxConnectionDropped))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Loopback:
    base_url: str
    app: Starlette

    @property
    def state(self) -> SandboxState:
        state = self.app.state.sandbox
        assert isinstance(state, SandboxState)
        return state


@asynccontextmanager
async def loopback_emulator() -> AsyncIterator[Loopback]:
    """The emulator (in memory) under uvicorn on 127.0.0.1, in this event loop; stopped on exit."""
    app = create_sandbox_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    drops = _HideInjectedDrops()
    logging.getLogger("uvicorn.error").addFilter(drops)
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            stopped.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)
            try:
                yield Loopback(f"http://127.0.0.1:{port}", app)
            finally:
                # A clean shutdown even when the body failed (a cancelled serve() leaks its socket).
                server.should_exit = True
                with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                    await stopped.wait()
    finally:
        logging.getLogger("uvicorn.error").removeFilter(drops)


def loopback_server(
    base_url: str, tmp: Path, *, clock: Clock | None = None, policy: str | None = None, **settings: Any
) -> MCPServer[Runtime]:
    """A server on the loopback emulator (no injected transport: real HTTP, real OAuth)."""
    if policy is not None:
        (tmp / "policy.toml").write_text(policy, encoding="utf-8")
        settings["policy_file"] = tmp / "policy.toml"
    values: dict[str, Any] = {
        "state_dir": tmp / "state",
        "database_url": f"sqlite:///{tmp / 'ledger.sqlite3'}",
        "base_url": base_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "reconcile_interval_seconds": 0,
        **settings,
    }
    return build_server(
        Settings(_env_file=None, **values),  # type: ignore[call-arg]
        ledger=Ledger(tmp / "ledger.sqlite3", clock=clock or Clock()),
        upstream_transport=None,
        backoff=False,
    )


def upstream_spend(snapshot: dict[str, Any]) -> Decimal:
    """What left the Infinity account as spend at the emulator: card loads and business transfers."""
    return Decimal(snapshot["loaded_total"]) + Decimal(snapshot["transfers_total"])


def movements_by_key(snapshot: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for move in snapshot["movements"]:
        key = move.get("clientTransactionId")
        if key:
            counts[key] = counts.get(key, 0) + 1
    return counts
