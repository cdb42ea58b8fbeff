"""Issue-11 acceptance: a whole purchase over a loopback emulator, and two instances that never sweep twice.

The emulator and the MCP server each run under uvicorn on a loopback port (real HTTP both ways: the
client's calls, the server's calls to Interlace with OAuth, and the emulator's signed notifications to
the server's ``/webhooks/interlace``). They share one settable clock, so a purchase settles, and a card
expires, exactly when the test moves time on -- with no sleeping.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helpers import Clock, call, refuse, serving
from interlace_mcp.app import Runtime, build_runtime, check_cards, maintain, open_runtime, reconcile
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger, requests, token_digest
from interlace_mcp.sandbox import CLIENT_ID, CLIENT_SECRET, INFINITY_BALANCE_ID, SandboxState, create_sandbox_app
from interlace_mcp.server import build_http_app, build_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = Decimal("10000.00")
TOKEN = "itl_agent_checkout-e2e-token-0123456789"
POLICY = """\
[defaults]
per_transaction = "50.00"
daily = "200.00"
max_active_cards = 5
mcc_allow = ["5734"]
"""


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    with anyio.fail_after(timeout):
        while not (found := await check()):
            await anyio.sleep(0.02)
    return found


class Notices:
    """A loopback receiver for INTERLACE_APPROVAL_NOTIFY_URL."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

        async def receive(request: Request) -> JSONResponse:
            self.received.append(json.loads(await request.body()))
            return JSONResponse({"ok": True})

        self.app = Starlette(routes=[Route("/notify", receive, methods=["POST"])])


@asynccontextmanager
async def mcp_server(settings: Settings, database_url: str, clock: Clock) -> AsyncIterator[tuple[str, Runtime]]:
    """``serve --transport http`` on a loopback port (its ledger on the shared clock); stopped at the end."""
    runtime = build_runtime(settings, ledger=Ledger.from_url(database_url, clock=clock), clock=clock)
    if runtime.ledger.agent_for_token(token_digest(TOKEN)) is None:
        runtime.ledger.add_token("shopper", token_digest(TOKEN))
    app = build_http_app(settings, runtime=runtime)
    try:
        async with serving(app) as url:
            yield url, runtime
    finally:
        runtime.close()


@asynccontextmanager
async def agent(url: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30.0) as http:
        async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as c:
            yield c


