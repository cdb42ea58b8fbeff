"""Who is calling, and what policy says about the call -- worked out ONCE per call, before anything else.

:func:`resolve_caller` is an SDK ``Resolve`` resolver: it builds the :class:`Caller` (the runtime, the
agent, one policy snapshot) and runs the checks that need no arguments (tool allowed, rate limit). A
money tool's own resolver extends it with the operation (:meth:`Caller.evaluate`): the kill switch,
ownership of the card, per-transaction, payee, and a read-only look at the windows and card slots --
one read. The confirmation resolver depends on that, so no human is ever asked about a call that policy
refuses. Resolvers have no side effects (on 2026-07-28 they run twice per call): the rate-limit token
is taken, and the amount reserved, only by the tool body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context

from interlace_mcp.app import Runtime
from interlace_mcp.money import to_minor
from interlace_mcp.operations import Operation, Refusal, not_found
from interlace_mcp.policy import (
    AgentPolicy,
    CardRecord,
    DayFigures,
    Payee,
    PolicyError,
    Reader,
    RequestKey,
    RequestRecord,
    Violation,
    approval_above_reason,
    cards,
    daily_approval_reason,
    day_figures,
    frozen_violation,
    requests,
    tool_violation,
)

__all__ = ["Caller", "agent_of", "resolve_caller", "runtime_of"]


def runtime_of(ctx: Context[Any, Any]) -> Runtime:
    runtime = ctx.request_context.lifespan_context
    if not isinstance(runtime, Runtime):
        raise RuntimeError("server lifespan did not provide a Runtime")
    return runtime


def agent_of(ctx: Context[Any, Any], runtime: Runtime) -> str:
    """Who is calling: the verified bearer token's agent on HTTP, else INTERLACE_AGENT_ID. Never an argument."""
    token = get_access_token()
    if token is not None and token.client_id:
        return token.client_id
    return runtime.settings.agent_id


@dataclass(frozen=True)
class _Look:
    frozen: tuple[str | None, str | None] | None
    record: RequestRecord | None
    card: CardRecord | None
    violations: list[Violation]
    day: DayFigures | None


def _look(
    rx: Reader,
    key: RequestKey,
    *,
    policy: AgentPolicy,
    spend: Decimal,
    currency: str,
    issues_card: bool,
    card_id: str | None,
    fund: Decimal = Decimal(0),
) -> _Look:
    """The one read behind a money call's checks: kill switch, the request if known, the card, the windows."""
    pre = requests.precheck(rx, key, policy=policy, spend=spend, currency=currency, issues_card=issues_card, fund=fund)
    card = None
    if card_id is not None:
        # A card closed since is still this agent's when the request is already known (its retry replays).
        card = cards.owned_card(rx, key.scope, key.agent, card_id, include_deleted=pre.record is not None)
    # The day is read only where a human may be asked with it (the question, the daily approval rule).
    wanted = policy.confirm_above is not None or policy.approval_daily_above is not None
    day = day_figures(rx, key.scope, key.agent, policy, currency, rx.now()) if wanted and spend > 0 else None
    return _Look(pre.frozen, pre.record, card, pre.violations, day)


