"""In-band confirmation for the middle band (``confirm_above`` < amount <= ``approval_above``).

Where the client supports elicitation, the human at the client is asked a yes/no question (a boolean
form; never card data). Above ``approval_above`` only out-of-band approval counts, never this. A client
that cannot be asked falls back to out-of-band approval: nothing in the band is auto-approved.

The question's resolver depends on the money tool's caller resolver, so it sees every check's verdict:
a call policy refuses, a dry run, or a retry of a known request is never asked about. Like every
resolver it has no side effects (on 2026-07-28 it runs twice per call).
"""

# No ``from __future__ import annotations`` here: the question's resolver is built per tool at import,
# and the SDK reads its annotations (which name that tool's caller resolver) as objects.

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from pydantic import BaseModel, Field

from interlace_mcp.money import format_amount
from interlace_mcp.operations import Refusal, day_text, quoted_agent_text, what_text
from interlace_mcp.policy import AgentPolicy
from interlace_mcp.tools._caller import Caller

__all__ = ["Confirm", "Confirmation", "confirmation_for", "needs_out_of_band", "question", "skipped_for_approval"]


class Confirm(BaseModel):
    """The question's form: one boolean."""

    confirm: bool = Field(description="Yes: move this money now")


Confirmation = ElicitationResult[Confirm]


def in_band(policy: AgentPolicy, amount: Decimal) -> bool:
    if policy.confirm_above is None or amount <= policy.confirm_above:
        return False
    return policy.approval_above is None or amount <= policy.approval_above


def _client_can_be_asked(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None


def _should_ask(caller: Caller) -> bool:
    op = caller.operation
    if op is None or caller.refusal is not None or caller.gate or caller.dry_run or caller.known is not None:
        return False  # refused, a dry run, or a retry of a known request: its stored state decides
    if caller.approval:
        return False  # it needs a human's approval anyway (e.g. approval_daily_above): never asked twice
    return op.spec.needs_consent and in_band(caller.policy, op.governed)


def skipped_for_approval(caller: Caller) -> bool:
    """A call in the band that was not asked because it looked like needing approval anyway (read before the
    reservation): the runner makes sure a human approves it even if the ledger then finds no approval needed."""
    op = caller.operation
    if op is None or caller.refusal is not None or caller.gate or caller.dry_run or caller.known is not None:
        return False
    return bool(caller.approval) and op.spec.needs_consent and in_band(caller.policy, op.governed)


def question(caller: Caller) -> str:
    """The confirmation question: who asks for what (tool, amount, payee or card), the agent's memo or label
    as quoted untrusted text, and what remains of the day after it."""
    op = caller.operation
    assert op is not None
    details = op.approval_details()
    text = f"Agent {caller.agent!r} asks to {what_text(details)}"
    quoted = quoted_agent_text(details)
    if quoted:
        text += f"; {quoted}"
    if caller.day is not None:
        text += f". {day_text(caller.day, op.spend, included=False)}".replace(". today", ". Today")
    return text + f". Request {op.request_id}. Allow it?"


def confirmation_for(caller_resolver: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[Any]]:
    """The question's resolver for the money tool whose caller comes from ``caller_resolver``."""

    async def ask(
        caller: Annotated[Caller, Resolve(caller_resolver)], ctx: Context[Any, Any]
    ) -> Elicit[Confirm] | None:
        if not _should_ask(caller) or not _client_can_be_asked(ctx):
            return None
        return Elicit(question(caller), Confirm)

    ask.__name__ = ask.__qualname__ = f"confirm_{caller_resolver.__name__.strip('_')}"
    return ask


def needs_out_of_band(caller: Caller, ctx: Context[Any, Any], confirmation: Confirmation | None) -> bool:
    """After the resolvers: True when the band applies but the client could not be asked (-> approval).

    Raises a ``confirmation_declined`` refusal when the human said no (or cancelled).
    """
    if not _should_ask(caller):
        return False
    if isinstance(confirmation, AcceptedElicitation):
        data = confirmation.data
        if data is None:  # not asked: a client without elicitation
            return not _client_can_be_asked(ctx)
        if isinstance(data, Confirm) and data.confirm:
            return False
    op = caller.operation
    assert op is not None
    raise Refusal.one(
        "confirmation_declined",
        f"the user did not confirm {op.spec.name} of {format_amount(op.governed)} {op.currency}"
        " in the client; nothing moved",
    )
