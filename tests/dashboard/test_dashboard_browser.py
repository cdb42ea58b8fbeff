"""End to end in a real browser: Playwright drives Debian's headless Chromium against the HTTP server on a
loopback port, while an agent calls tools through the official MCP client with its bearer token."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from dashboard.support import AGENT_TOKEN, OPERATOR_TOKEN, make_app, runtime_of
from helpers import call, refuse, sandbox_of, serving
from interlace_mcp.sandbox import create_sandbox_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (pip install playwright)")
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium; Playwright's own browser download is not used)",
        allow_module_level=True,
    )


@asynccontextmanager
async def browser_page(base: str) -> AsyncIterator[Any]:
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            yield page
            await context.close()
        finally:
            await browser.close()


@asynccontextmanager
async def agent_client(base: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {AGENT_TOKEN}"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
            yield c


def loads(sandbox: Any) -> list[str]:
    return [
        m["amount"] for m in sandbox_of(sandbox).snapshot()["movements"] if m["kind"] in ("card_issue", "transfer_in")
    ]


async def test_operator_approves_denies_and_freezes_in_the_browser(tmp_path: Path) -> None:
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)  # approval_above 25.00
    rt = runtime_of(app)
    expect = async_api.expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with serving(app) as base, browser_page(base) as page, agent_client(base) as agent:
        # Signed out, every page leads to the login form; an agent's token does not open it.
        await page.goto("/dashboard/approvals")
        assert page.url.endswith("/dashboard/login")
        await page.get_by_label("Operator token").fill(AGENT_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("not a valid operator token")
        await page.get_by_label("Operator token").fill(OPERATOR_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        cookie = next(c for c in await page.context.cookies() if c["name"] == "interlace_dashboard")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"

        small = await call(agent, "issue_card", {"amount": "10.00", "request_id": "small-1"})
        card_id = small["card"]["card_id"]

        # The approvals page is open before the request exists: it must appear without a reload.
        await page.get_by_role("link", name="Approvals").click()
        await expect(page.get_by_text("No pending approvals.")).to_be_visible()
        await page.evaluate("window.__sameDocument = true")
        pending = await call(agent, "issue_card", {"amount": "30.00", "request_id": "big-1"})
        assert pending["status"] == "pending_approval" and loads(sandbox) == ["10.00"]
        row = page.locator(f"#approval-{pending['approval_id']}")
        await expect(row).to_be_visible(timeout=10_000)
        await expect(row).to_contain_text("30.00 USD")
        await expect(page.locator("#pending-count")).to_have_text("1")
        assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        approvals_png = shots / "approvals.png"
        await page.screenshot(path=str(approvals_png), full_page=True)

        await row.get_by_role("button", name="Approve").click()
        await expect(page.get_by_role("status").filter(has_text=f"{pending['approval_id']} approved")).to_be_visible()
        done = await call(agent, "issue_card", {"amount": "30.00", "request_id": "big-1"})
        replay = await call(agent, "issue_card", {"amount": "30.00", "request_id": "big-1"})
        assert done["status"] == "completed" and replay["replayed"] is True
        assert loads(sandbox) == ["10.00", "30.00"]  # executed exactly once

        # A second request, denied with a reason, appears live too; its retry is refused.
        second = await call(agent, "top_up_card", {"card_id": card_id, "amount": "40.00", "request_id": "big-2"})
        row2 = page.locator(f"#approval-{second['approval_id']}")
        await expect(row2).to_be_visible(timeout=10_000)
        await row2.get_by_label(f"Reason for {second['approval_id']} (optional)").fill("not in budget")
        await row2.get_by_role("button", name="Deny").click()
        await expect(page.get_by_text("No pending approvals.")).to_be_visible()
        denied = await refuse(agent, "top_up_card", {"card_id": card_id, "amount": "40.00", "request_id": "big-2"})
        assert denied.startswith("[approval_denied]") and "not in budget" in denied and "alice" in denied
        assert loads(sandbox) == ["10.00", "30.00"]

        await page.get_by_role("link", name="Overview").click()
        await expect(page.get_by_role("heading", name="shopper")).to_be_visible()
        await expect(page.locator("svg[aria-label^='day: 40.00 spent']")).to_have_count(1)
        overview_png = shots / "overview.png"
        await page.screenshot(path=str(overview_png), full_page=True)

        # The kill switch, keyboard only: focus the button and press Enter.
        await page.get_by_role("link", name="shopper").first.click()
        await expect(page.get_by_role("heading", name="Agent shopper")).to_be_visible()
        await page.get_by_label("Reason (optional, audited)").fill("suspicious activity")
        await page.get_by_role("button", name="Freeze agent shopper").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status").filter(has_text="agent shopper frozen")).to_be_visible()
        await expect(page.get_by_role("button", name="Unfreeze agent shopper")).to_be_visible()
        agent_png = shots / "agent.png"
        await page.screenshot(path=str(agent_png), full_page=True)
        statuses = {cid: c["status"] for cid, c in sandbox_of(sandbox).snapshot()["cards"].items()}
        assert statuses and set(statuses.values()) == {"FROZEN"}
        frozen = await refuse(agent, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "after"})
        assert frozen.startswith("[agent_frozen]")
        assert loads(sandbox) == ["10.00", "30.00"]
        page_text = await page.content()
        assert sandbox_of(sandbox).cards[card_id].pan not in page_text

    decisions = [(r.event, r.decision, r.actor) for r in rt.audit.tail(200) if r.actor == "alice"]
    assert ("approval_decision", "approved", "alice") in decisions
    assert ("approval_decision", "denied", "alice") in decisions
    assert ("agent_frozen", None, "alice") in decisions
    for shot in (overview_png, approvals_png, agent_png):
        assert shot.stat().st_size > 5_000
        print(f"screenshot: {shot}")