@dataclass(frozen=True)
class Caller:
    """One call's caller: who, under which policy snapshot, and -- for money -- what the checks found."""

    runtime: Runtime
    agent: str
    tool: str
    policy: AgentPolicy
    payees: Mapping[str, Payee]
    policy_error: PolicyError | None
    #: Broken before the tool body may run at all (tool not allowed, rate limit): refused alone.
    gate: list[Violation] = field(default_factory=list)
    #: A money call: its operation, and what the read-only evaluation found.
    operation: Operation | None = None
    #: The rules a new request breaks that the ledger does not check itself (kill switch, per-tx, payee).
    stateless: list[Violation] = field(default_factory=list)
    #: The request as stored, when this request_id was used before (its stored state decides, not policy).
    known: RequestRecord | None = None
    #: This call is refused before anything is asked, reserved or moved.
    refusal: Refusal | None = None
    dry_run: bool = False
    #: The agent's day as the evaluation read it (for the human's question).
    day: DayFigures | None = None
    #: Why a new request would need a human's approval, as read now (the ledger decides again, atomically,
    #: when it reserves): a confirmation question is never asked about a call that needs approval anyway.
    approval: list[str] = field(default_factory=list)
    #: The call's MCP context (progress notifications); None where a caller is built outside a call.
    ctx: Context[Any, Any] | None = field(default=None, repr=False, compare=False)

    def refused(self, refusal: Refusal) -> Caller:
        return replace(self, refusal=refusal)

    def key(self, op: Operation) -> RequestKey:
        return RequestKey(self.runtime.scope, self.agent, op.spec.name, op.request_id)

    async def evaluate(self, op: Operation, *, dry_run: bool = False) -> Caller:
        """This caller with ``op`` checked against every rule, read-only (one read of the ledger)."""
        caller = replace(self, operation=op, dry_run=dry_run)
        if self.gate or self.refusal is not None:
            return caller
        if self.policy_error is not None:
            return caller.refused(
                Refusal.one(
                    "policy_error",
                    "the policy file has an error, so money tools are refused until an operator fixes it:"
                    f" {self.policy_error}",
                )
            )
        look = await self.runtime.store.read(
            _look,
            self.key(op),
            policy=self.policy,
            spend=op.spend,
            currency=op.currency,
            issues_card=op.spec.issues_card,
            card_id=op.card_id,
            fund=op.fund,
        )
        if op.card_id is not None:
            if look.card is None:
                return caller.refused(not_found("card", op.card_id))
            op.record = look.card  # card operations show its label and who froze it
        stateless = [v for v in (frozen_violation(self.agent, look.frozen),) if v is not None]
        stateless += op.violations(self.policy, self.payees)
        if look.record is not None and look.record.status == "pending_approval":
            stateless += op.binding_violations(look.record)  # checked again when the approved request starts
        approval: list[str] = []
        if op.spec.needs_consent:
            found = [approval_above_reason(self.policy, op.spend, op.currency)]
            if look.day is not None:
                spent, reserved = to_minor(look.day.spent), to_minor(look.day.reserved)
                found.append(
                    daily_approval_reason(
                        self.policy, op.spend, op.currency, spent_minor=spent, reserved_minor=reserved
                    )
                )
            approval = [why for why in found if why is not None]
        caller = replace(caller, stateless=stateless, known=look.record, day=look.day, approval=approval)
        if look.record is None and not dry_run and (stateless or look.violations):
            return caller.refused(Refusal(stateless + look.violations))
        return caller

    async def refreshed(self) -> Caller:
        """This call's caller again under the CURRENT policy (after waiting for a human: the policy may have
        changed meanwhile, and an approved request runs only if it still allows it)."""
        snapshot = self.runtime.policies.current()
        policy = snapshot.for_agent(self.agent)
        gate = [v for v in (tool_violation(policy, self.tool),) if v is not None]
        rt = self.runtime
        fresh = Caller(rt, self.agent, self.tool, policy, snapshot.payees, rt.policies.error, gate, ctx=self.ctx)
        if gate:
            return fresh.refused(Refusal(gate))
        assert self.operation is not None
        return await fresh.evaluate(self.operation)


async def resolve_caller(ctx: Context[Any, Any]) -> Caller:
    """The caller of this call: identity, one policy snapshot, the tool allow-list and the rate limit (peeked)."""
    runtime = runtime_of(ctx)
    agent = agent_of(ctx, runtime)
    params = ctx.request_context.params or {}
    tool = str(params.get("name", ""))
    snapshot = runtime.policies.current()
    policy = snapshot.for_agent(agent)
    gate: list[Violation] = []
    if (v := tool_violation(policy, tool)) is not None:
        gate.append(v)
    elif (wait := runtime.rate_limiter.peek(agent)) is not None:
        gate.append(rate_limited(runtime, agent, wait))
    return Caller(runtime, agent, tool, policy, snapshot.payees, runtime.policies.error, gate, ctx=ctx)


def rate_limited(runtime: Runtime, agent: str, wait: float) -> Violation:
    return Violation(
        "rate_limited",
        f"agent {agent!r} made more than {runtime.settings.rate_limit_per_minute} tool calls in a minute;"
        f" retry in {wait:.0f} s",
        {"retry_after_seconds": round(wait, 1)},
    )
