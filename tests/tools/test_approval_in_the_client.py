"""Issue 10, bullet 6: approval reached from the client, out of the agent's reach.

A client that declares URL-mode elicitation is asked to open the approval page (legacy era: a live
``elicitation/create``; 2026-07-28: inside an ``InputRequiredResult``); an operator signs in on the dashboard and
decides; the call that waited completes -- once -- or answers the refusal, or stays pending after the wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult
from starlette.applications import Starlette

from dashboard.support import AGENT_TOKEN, OPERATOR_TOKEN, csrf_of, in_process, make_app, runtime_of
from helpers import error_text, free_port, sandbox_of
from interlace_mcp.sandbox import PAYEE_BALANCE_ID, create_sandbox_app

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
BASE = "http://127.0.0.1:8765"
POLICY = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "25.00"\n'
    'transfer_payees = ["sandbox-payee"]\n'
)
ARGS = {"payee": "sandbox-payee", "amount": "40.00", "request_id": "big", "memo": "rent for <May>"}


class Browser:
    """The client's user: opens (accepts) each URL-mode request and records it; form questions are refused."""

    def __init__(self, action: str = "accept") -> None:
        self.action = action
        self.urls: list[str] = []
        self.messages: list[str] = []
        self.opened = anyio.Event()

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        assert params.mode == "url", params
        self.urls.append(params.url)
        self.messages.append(params.message)
        self.opened.set()
        return ElicitResult(action=self.action)  # type: ignore[arg-type]


class Progress:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")


def transfers(sandbox: Starlette) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(sandbox).snapshot()["movements"] if m["kind"] == "transfer_external"]


def build(tmp_path: Path, sandbox: Starlette, *, base: str = BASE, wait: int = 30) -> Starlette:
    return make_app(tmp_path, sandbox, policy=POLICY, public_url=base, approval_wait_seconds=wait)


async def operator_decides(http: httpx.AsyncClient, url: str, decision: str) -> str:
    """A human opens the approval URL: signs in (sent back to the page), reads it, and decides. Returns the page."""
    path = urlsplit(url).path
    first = await http.get(path)
    assert first.status_code == 303 and first.headers["location"].startswith("/dashboard/login?next=")
    login = await http.get(first.headers["location"])
    assert 'name="next"' in login.text
    signed = await http.post("/dashboard/login", data={"token": OPERATOR_TOKEN, "next": path})
    assert signed.status_code == 303 and signed.headers["location"] == path
    page = await http.get(path)
    assert page.status_code == 200
    done = await http.post(f"{path}/{decision}", data={"csrf": csrf_of(page.text), "back": "page"})
    assert done.status_code == 303 and done.headers["location"] == path
    return page.text


async def call_while(
    c: Client, args: dict[str, Any], browser: Browser, human: Any, progress: Progress | None = None
) -> CallToolResult:
    """Call create_transfer; once the client was asked to open the page, let ``human`` act; the call's result."""
    found: list[CallToolResult] = []

    async def agent() -> None:
        found.append(await c.call_tool("create_transfer", args, progress_callback=progress))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent)
            await browser.opened.wait()
            await human()
    return found[0]


@MODES
async def test_the_operator_approves_on_the_page_and_the_waiting_call_completes_once(tmp_path: Path, mode: str) -> None:
    """The client is asked to open the approval page; the operator signs in and approves; the same call completes
    with exactly one upstream movement, with progress notifications while it waited."""
    sandbox = create_sandbox_app()
    app = build(tmp_path, sandbox)
    browser, progress = Browser(), Progress()
    pages: list[str] = []
    async with in_process(app) as http:
        async with Client(app.state.mcp_server, mode=mode, elicitation_callback=browser) as c:

            async def approve() -> None:
                pages.append(await operator_decides(http, browser.urls[0], "approve"))

            result = await call_while(c, ARGS, browser, approve, progress)
            replay = await c.call_tool("create_transfer", ARGS)
    assert not result.is_error, result.content
    done = result.structured_content
    assert done is not None and done["status"] == "completed" and done["amount"] == "40.00"
    assert replay.structured_content is not None and replay.structured_content["replayed"] is True
    assert len(transfers(sandbox)) == 1
    assert sandbox_of(sandbox).balances[PAYEE_BALANCE_ID].available == Decimal("40.00")
    approval_id = browser.urls[0].rsplit("/", 1)[1]
    assert browser.urls == [f"{BASE}/dashboard/approvals/{approval_id}"]
    assert "create_transfer 40.00 USD" in browser.messages[0] and "signed-in operator" in browser.messages[0]
    assert progress.messages and approval_id in progress.messages[0]
    page = pages[0]
    assert "payee &quot;sandbox-payee&quot;" in page and "&lt;May&gt;" in page and "<May>" not in page  # escaped memo
    assert "written by the agent: untrusted" in page and "above this agent&#x27;s approval threshold" in page
    assert "0.00 USD spent, 40.00 reserved (this request included)" in page
    rt = runtime_of(app)
    decided = rt.ledger.get_approval(approval_id)
    assert decided is not None and decided.decided_by == "alice" and decided.status == "used"


@MODES
async def test_the_operator_denies_and_the_waiting_call_is_refused(tmp_path: Path, mode: str) -> None:
    """Deny on the page: the waiting call answers [approval_denied]; nothing moved, nothing stays reserved."""
    sandbox = create_sandbox_app()
    app = build(tmp_path, sandbox)
    browser = Browser()
    async with in_process(app) as http:
        async with Client(app.state.mcp_server, mode=mode, elicitation_callback=browser) as c:

            async def deny() -> None:
                await operator_decides(http, browser.urls[0], "deny")

            result = await call_while(c, ARGS, browser, deny)
    assert error_text(result).startswith("[approval_denied]") and "alice" in error_text(result)
    assert transfers(sandbox) == []
    rt = runtime_of(app)
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")


