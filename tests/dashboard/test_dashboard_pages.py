"""Dashboard pages in-process: what they show, escaping of everything, approvals and the kill switch by form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from dashboard.support import AGENT_TOKEN, in_process, make_app, runtime_of, sign_in
from helpers import call, refuse, sandbox_of
from interlace_mcp.sandbox import create_sandbox_app

pytestmark = pytest.mark.anyio

EVIL = "<img src=x onerror=alert(1)>\u202e<b>"  # fits a card label (50 chars)


@asynccontextmanager
async def agent(app: Starlette) -> AsyncIterator[Client]:
    """The agent `shopper` through the official client, over streamable HTTP in-process."""
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://127.0.0.1:8765",
        headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
    )
    async with http, Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as c:
        yield c


def assert_no_raw_markup(page: str) -> None:
    """Nothing hostile got through unescaped: the only <script> is our nonce'd one, no injected <img>."""
    assert "<img" not in page and "<b>" not in page
    assert len(re.findall(r"<script\b", page)) <= 1
    assert "\u202e" not in page


async def test_agent_page_shows_masked_cards_sanitized_transactions_and_audit(tmp_path: Path) -> None:
    """Last four only (never the PAN or CVV); merchant and decline text sanitized and escaped; audit records."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    async with in_process(app) as http:
        async with agent(app) as c:
            issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "i-1", "label": EVIL})
            card_id = issued["card"]["card_id"]
            await call(c, "simulate_purchase", {"card_id": card_id, "amount": "3.00", "merchant": "Coffee <b>Bar</b>"})
            await c.call_tool("simulate_purchase", {"card_id": card_id, "amount": "500.00", "merchant": EVIL})
        await sign_in(http)
        page = (await http.get("/dashboard/agents/shopper")).text
        unknown = await http.get("/dashboard/agents/nobody")
    card = sandbox_of(sandbox).cards[card_id]
    assert card.pan not in page
    assert f"•••• {card.pan[-4:]}" in page
    assert "Coffee &lt;b&gt;Bar&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the card label and the declined merchant, escaped
    assert "declined" in page and "balance is lower than the amount" in page  # the decline in plain words
    assert_no_raw_markup(page)
    assert "issue_card" in page and "Kill switch" in page  # audit records and the switch
    assert unknown.status_code == 404


async def test_overview_shows_every_agent_with_window_bars_and_the_daily_chart(tmp_path: Path) -> None:
    """One section per agent with day/week/month/lifetime bars, frozen state, and a 30-day SVG chart."""
    app = make_app(tmp_path, create_sandbox_app())
    async with in_process(app) as http:
        async with agent(app) as c:
            await call(c, "issue_card", {"amount": "12.00", "request_id": "i-1"})
            await call(c, "issue_card", {"amount": "30.00", "request_id": "big"})  # pending: reserved
        await sign_in(http)
        page = (await http.get("/dashboard")).text
    rt = runtime_of(app)
    days = rt.ledger.daily_spend(rt.scope, 30)
    assert len(days) == 30 and days[-1][1] == Decimal("12.00")
    assert 'id="agent-shopper"' in page and "badge-active" in page
    for window in ("day", "week", "month", "lifetime"):
        assert f'aria-label="{window}: 12.00 spent, 30.00 reserved' in page
    assert (
        "Committed spend per day, last 30 days" in page and page.count("<rect") == 30 + 2 * 3 + 2
    )  # 30 days; day and month limited, week and lifetime not
    assert f"{days[-1][0]}: 12.00 USD" in page
    assert "1 pending approval" in page


async def test_approve_and_deny_through_the_pages_drive_the_agent_retry(tmp_path: Path) -> None:
    """Approve -> the agent's retry runs once; deny with a reason -> the retry is refused [approval_denied]."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    async with in_process(app) as http:
        csrf = await sign_in(http)
        async with agent(app) as c:
            pending = await call(c, "issue_card", {"amount": "30.00", "request_id": "big-1"})
            live = (await http.get("/dashboard/approvals/live")).text
            assert f'id="approval-{pending["approval_id"]}"' in live and 'data-count="1"' in live
            assert (await http.get("/dashboard/api/pending")).json()["count"] == 1
            await http.post(f"/dashboard/approvals/{pending['approval_id']}/approve", data={"csrf": csrf})
            done = await call(c, "issue_card", {"amount": "30.00", "request_id": "big-1"})
            again = await call(c, "issue_card", {"amount": "30.00", "request_id": "big-1"})
            second = await call(
                c, "top_up_card", {"card_id": done["card"]["card_id"], "amount": "40.00", "request_id": "big-2"}
            )
            await http.post(
                f"/dashboard/approvals/{second['approval_id']}/deny", data={"csrf": csrf, "reason": "not in budget"}
            )
            denied = await refuse(
                c, "top_up_card", {"card_id": done["card"]["card_id"], "amount": "40.00", "request_id": "big-2"}
            )
            twice = await http.post(f"/dashboard/approvals/{second['approval_id']}/approve", data={"csrf": csrf})
            page = (await http.get(twice.headers["location"])).text
    loads = [m for m in sandbox_of(sandbox).snapshot()["movements"] if m["kind"] in ("card_issue", "transfer_in")]
    assert done["status"] == "completed" and again["replayed"] is True
    assert [m["amount"] for m in loads] == ["30.00"]
    assert denied.startswith("[approval_denied]") and "alice" in denied and "not in budget" in denied
    assert "already denied" in page and 'role="alert"' in page
    assert "No pending approvals." in page


