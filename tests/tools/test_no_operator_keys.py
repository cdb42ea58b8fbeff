"""Issue 10, bullet 1: no result, question, URL or progress message an agent receives hands it an operator's
keys. This test drives every money flow once and scans all of it; conftest's ``agent_view`` does the same for
every official-client call of the whole run."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from helpers import FORBIDDEN_FOR_AGENTS, AgentView, Clock, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import decide_approval
from interlace_mcp.policy import token_digest

pytestmark = pytest.mark.anyio
OPERATOR_TOKEN = "itl_op_never-for-agents-0123456789"
POLICY = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "200.00"\nmax_active_cards = 5\nconfirm_above = "10.00"\n'
    'approval_above = "25.00"\napproval_daily_above = "150.00"\ntransfer_payees = ["sandbox-payee"]\n'
)


class Everything:
    """The client's user: answers form questions yes, opens URL-mode pages; remembers every text it was shown."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.opened = anyio.Event()

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.texts.append(params.model_dump_json())
        if params.mode == "url":
            self.opened.set()
            return ElicitResult(action="accept")
        return ElicitResult(action="accept", content={"confirm": True})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_no_money_flow_tells_an_agent_how_to_approve_or_shows_an_operator_token(
    make_server: ServerFactory, sandbox_app: Any, clock: Clock, agent_view: AgentView, mode: str
) -> None:
    """Issue, top-up, withdraw, close, transfer; dry runs; refusals; pending, approved, denied, expired and
    in_progress requests; the confirmation question; the approval page's URL request and progress."""
    server = make_server(policy=POLICY, public_url="https://ops.example.com", approval_wait_seconds=30)
    rt = runtime(server)
    rt.ledger.add_operator_token("alice", token_digest(OPERATOR_TOKEN))
    user = Everything()
    texts: list[str] = []
    before = dict(agent_view.seen)
    leaks = len(agent_view.leaks)

    async def progress(done: float, total: float | None, message: str | None) -> None:
        texts.append(message or "")

    async with Client(server, mode=mode, elicitation_callback=user) as c:

        async def any_result(tool: str, args: dict[str, Any]) -> None:
            result = await c.call_tool(tool, args, progress_callback=progress)
            texts.append(result.model_dump_json())

        card = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i1", "label": "ads"}))["card"]
        await any_result("top_up_card", {"card_id": card["card_id"], "amount": "12.00", "request_id": "t1"})  # asked
        await any_result("withdraw_from_card", {"card_id": card["card_id"], "amount": "1.00", "request_id": "w1"})
        await any_result("create_transfer", {"payee": "sandbox-payee", "amount": "3.00", "request_id": "x1"})
        for dry in ("1.00", "30.00", "500.00"):  # allow, needs_approval, deny
            await any_result("issue_card", {"amount": dry, "request_id": f"d{dry}", "dry_run": True})
        await any_result("issue_card", {"amount": "500.00", "request_id": "too-big"})  # refused
        await any_result("create_transfer", {"payee": "nobody", "amount": "3.00", "request_id": "x2"})  # refused
        # Pending with a 1-second wait for the client: pending_approval, then expired.
        rt.settings.approval_wait_seconds = 1
        late = {"payee": "sandbox-payee", "amount": "40.00", "request_id": "late", "memo": "pay it"}
        await any_result("create_transfer", late)
        await any_result("get_request_status", {"request_id": "late"})
        await any_result("get_spend_status", {})
        # Denied: decided by the operator meanwhile.
        rt.settings.approval_wait_seconds = 0
        deny = {"amount": "30.00", "request_id": "deny-me"}
        pending = await call(c, "issue_card", deny)
        rt.ledger.decide(pending["approval_id"], approve=False, by="alice", reason="no")
        await any_result("issue_card", deny)
        await any_result("get_request_status", {"request_id": "deny-me"})
        # Approved while the call waits on the page (progress messages meanwhile), then replayed.
        rt.settings.approval_wait_seconds = 30
        user.opened = anyio.Event()
        big = {"payee": "sandbox-payee", "amount": "35.00", "request_id": "big"}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(any_result, "create_transfer", big)
                await user.opened.wait()
                approval = next(a for a in rt.ledger.list_approvals() if a.request_id == "big")
                await decide_approval(rt, approval.id, approve=True, by="alice", reason=None)
        await any_result("create_transfer", big)
        # Expired.
        clock.advance(16 * 60)
        await any_result("create_transfer", late)
        # In progress: Interlace answers 502 to every attempt.
        sandbox_of(sandbox_app).add_fault("/open-api/v3/cards/transfer-in", "error", times=4, status=502)
        await any_result("top_up_card", {"card_id": card["card_id"], "amount": "2.00", "request_id": "t2"})
        await any_result("get_request_status", {"request_id": "t2"})
        await any_result("close_card", {"card_id": card["card_id"], "request_id": "c1"})
        await refuse(c, "close_card", {"card_id": "nope", "request_id": "c2"})
    everything = texts + user.texts
    joined = "\n".join(everything)
    for status in ("completed", "pending_approval", "in_progress", "dry_run", "approval_denied", "approval_expired"):
        assert status in joined, status
    assert any('"mode":"url"' in t for t in user.texts) and any('"mode":"form"' in t for t in user.texts)
    assert any("waiting for a human" in t for t in texts)
    for text in everything:
        assert not any(bad in text for bad in FORBIDDEN_FOR_AGENTS), text
        assert OPERATOR_TOKEN not in text
    assert len(agent_view.leaks) == leaks
    assert agent_view.seen.get("tool result", 0) > before.get("tool result", 0)
    assert agent_view.seen.get("input request", 0) > before.get("input request", 0)
