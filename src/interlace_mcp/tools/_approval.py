"""A call that needs a human's approval: where the client can open URLs, show the human the approval page
and wait for the decision in the same call (DESIGN section 13, "Human approval").

Only a signed-in operator can decide on that page; the call never learns how, it only sees the outcome.
Approved within ``INTERLACE_APPROVAL_WAIT_SECONDS``: the request executes in this call (exactly once --
the ledger's lease and the in-flight registry hold even if the agent retries meanwhile). Denied or
expired: the stored refusal. Still undecided, or the client could not show the page: ``pending_approval``
with ``approval_url``, as any client gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context

from interlace_mcp.operations import MoneyMovement, quoted_agent_text, what_text
from interlace_mcp.policy import Approval, approvals
from interlace_mcp.tools import _human as human
from interlace_mcp.tools._caller import Caller

__all__ = ["await_human"]


async def await_human(
    caller: Caller,
    ctx: Context[Any, Any],
    pending: MoneyMovement,
    rerun: Callable[[], Awaitable[MoneyMovement]],
) -> MoneyMovement:
    """``pending`` as the client can best get it: decided and run in this call, or still pending."""
    rt = caller.runtime
    approval_id, url = pending.approval_id, pending.approval_url
    wait = float(rt.settings.approval_wait_seconds)
    if approval_id is None or url is None or wait <= 0 or not human.can_open_urls(ctx):
        return pending
    approval = await rt.store.read(approvals.get, approval_id)
    if approval is None or approval.status != "pending":
        return pending  # approved already (an earlier call will run it) or settled: the runner said so
    key = f"approval:{approval_id}"
    answer = await human.ask_to_open(ctx, key=key, message=_page_prompt(caller.agent, approval), url=url)
    if answer != "accept":
        return pending

    async def decided() -> str | None:
        found = await rt.store.read(approvals.get, approval_id)
        if found is None or found.status != "pending" or found.expires_at <= rt.store.now():
            return found.status if found is not None else "gone"
        return None

    def waiting(left: float) -> str:
        return f"waiting for a human to approve or deny {approval_id} on the approval page ({left:.0f} s left)"

    outcome = await human.wait_for(decided, seconds=wait, ctx=ctx, message=waiting, wakeups=rt.wakeups, key=approval_id)
    await human.done(ctx, key)
    if outcome is None:
        note = f"Waited {wait:.0f} s in this call without a decision. "
        return pending.model_copy(update={"message": note + (pending.message or "")})
    # Decided: the runner does the rest -- executes an approved request (once), or answers the stored
    # refusal of a denied or expired one.
    return await rerun()


def _page_prompt(agent: str, approval: Approval) -> str:
    """What the client shows its user next to the approval page's URL."""
    text = f"Agent {agent!r} asks to {what_text({**approval.details, 'tool': approval.tool})}"
    quoted = quoted_agent_text(approval.details)
    if quoted:
        text += f"; {quoted}"
    return text + ". A signed-in operator approves or denies it on this page."
