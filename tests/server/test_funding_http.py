"""Funding end to end over real sockets: the emulator on a loopback port (real HTTP and OAuth), this server on
another (streamable HTTP, bearer tokens), the official mcp Client in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fuzz.support import V3, Loopback, loopback_emulator
from helpers import call, refuse, serving
from interlace_mcp.config import Settings
from interlace_mcp.policy import token_digest
from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET, CRYPTO_WALLET_ID, DEPOSIT_ADDRESS
from interlace_mcp.server import build_http_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKENS = {"treasurer": "tok-treasurer-0123456789", "shopper": "tok-shopper-0123456789"}
POLICY = '[agents.treasurer]\nfund_daily = "100.00"\n'


@asynccontextmanager
async def funding_deployment(tmp_path: Path) -> AsyncIterator[tuple[Loopback, str]]:
    """The emulator and this server, each on its own loopback port."""
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    async with loopback_emulator() as emu:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            state_dir=tmp_path / "state",
            database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
            policy_file=tmp_path / "policy.toml",
            base_url=emu.base_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            reconcile_interval_seconds=0,
            http_timeout_seconds=0.5,
        )
        app = build_http_app(settings, backoff=False)
        for agent, token in TOKENS.items():
            app.state.interlace_runtime.ledger.add_token(agent, token_digest(token))
        async with serving(app) as base:
            yield emu, base


@asynccontextmanager
async def agent(base: str, name: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
            yield c


async def until_final(c: Client, args: dict[str, Any]) -> dict[str, Any]:
    """fund_account again with the same request_id while the answer is in_progress."""
    with anyio.fail_after(30):
        while True:
            body = await call(c, "fund_account", args)
            if body["status"] != "in_progress":
                return body
            await anyio.sleep(0.2)


def fundings(emu: Loopback) -> list[dict[str, Any]]:
    return [m for m in emu.state.snapshot()["movements"] if m["kind"] == "wallet_to_infinity"]


async def test_funding_over_http_deposit_balance_address_and_exactly_once_under_resets(tmp_path: Path) -> None:
    """Deposit on the emulator -> get_balance shows it -> get_deposit_address -> fund_account, once, through
    connection resets; another agent without a grant is refused naming fund_daily; dry runs move nothing."""
    async with funding_deployment(tmp_path) as (emu, base):
        async with httpx.AsyncClient() as raw:
            deposited = await raw.post(f"{emu.base_url}/_sandbox/deposit", json={"amount": "250.50"})
        assert deposited.status_code == 200, deposited.text
        async with agent(base, "treasurer") as c:
            balance = await call(c, "get_balance", {})
            address = await call(c, "get_deposit_address", {"currency": "USDC", "chain": "ETH"})
            dry = await call(c, "fund_account", {"amount": "60.00", "request_id": "dry", "dry_run": True})
            before = emu.state.snapshot()
            emu.state.add_fault(f"{V3}/business/transfer/internal", "reset", times=5)
            done = await until_final(c, {"amount": "60.00", "request_id": "f-1"})
            emu.state.clear_faults()
            replay = await call(c, "fund_account", {"amount": "60.00", "request_id": "f-1"})
            over = await refuse(c, "fund_account", {"amount": "40.01", "request_id": "f-2"})
            status = await call(c, "get_spend_status", {})
        async with agent(base, "shopper") as c:
            refused = await refuse(c, "fund_account", {"amount": "1.00", "request_id": "s-1"})
    usdc = next(w for w in balance["wallets"] if w["currency"] == "USDC")
    assert usdc == {"wallet_id": CRYPTO_WALLET_ID, "currency": "USDC", "available": "5250.50", "frozen": "0.00"}
    assert address["address"] == DEPOSIT_ADDRESS and balance["sandbox"] is True
    assert dry["status"] == "dry_run" and dry["decision"] == "allow"
    assert done["status"] == "completed" and replay["replayed"] is True
    assert replay["transaction_id"] == done["transaction_id"]
    assert [m["amount"] for m in fundings(emu)] == ["60.00"]
    after = emu.state.snapshot()
    assert Decimal(after["wallets"][CRYPTO_WALLET_ID]["USDC"]) == Decimal("5190.50")
    moved_in = {k: Decimal(after["infinity"][k]) - Decimal(v) for k, v in before["infinity"].items()}
    assert sorted(moved_in.values()) == [Decimal("0"), Decimal("60.00")]
    assert over.startswith("[fund_limit] daily funding limit 100.00 USD: 60.00 funded,") and "40.00 remaining" in over
    assert status["funding"]["funded"] == "60.00" and all(w["spent"] == "0.00" for w in status["windows"])
    assert refused.startswith("[fund_limit] daily funding limit 0.00 USD") and "fund_daily" in refused
