"""End-to-end helpers (import as ``e2e.support``): child environments, the emulator, the acceptance flow.

Every child gets an explicit environment (the SDK's stdio child only inherits an allow-list, and no
developer ``INTERLACE_*`` variable may leak in), its own state dir and ``cwd`` (no stray ``.env``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from helpers import call
from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET

#: What the SDK's stdio child would inherit anyway, plus what Windows needs to start Python.
_PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "SYSTEMROOT", "TEMP", "TMP")

DESIGN_TOOLS = {
    "issue_card", "top_up_card", "get_card", "list_cards", "get_card_transactions", "freeze_card",
    "unfreeze_card", "close_card", "withdraw_from_card", "create_transfer", "list_payees", "get_balance",
    "get_spend_status", "get_request_status", "simulate_purchase", "get_3ds_code", "get_deposit_address",
    "fund_account",
}  # fmt: skip

SEED_BALANCE = Decimal("10000.00")
EMBEDDED_BANNER = "embedded sandbox: no real money"

#: The ``stdio_server`` fixture: ``async with stdio_server(env, errlog=f) as client``.
StdioFactory = Callable[..., AbstractAsyncContextManager[Client]]


def child_env(state_dir: Path, **settings: str) -> dict[str, str]:
    """A minimal environment for an interlace-mcp child: PATH & co, the state dir, and ``settings``."""
    env = {name: os.environ[name] for name in _PASSED_THROUGH if os.environ.get(name)}
    env["INTERLACE_STATE_DIR"] = str(state_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def interlace_command(*args: str) -> list[str]:
    """The installed console script when it sits next to this interpreter, else ``python -m``."""
    script = shutil.which("interlace-mcp", path=str(Path(sys.executable).parent))
    return [script, *args] if script else [sys.executable, "-m", "interlace_mcp", *args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], output: Path, timeout: float = 20.0) -> None:
    """Poll until ``port`` accepts connections; fail with the child's output if it exits or never listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the emulator exited with {proc.returncode}:\n{output.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the emulator did not open port {port} in {timeout} s:\n{output.read_text(errors='replace')}")


@dataclass
class Emulator:
    """``interlace-mcp sandbox`` running on a loopback port."""

    base_url: str
    output: Path

    def state(self) -> dict[str, Any]:
        """``GET /_sandbox/state`` (its ``data``: totals, per-card balances, request counters)."""
        response = httpx.get(f"{self.base_url}/_sandbox/state", timeout=10.0)
        response.raise_for_status()
        body = response.json()
        assert body["code"] == "000000", body
        data: dict[str, Any] = body["data"]
        return data

    def server_env(self, state_dir: Path, **settings: str) -> dict[str, str]:
        """Env for an MCP server that talks to this emulator over real HTTP with real OAuth."""
        return child_env(
            state_dir,
            INTERLACE_BASE_URL=self.base_url,
            INTERLACE_CLIENT_ID=CLIENT_ID,
            INTERLACE_CLIENT_SECRET=CLIENT_SECRET,
            **settings,
        )


async def acceptance_flow(c: Client) -> str:
    """The issue-2 acceptance flow; returns the (closed) card's id. Balances are checked at every step."""
    tools = {t.name for t in (await c.list_tools()).tools}
    assert tools == DESIGN_TOOLS

    start = await call(c, "get_balance", {})
    assert Decimal(start["available"]) == SEED_BALANCE and start["currency"] == "USD"
    assert start["sandbox"] is True

    issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "e2e-issue-1", "label": "e2e"})
    assert issued["status"] == "completed" and issued["sandbox"] is True
    card_id: str = issued["card"]["card_id"]

    topped = await call(c, "top_up_card", {"card_id": card_id, "amount": "5.00", "request_id": "e2e-top-1"})
    assert topped["status"] == "completed" and topped["amount"] == "5.00"

    card = await call(c, "get_card", {"card_id": card_id})
    assert card["balance"] == "15.00"
    assert card["card_number"] is None and card["cvv"] is None
    assert isinstance(card["last_four"], str) and len(card["last_four"]) == 4 and card["last_four"].isdigit()

    sent = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "3.00", "request_id": "e2e-pay-1"})
    assert sent["status"] == "completed" and sent["amount"] == "3.00"

    txns = await call(c, "get_card_transactions", {"card_id": card_id})
    loads = [t for t in txns["transactions"] if t["type"] == "transfer_in"]
    assert "5.00" in [t["amount"] for t in loads], txns

    closed = await call(c, "close_card", {"card_id": card_id, "request_id": "e2e-close-1"})
    assert closed["status"] == "completed" and closed["amount"] == "15.00"

    end = await call(c, "get_balance", {})
    assert Decimal(end["available"]) == SEED_BALANCE - Decimal("3.00")
    return card_id