async def test_kill_switch_form_freezes_upstream_and_unfreezes(tmp_path: Path) -> None:
    """Freeze: every card FROZEN at the emulator, money tools refused [agent_frozen]; unfreeze undoes it."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    rt = runtime_of(app)
    async with in_process(app) as http:
        csrf = await sign_in(http)
        async with agent(app) as c:
            card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
            frozen = await http.post("/dashboard/agents/shopper/freeze", data={"csrf": csrf, "reason": "<b>leak</b>"})
            page = (await http.get(frozen.headers["location"])).text
            refused = await refuse(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
            status_frozen = sandbox_of(sandbox).snapshot()["cards"][card_id]["status"]
            await http.post("/dashboard/agents/shopper/unfreeze", data={"csrf": csrf})
            after = await call(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t2"})
    assert frozen.status_code == 303 and frozen.headers["location"] == "/dashboard/agents/shopper"
    assert status_frozen == "FROZEN" and refused.startswith("[agent_frozen]")
    assert "agent shopper frozen: 1 of 1 card(s) frozen at Interlace" in page and "&lt;b&gt;leak&lt;/b&gt;" in page
    assert "Unfreeze agent shopper" in page
    assert after["status"] == "completed"
    events = [(r.event, r.actor) for r in rt.audit.tail(100, agent="shopper") if r.event.startswith("agent_")]
    assert events == [("agent_frozen", "alice"), ("agent_unfrozen", "alice")]


async def test_summaries_from_the_ledger_are_escaped_everywhere(tmp_path: Path) -> None:
    """An approval summary with markup is text on the approvals page and in the live fragment."""
    policy = (
        '[defaults]\napproval_above = "25.00"\nper_transaction = "50.00"\ndaily = "100.00"\n'
        'transfer_payees = ["sandbox-payee"]\n'
    )
    app = make_app(tmp_path, create_sandbox_app(), policy=policy)
    async with in_process(app) as http:
        await sign_in(http)
        async with agent(app) as c:
            await call(
                c, "create_transfer", {"payee": "sandbox-payee", "amount": "30.00", "request_id": "x", "memo": EVIL}
            )
            await call(c, "issue_card", {"amount": "26.00", "request_id": "y", "label": EVIL})
        pages = [(await http.get(p)).text for p in ("/dashboard/approvals", "/dashboard/approvals/live")]
    for page in pages:
        assert page.count("approval-apr_") == 2
        assert_no_raw_markup(page)
