"""In-band confirmation for the middle band (``confirm_above`` < amount <= ``approval_above``).

Where the client supports elicitation, the human at the client is asked a yes/no question (a boolean
form; never card data). Above ``approval_above`` only out-of-band approval counts, never this. A client
that cannot be asked falls back to out-of-band approval: nothing in the band is auto-approved.

The resolver runs before the tool body (twice on 2026-07-28 connections), so it has no side effects:
it reads the policy and, to avoid asking again on a replay, whether the request is already known.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
)
from pydantic import BaseModel, Field

from interlace_mcp.money import format_amount
from interlace_mcp.policy import AgentPolicy, RequestKey
from interlace_mcp.tools._errors import Refusal
from interlace_mcp.tools._runtime import runtime_of

__all__ = ["Confirm", "Confirmation", "confirmation_for", "needs_out_of_band"]


class Confirm(BaseModel):
    """The question's form: one boolean."""

    confirm: bool = Field(description="Yes: move this money now")


def in_band(policy: AgentPolicy, amount: Decimal) -> bool:
    if policy.confirm_above is None or amount <= policy.confirm_above:
        return False
    return policy.approval_above is None or amount <= policy.approval_above


def _client_can_be_asked(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None


def confirmation_for(tool: str) -> Callable[..., Awaitable[Elicit[Confirm] | None]]:
    """A resolver for ``tool``: asks only for a new, non-dry-run request in the band."""

    async def ask(
        amount: Decimal, request_id: str, ctx: Context[Any, Any], dry_run: bool = False
    ) -> Elicit[Confirm] | None:
        rt = runtime_of(ctx)
        agent = rt.agent_of(ctx)
        policy = rt.policies.for_agent(agent)
        if dry_run or not in_band(policy, amount) or not _client_can_be_asked(ctx):
            return None
        if rt.ledger.peek_request(RequestKey(rt.scope, agent, tool, request_id)) is not None:
            return None  # a retry of a known request: its stored state decides
        return Elicit(
            f"Agent {agent!r} asks to {tool.replace('_', ' ')} {format_amount(amount)} {policy.currency} "
            f"(request {request_id}). Allow it?",
            Confirm,
        )

    ask.__name__ = f"confirm_{tool}"
    return ask


Confirmation = ElicitationResult[Confirm]


def needs_out_of_band(
    ctx: Context[Any, Any], tool: str, amount: Decimal, dry_run: bool, confirmation: Confirmation | None
) -> bool:
    """After the resolver: True when the band applies but the client could not be asked (-> approval).

    Raises a ``confirmation_declined`` refusal when the human said no (or cancelled).
    """
    rt = runtime_of(ctx)
    policy = rt.policies.for_agent(rt.agent_of(ctx))
    if dry_run or not in_band(policy, amount):
        return False
    if isinstance(confirmation, AcceptedElicitation):
        data = confirmation.data
        if data is None:  # not asked: a known request, or a client without elicitation
            return not _client_can_be_asked(ctx)
        if isinstance(data, Confirm) and data.confirm:
            return False
    raise Refusal.one(
        "confirmation_declined",
        f"the user did not confirm {tool} of {format_amount(amount)} {policy.currency} in the client; nothing moved",
    )
