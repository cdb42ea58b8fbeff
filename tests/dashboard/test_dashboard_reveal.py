"""Policy ``reveal = "human"``: the card is shown to a signed-in human on the dashboard, never to the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult

from dashboard.support import AGENT_TOKEN, POLICY, browser_like, csrf_of, in_process, make_app, runtime_of, sign_in
from helpers import Clock, ServerFactory, call, runtime, sandbox_of
from interlace_mcp.policy import Ledger, reveals
from interlace_mcp.sandbox import create_sandbox_app

pytestmark = pytest.mark.anyio
BASE = "http://127.0.0.1:8765"
HUMAN = POLICY + 'reveal = "human"\n'


async def test_the_agent_gets_a_link_and_only_a_signed_in_operator_sees_the_number_once(tmp_path: Path) -> None:
    """get_card reveal=true -> reveal_url, no number; sign-in -> confirm -> the number once; then 410; all audited."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox, policy=HUMAN, public_url=BASE)
    rt = runtime_of(app)
    async with in_process(app, BASE) as browser:
        agent_http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE, headers={"Authorization": f"Bearer {AGENT_TOKEN}"}
        )
        async with Client(streamable_http_client(f"{BASE}/mcp", http_client=agent_http)) as c:
            card_id = (await call(c, "issue_card", {"amount": "10.00", "request_id": "h-1"}))["card"]["card_id"]
            shown = await call(c, "get_card", {"card_id": card_id, "reveal": True})
        pan = sandbox_of(sandbox).cards[card_id].pan
        cvv = sandbox_of(sandbox).cards[card_id].cvv
        url = shown["reveal_url"]
        path = urlsplit(url).path
        assert url.startswith(f"{BASE}/dashboard/reveal/") and shown["card_number"] is None and shown["cvv"] is None
        assert pan not in json.dumps(shown)

        anonymous = await browser.get(path)
        assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/dashboard/login?next={path}"
        login = await browser.get(anonymous.headers["location"])
        assert f'name="next" value="{path}"' in login.text
        signed = await browser.post(
            "/dashboard/login", data={"token": "itl_op_test-operator-token-0123456789", "next": path}
        )
        assert signed.status_code == 303 and signed.headers["location"] == path
        confirm = await browser.get(path)
        assert confirm.status_code == 200 and "Show the card details" in confirm.text and pan not in confirm.text
        forged = await browser.post(path, data={"csrf": "wrong"})
        assert forged.status_code == 403
        page = await browser.post(path, data={"csrf": csrf_of(confirm.text)})
        again = await browser.post(path, data={"csrf": csrf_of(confirm.text)})
        reload = await browser.get(path)
    grouped = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    assert page.status_code == 200 and grouped in page.text and cvv in page.text
    assert page.headers["cache-control"] == "no-store"
    assert again.status_code == 410 and pan not in again.text
    assert reload.status_code == 410
    accesses = [r for r in rt.audit.tail(200) if r.event == "card_data_access"]
    assert [(r.tool, r.actor, r.outcome) for r in accesses] == [
        ("get_card", None, "reveal_url"),
        ("dashboard", "alice", "revealed_to_human"),
        ("dashboard", "alice", "refused:link_used_or_expired"),
    ]
    assert pan not in json.dumps([r.__dict__ for r in rt.audit.tail(200)])


async def test_the_sign_in_page_only_ever_returns_to_a_dashboard_page(tmp_path: Path) -> None:
    """next= is honoured for a dashboard page (a reveal link's, an approval's): anything else lands on the
    overview (no open redirect)."""
    app = make_app(tmp_path, create_sandbox_app(), policy=HUMAN)
    async with in_process(app, BASE) as browser, browser_like(app, BASE) as fresh:
        await sign_in(browser)
        elsewhere = await browser.get("/dashboard/login?next=https://evil.example/x")
        other = await browser.get("/dashboard/login?next=/dashboard/agents/x")
        posted = await fresh.post(
            "/dashboard/login", data={"token": "itl_op_test-operator-token-0123456789", "next": "//evil.example"}
        )
    assert elsewhere.headers["location"] == "/dashboard"
    assert other.headers["location"] == "/dashboard/agents/x"
    assert posted.headers["location"] == "/dashboard"


def test_a_link_works_once_and_not_after_it_expired(tmp_path: Path) -> None:
    """Taking a link is one conditional update: a second take, or one after five minutes, gets nothing."""
    clock = Clock()
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'l.sqlite3'}", clock=clock)
    try:
        store = ledger.store
        store.write_sync(reveals.create_link, "a" * 64, scope="s", agent="shopper", card_id="c-1")
        store.write_sync(reveals.create_link, "b" * 64, scope="s", agent="shopper", card_id="c-2")
        first = store.write_sync(reveals.take_link, "a" * 64, by="alice")
        second = store.write_sync(reveals.take_link, "a" * 64, by="bob")
        clock.advance(301)
        late = store.write_sync(reveals.take_link, "b" * 64, by="alice")
        unknown = store.write_sync(reveals.take_link, "c" * 64, by="alice")
    finally:
        ledger.close()
    assert first is not None and (first.card_id, first.used_by) == ("c-1", "alice")
    assert second is None and late is None and unknown is None


class Opener:
    """A client that can open URLs for its user (URL-mode elicitation): records and accepts."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params)
        return ElicitResult(action="accept")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_url_capable_client_is_asked_to_open_the_link(make_server: ServerFactory, mode: str) -> None:
    """Legacy sessions get a live URL-mode elicitation with the link; 2026-07-28 gets it inside an
    InputRequiredResult and the client's retry answers with that same link (one link, not two) -- either way
    the call succeeds and the number is nowhere."""
    opener = Opener()
    server = make_server(policy=HUMAN)
    async with Client(server, mode=mode, elicitation_callback=opener) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "u-1"}))["card"]["card_id"]
        shown = await call(c, "get_card", {"card_id": card_id, "reveal": True})
    assert shown["reveal_url"] and shown["card_number"] is None
    assert shown["reveal_url"].startswith("http://127.0.0.1:8767/dashboard/reveal/")  # no INTERLACE_PUBLIC_URL
    assert [(p.mode, p.url) for p in opener.asked] == [("url", shown["reveal_url"])]
    assert "operator" in opener.asked[0].message
    links = await runtime(server).store.read(lambda rx: rx.all("SELECT card_id, agent FROM reveal_links"))
    assert [(row["card_id"], row["agent"]) for row in links] == [(card_id, "default")]


async def test_a_2026_reveal_round_is_not_audited_as_a_pending_approval(make_server: ServerFactory) -> None:
    """The first 2026-07-28 round of get_card reveal=true asks the client to open the link: its tool_call record
    says so, not ``ok:pending_approval`` (no approval exists; an auditor must not look for one)."""
    server = make_server(policy=HUMAN)
    async with Client(server, mode="auto", elicitation_callback=Opener()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "u-1"}))["card"]["card_id"]
        await call(c, "get_card", {"card_id": card_id, "reveal": True})
    records = [r for r in runtime(server).audit.tail(50) if r.tool == "get_card" and r.event == "tool_call"]
    assert records and all(r.outcome != "ok:pending_approval" for r in records), [r.outcome for r in records]