async def emulator_state(base: str) -> dict[str, Any]:
    """``GET /_sandbox/state`` over HTTP (the emulator runs on this event loop: never a blocking call)."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{base}/_sandbox/state")
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_a_whole_purchase_over_a_loopback_emulator(tmp_path: Path, database_url: str) -> None:
    """Single-use 15.00 at mcc 5734 -> 3-D Secure purchase -> get_3ds_code -> settled -> closed once, the rest
    returned, ledger and reconcile agree; another category freezes a card; an expired card closes after a restart."""
    clock = Clock(time.time())
    notices = Notices()
    emulator_app = create_sandbox_app(clock=clock, tick_seconds=0.05)
    emulator: SandboxState = emulator_app.state.sandbox
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    async with serving(emulator_app) as emu, serving(notices.app) as notify:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            base_url=emu,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            state_dir=tmp_path / "state",
            database_url=database_url,
            policy_file=tmp_path / "policy.toml",
            approval_notify_url=f"{notify}/notify",
            reconcile_interval_seconds=3600,  # no reconcile round during the test: notifications drive it
        )
        async with mcp_server(settings, database_url, clock) as (url, rt), agent(url) as c:
            async with httpx.AsyncClient(timeout=10.0) as http:
                hook = {"webhook_url": f"{url}/webhooks/interlace"}
                (await http.post(f"{emu}/_sandbox/config", json=hook)).raise_for_status()

            # 1. A single-use card with just the price on it, for one merchant category.
            issued = await call(c, "issue_card", {"amount": "15.00", "request_id": "checkout-1", "single_use": True})
            card_id = issued["card"]["card_id"]
            assert issued["status"] == "completed" and issued["card"]["single_use"] is True
            controls = await rt.api.get_card_spend_controls(card_id)
            assert controls.mcc_allow == ["5734"]

            # 2. The purchase, with 3-D Secure: the code is notified first, over HTTP, to the server.
            bought = await call(
                c,
                "simulate_purchase",
                {"card_id": card_id, "amount": "12.34", "merchant": "Software Shop", "mcc": "5734", "three_ds": True},
            )
            assert bought["approved"] is True and bought["status"] == "PENDING"

            async def code() -> dict[str, Any] | None:
                result = await c.call_tool("get_3ds_code", {"card_id": card_id})
                return None if result.is_error else result.structured_content

            otp = await eventually(code)
            sent = emulator.webhooks_of("CARD.3DS.OTP")[0].resource_object
            assert (otp["code"], otp["merchant"], otp["amount"]) == (sent["otp"], "Software Shop", "12.34")
            assert emulator.webhooks_of("CARD.3DS.OTP")[0].delivered  # by HTTP, to /webhooks/interlace

            # 3. The capture settles (the card network's few seconds pass): the server closes the card, once.
            clock.advance(5)

            async def closed() -> dict[str, Any] | None:
                card = await call(c, "get_card", {"card_id": card_id})
                return card if card["card_status"] == "DELETED" else None

            card = await eventually(closed)
            assert card["closed_reason"].startswith("single-use card: closed by the server")
            state = await emulator_state(emu)
            assert state["cards"][card_id]["status"] == "DELETED"
            assert Decimal(state["infinity"][INFINITY_BALANCE_ID]) == SEED - Decimal("12.34")
            assert [m["amount"] for m in state["movements"] if m["kind"] == "transfer_out"] == ["2.66"]
            await check_cards(rt)  # one more look, as another round would: nothing moves again
            assert len([m for m in (await emulator_state(emu))["movements"] if m["kind"] == "transfer_out"]) == 1
            closes = [r for r in rt.audit.tail(300) if r.event == "card_auto_close"]
            assert [(r.actor, r.request_id) for r in closes] == [("server", f"auto-close:{card_id}")]

            # 4. Another category: declined at Interlace (its allow list) and the card frozen here.
            other = (await call(c, "issue_card", {"amount": "5.00", "request_id": "checkout-2"}))["card"]["card_id"]
            declined = await call(c, "simulate_purchase", {"card_id": other, "amount": "1.00", "mcc": "5812"})
            assert (declined["approved"], declined["decline_code"]) == (False, "1110")
            frozen = await call(c, "get_card", {"card_id": other})
            assert (frozen["card_status"], frozen["frozen_by"]) == ("FROZEN", "policy")
            assert (await refuse(c, "unfreeze_card", {"card_id": other})).startswith("[card_frozen]")
            notice = await eventually(lambda: anyio.to_thread.run_sync(lambda: notices.received))
            assert [n["event"] for n in notice] == ["card.frozen_by_policy"] and notice[0]["card_id"] == other

            # 5. A card that expires in 5 minutes; the server stops before then.
            expiring = await call(
                c, "issue_card", {"amount": "7.00", "request_id": "checkout-3", "expires_in_minutes": 5}
            )
            expiring_id = expiring["card"]["card_id"]
            report = await reconcile(rt)
            assert report.ok, report.differences

        clock.advance(6 * 60)  # while no server runs
        assert (await emulator_state(emu))["cards"][expiring_id]["status"] == "ACTIVE"
        async with mcp_server(settings, database_url, clock) as (url, rt), agent(url) as c:
            card = await call(c, "get_card", {"card_id": expiring_id})  # closed by the startup round
            state = await emulator_state(emu)
            report = await reconcile(rt)
            committed = rt.ledger.committed_total(rt.scope)
    assert card["card_status"] == "DELETED" and card["closed_reason"].startswith("expired")
    assert state["cards"][expiring_id]["status"] == "DELETED"
    # Spent: 12.34 at the merchant; the frozen card still holds its 5.00; everything else came back.
    assert Decimal(state["infinity"][INFINITY_BALANCE_ID]) == SEED - Decimal("12.34") - Decimal("5.00")
    assert report.ok, report.differences
    assert committed == Decimal("27.00")  # spend = what left the Infinity account for cards: 15 + 5 + 7


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_instances_on_postgresql_never_sweep_a_card_twice(tmp_path: Path, database_url: str) -> None:
    """Two server instances on one PostgreSQL database look at the same due cards at once, many times: every
    card is closed once, its rest returned once, one audit record each."""
    clock = Clock(time.time())
    emulator_app = create_sandbox_app(clock=clock)
    emulator: SandboxState = emulator_app.state.sandbox
    (tmp_path / "policy.toml").write_text('[defaults]\nmax_active_cards = 10\ndaily = "100.00"\n', encoding="utf-8")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path / "state",
        database_url=database_url,
        policy_file=tmp_path / "policy.toml",
        reconcile_interval_seconds=3600,
    )

    def instance() -> Runtime:
        return build_runtime(
            settings,
            ledger=Ledger.from_url(database_url, clock=clock),
            clock=clock,
            upstream_transport=httpx.ASGITransport(app=emulator_app),
            backoff=False,
        )

    first, second = instance(), instance()
    cards = 4
    try:
        async with open_runtime(first, background=True), open_runtime(second, background=True):
            async with Client(build_server(runtime=first)) as c:
                ids = []
                for n in range(cards):
                    issued = await call(
                        c, "issue_card", {"amount": "10.00", "request_id": f"i-{n}", "single_use": True}
                    )
                    ids.append(issued["card"]["card_id"])
                    await call(c, "simulate_purchase", {"card_id": ids[-1], "amount": f"{n + 1}.00"})
            await first.api.sandbox_settle()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(check_cards, first)
                    tg.start_soon(check_cards, second)
            await maintain(first, checkout=True)
            await maintain(second, checkout=True)
            report = await reconcile(second)
            auto = [r for r in first.ledger.completed_requests(first.scope) if r.key.request_id.startswith("auto-")]
            closes = [r for r in first.audit.tail(500) if r.event == "card_auto_close"]
            still_open = await first.store.read(requests.open_requests, first.scope)
    finally:
        first.close()
        second.close()
    snap = emulator.snapshot()
    unloads = sorted(m["amount"] for m in snap["movements"] if m["kind"] == "transfer_out")
    assert unloads == ["6.00", "7.00", "8.00", "9.00"]  # each card's rest, once
    assert all(snap["cards"][card_id]["status"] == "DELETED" for card_id in ids)
    assert Decimal(snap["infinity"][INFINITY_BALANCE_ID]) == SEED - Decimal("10.00")  # 1 + 2 + 3 + 4 spent
    assert sorted(r.key.request_id for r in auto) == sorted(f"auto-close:{i}" for i in ids)
    assert sorted(r.arguments["card_id"] for r in closes if r.arguments) == sorted(ids)
    assert still_open == [] and report.ok, report.differences