@MODES
async def test_without_a_decision_in_time_the_call_answers_pending_with_the_url(tmp_path: Path, mode: str) -> None:
    """INTERLACE_APPROVAL_WAIT_SECONDS=1 and nobody decides: pending_approval with approval_url, still reserved."""
    sandbox = create_sandbox_app()
    app = build(tmp_path, sandbox, wait=1)
    browser = Browser()
    async with in_process(app):
        async with Client(app.state.mcp_server, mode=mode, elicitation_callback=browser) as c:
            with anyio.fail_after(30):
                result = await c.call_tool("create_transfer", ARGS)
    pending = result.structured_content
    assert pending is not None and pending["status"] == "pending_approval", result.content
    assert pending["approval_url"] == browser.urls[0]
    assert pending["message"].startswith("Waited 1 s in this call without a decision")
    assert transfers(sandbox) == []


@MODES
@pytest.mark.parametrize("client", ["no elicitation", "declines"])
async def test_a_client_that_cannot_or_will_not_open_the_page_gets_pending_with_the_url(
    tmp_path: Path, mode: str, client: str
) -> None:
    """No URL-mode elicitation (or the user declines to open it): pending_approval with approval_url at once."""
    app = build(tmp_path, create_sandbox_app())
    browser = Browser("decline")
    callback = browser if client == "declines" else None
    async with in_process(app):
        async with Client(app.state.mcp_server, mode=mode, elicitation_callback=callback) as c:
            result = await c.call_tool("create_transfer", ARGS)
    pending = result.structured_content
    assert pending is not None and pending["status"] == "pending_approval"
    assert pending["approval_url"] == f"{BASE}/dashboard/approvals/{pending['approval_id']}"
    assert browser.urls == ([pending["approval_url"]] if client == "declines" else [])


async def test_wait_zero_never_asks_the_client_to_open_anything(tmp_path: Path) -> None:
    """INTERLACE_APPROVAL_WAIT_SECONDS=0: pending_approval with approval_url; the client is not asked."""
    app = build(tmp_path, create_sandbox_app(), wait=0)
    browser = Browser()
    async with in_process(app):
        async with Client(app.state.mcp_server, elicitation_callback=browser) as c:
            result = await c.call_tool("create_transfer", ARGS)
    assert result.structured_content is not None and result.structured_content["status"] == "pending_approval"
    assert browser.urls == []


@MODES
async def test_approving_while_the_agent_also_retries_moves_the_money_once(tmp_path: Path, mode: str) -> None:
    """The operator approves while the waiting call waits AND the agent retries on another connection: the
    waiting call completes, the racing retries answer pending / in progress / completed (whichever moment they
    hit), a retry after it all replays the completion, and exactly one transfer reached Interlace."""
    sandbox = create_sandbox_app()
    app = build(tmp_path, sandbox)
    browser = Browser()
    results: list[CallToolResult] = []
    async with in_process(app) as http:
        server = app.state.mcp_server
        async with (
            Client(server, mode=mode, elicitation_callback=browser) as waiting,
            Client(server, mode=mode) as retrying,
        ):

            async def approve_and_retry() -> None:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(operator_decides, http, browser.urls[0], "approve")
                    results.append(await retrying.call_tool("create_transfer", ARGS))
                # one more retry after the decision, racing the waiting call's own execution
                results.append(await retrying.call_tool("create_transfer", ARGS))

            waited = await call_while(waiting, ARGS, browser, approve_and_retry)
            final = await retrying.call_tool("create_transfer", ARGS)
    assert waited.structured_content is not None and waited.structured_content["status"] == "completed", waited
    statuses = [r.structured_content["status"] for r in results if r.structured_content]
    assert len(statuses) == 2 and set(statuses) <= {"completed", "pending_approval", "in_progress"}, statuses
    assert final.structured_content is not None and final.structured_content["status"] == "completed"
    assert final.structured_content["replayed"] is True
    assert len(transfers(sandbox)) == 1
    assert sandbox_of(sandbox).balances[PAYEE_BALANCE_ID].available == Decimal("40.00")


@asynccontextmanager
async def served(app: Starlette, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(15):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@MODES
async def test_over_real_http_the_agent_is_asked_and_the_operator_approves_in_a_browser(
    tmp_path: Path, mode: str
) -> None:
    """Streamable HTTP on a loopback socket (legacy elicitation needs one), the agent's bearer token, a real
    browser-like client for the operator: the waiting call completes once."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sandbox = create_sandbox_app()
    app = build(tmp_path, sandbox, base=base)
    browser = Browser()
    async with served(app, port):
        agent_http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {AGENT_TOKEN}"}, timeout=60)
        async with (
            agent_http,
            Client(
                streamable_http_client(f"{base}/mcp", http_client=agent_http), mode=mode, elicitation_callback=browser
            ) as c,
            httpx.AsyncClient(base_url=base) as operator,
        ):

            async def approve() -> None:
                await operator_decides(operator, browser.urls[0], "approve")

            result = await call_while(c, ARGS, browser, approve)
    assert result.structured_content is not None and result.structured_content["status"] == "completed"
    assert len(transfers(sandbox)) == 1
