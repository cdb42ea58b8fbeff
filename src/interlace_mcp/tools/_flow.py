"""The one place money moves (DESIGN section 8). Every money tool describes its operation as a
:class:`MoneyOp`; :func:`run_money` does the rest, in this order:

1. identity (never an argument) and the agent's current policy;
2. arguments were validated by the SDK and the tool (typed parameters);
3. request record: new, replay, resume, or conflict -- in the same atomic step as
4. policy + ledger: every rule checked, the amount reserved; above ``approval_above`` -> pending approval;
5. the Interlace call(s), with keys generated and stored before the first call and reused by every retry;
6. success -> commit; definite failure -> release (and forget the request); unknown outcome -> keep the
   reservation and answer ``in_progress`` (the agent's retry with the same request_id resolves it);
7. the typed result (stored for replays).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context

from interlace_mcp._crash import crashpoint
from interlace_mcp.audit import AuditWriteError
from interlace_mcp.client import InterlaceError
from interlace_mcp.money import format_amount
from interlace_mcp.policy import (
    AgentPolicy,
    RequestKey,
    RequestRecord,
    Violation,
    frozen_violation,
    per_transaction_violation,
    refusal_text,
)
from interlace_mcp.tools._errors import Refusal, refusal_from_upstream
from interlace_mcp.tools._results import CardResult, MoneyMovement
from interlace_mcp.tools._runtime import Runtime, runtime_of

__all__ = ["Execution", "MoneyOp", "Outcome", "in_thread", "run_money"]

logger = logging.getLogger("interlace_mcp.tools")
T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking ledger call off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@dataclass
class Outcome:
    """What a money operation did upstream."""

    amount: Decimal | None
    transaction_id: str | None = None
    card: CardResult | None = None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Execution:
    """Handed to a MoneyOp's ``execute``: the stored keys, progress, and whether to look up first."""

    runtime: Runtime
    agent: str
    policy: AgentPolicy
    key: RequestKey
    record: RequestRecord
    #: True when an earlier attempt may have reached Interlace: look the movement up before sending.
    resumed: bool
    #: Set by the operation once Interlace confirmed the movement (sent or found): from then on no
    #: failure may release the reservation or forget the request, or a retry would move money again.
    moved: bool = False

    def step_key(self, step: str) -> str:
        """The UUID of one step: its clientTransactionId / referenceId and Idempotency-Key."""
        return self.record.keys[step]

    @property
    def progress(self) -> dict[str, Any]:
        return dict(self.record.progress)

    async def save(self, progress: dict[str, Any], *, card_id: str | None = None) -> None:
        await in_thread(self.runtime.ledger.save_progress, self.key, progress, card_id=card_id)
        self.record = replace(self.record, progress=dict(progress))


@dataclass
class MoneyOp:
    tool: str
    request_id: str
    #: The arguments that identify the request (hashed for replay/conflict); no request_id, no dry_run.
    args: dict[str, Any]
    currency: str
    #: The amount shown to the agent (None when only Interlace knows it, e.g. close_card's unload).
    amount: Decimal | None
    #: The amount that counts as spend (0 for unloads and closes, which return money).
    spend: Decimal
    summary: str
    execute: Callable[[Execution], Awaitable[Outcome]]
    dry_run: bool = False
    issues_card: bool = False
    card_id: str | None = None
    steps: tuple[str, ...] = ("main",)
    extra_violations: list[Violation] = field(default_factory=list)
    #: The confirmation band applies but the client could not be asked: a human approves out of band.
    force_approval: bool = False


def args_hash(tool: str, args: dict[str, Any]) -> str:
    canonical = json.dumps({"tool": tool, **args}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def run_money(ctx: Context[Any, Any], op: MoneyOp) -> MoneyMovement:
    rt = runtime_of(ctx)
    agent = rt.agent_of(ctx)
    policy = rt.policies.for_agent(agent)
    if rt.policies.error is not None:
        raise Refusal.one(
            "policy_error",
            f"the policy file has an error, so money tools are refused until an operator fixes it: {rt.policies.error}",
        )
    frozen = await in_thread(rt.ledger.agent_frozen, agent)
    stateless: list[Violation] = []
    if (v := frozen_violation(agent, frozen)) is not None:
        stateless.append(v)
    if op.spend > 0 and (v := per_transaction_violation(policy, op.spend, op.currency)) is not None:
        stateless.append(v)
    stateless += op.extra_violations
    key = RequestKey(rt.scope, agent, op.tool, op.request_id)
    needs_approval = op.force_approval or (policy.approval_above is not None and op.spend > policy.approval_above)

    if op.dry_run:
        return await _dry_run(rt, op, key, policy, stateless, needs_approval)

    begun = await in_thread(
        rt.ledger.begin,
        key,
        args_hash=args_hash(op.tool, op.args),
        policy=policy,
        spend=op.spend,
        currency=op.currency,
        issues_card=op.issues_card,
        stateless_violations=stateless,
        needs_approval=needs_approval,
        approval_summary=f"{agent}: {op.summary}",
        approval_ttl=float(rt.settings.approval_ttl_seconds),
        steps=op.steps,
        card_id=op.card_id,
    )
    record = begun.record
    if begun.is_new:
        crashpoint("after_reserve")
        if record.status == "pending_approval":
            logger.info("request %s/%s of %s is pending approval %s", op.tool, op.request_id, agent, record.approval_id)
            rt.metrics.approval_event(agent=agent, event="requested")
            await rt.notify_approval(record)
            return _pending(rt, op, record, replayed=False)
        return await _execute(rt, op, agent, policy, key, record, resumed=False, replayed=False)

    # A known request: replay, pending, refused, or resume.
    if record.status == "completed":
        assert record.result is not None
        return MoneyMovement.model_validate({**record.result, "replayed": True})
    if record.status == "refused":
        stored = record.result or {}
        raise Refusal.one(str(stored.get("code", "upstream_error")), str(stored.get("message", "refused")))
    if frozen is not None:
        raise Refusal([v for v in stateless if v.code == "agent_frozen"])
    if record.status == "pending_approval":
        record = await in_thread(rt.ledger.start_approved, key)
        if record.status == "pending_approval":
            return _pending(rt, op, record, replayed=True)
        if record.status == "refused":  # expired or denied meanwhile
            stored = record.result or {}
            raise Refusal.one(str(stored.get("code", "approval_expired")), str(stored.get("message", "")))
        return await _execute(rt, op, agent, policy, key, record, resumed=False, replayed=False)
    # executing: an earlier attempt may or may not have reached Interlace.
    return await _execute(rt, op, agent, policy, key, record, resumed=True, replayed=True)


async def _execute(
    rt: Runtime,
    op: MoneyOp,
    agent: str,
    policy: AgentPolicy,
    key: RequestKey,
    record: RequestRecord,
    *,
    resumed: bool,
    replayed: bool,
) -> MoneyMovement:
    execution = Execution(rt, agent, policy, key, record, resumed=resumed)
    try:
        await rt.record(
            required=True,
            agent=agent,
            tool=op.tool,
            event="decision",
            decision="allow" if record.approval_id is None else "approved",
            amount=_fmt(op.amount),
            currency=op.currency,
            request_id=op.request_id,
            upstream_ids={"idempotency_keys": ",".join(record.keys.values())},
            detail=op.summary,
        )
    except AuditWriteError:
        # Fail closed: no audit record, no money movement. A resumed request keeps its reservation.
        if not resumed:
            await in_thread(rt.ledger.abandon, key)
        raise Refusal.one(
            "audit_unavailable", "the audit log cannot be written, so no money moves; an operator must fix it"
        ) from None
    try:
        # Once the first upstream send may have started, finish (or fail) it even if the caller cancels:
        # the outcome is then recorded and a retry with the same request_id learns it.
        with anyio.CancelScope(shield=True):
            crashpoint("after_intent")
            outcome = await op.execute(execution)
            crashpoint("after_upstream")
    except Refusal:
        if not (execution.moved or resumed):  # operations refuse only before moving money
            await in_thread(rt.ledger.abandon, key)
        raise
    except InterlaceError as exc:
        # Release only what provably did not move: a first attempt that failed definitively before
        # Interlace confirmed anything. After a confirmed movement, or when an earlier attempt may
        # have reached Interlace, any failure leaves the request in progress (retry or recovery settles it).
        if exc.unknown_outcome or execution.moved or resumed:
            logger.warning(
                "request %s/%s of %s: outcome unknown (%s); reservation kept", op.tool, op.request_id, agent, exc
            )
            return MoneyMovement(
                status="in_progress",
                amount=_fmt(op.amount),
                currency=op.currency,
                request_id=op.request_id,
                sandbox=rt.sandbox,
                replayed=replayed,
                message=(
                    "Interlace did not confirm every step in time; the amount stays reserved and nothing will "
                    "move twice. Call the same tool again with the same request_id (or get_request_status) to "
                    f"learn the result. Interlace's last answer: {exc}"
                ),
            )
        await in_thread(rt.ledger.abandon, key)
        raise refusal_from_upstream(exc, what=op.summary) from None
    movement = MoneyMovement(
        status="completed",
        amount=_fmt(outcome.amount),
        currency=op.currency,
        request_id=op.request_id,
        transaction_id=outcome.transaction_id,
        card=outcome.card,
        payee=op.args.get("payee"),
        sandbox=rt.sandbox,
        message=outcome.message,
        warnings=outcome.warnings or None,
    )
    await in_thread(rt.ledger.complete, key, movement.model_dump(mode="json"))
    crashpoint("after_commit")
    if outcome.amount is not None:
        rt.metrics.money_moved(agent=agent, tool=op.tool, amount=outcome.amount, currency=op.currency)
    await rt.record(
        agent=agent,
        tool=op.tool,
        event="outcome",
        arguments={"request_id": op.request_id, **op.args},
        amount=movement.amount,
        currency=op.currency,
        request_id=op.request_id,
        upstream_ids={"transaction_id": outcome.transaction_id or ""},
        outcome="completed",
    )
    if replayed:
        movement = movement.model_copy(update={"replayed": True})
    return movement


def _pending(rt: Runtime, op: MoneyOp, record: RequestRecord, *, replayed: bool) -> MoneyMovement:
    approval = record.approval
    expires = approval.expires_at_iso if approval else None
    return MoneyMovement(
        status="pending_approval",
        amount=_fmt(op.amount),
        currency=op.currency,
        request_id=op.request_id,
        payee=op.args.get("payee"),
        approval_id=record.approval_id,
        expires_at=expires,
        replayed=replayed,
        sandbox=rt.sandbox,
        message=(
            f"{format_amount(op.spend)} {op.currency} is above this agent's approval threshold, so a human must "
            f"approve it (interlace-mcp approvals approve {record.approval_id}). The amount is reserved until "
            f"{expires}. After approval, call the same tool again with the same request_id to execute it."
        ),
    )


async def _dry_run(
    rt: Runtime,
    op: MoneyOp,
    key: RequestKey,
    policy: AgentPolicy,
    stateless: list[Violation],
    needs_approval: bool,
) -> MoneyMovement:
    violations = await in_thread(
        rt.ledger.evaluate,
        key,
        policy=policy,
        spend=op.spend,
        currency=op.currency,
        issues_card=op.issues_card,
        stateless_violations=stateless,
    )
    if violations:
        decision = "deny"
        reasons = [v.text for v in violations]
        message = f"would be refused: {refusal_text(violations)}"
    elif needs_approval:
        decision = "needs_approval"
        reasons = [
            f"[approval_required] {format_amount(op.spend)} {op.currency} is above approval_above "
            f"{format_amount(policy.approval_above or Decimal(0))}: a human would have to approve it"
        ]
        message = f"would wait for approval, then: {op.summary}"
    else:
        decision = "allow"
        reasons = []
        message = f"would {op.summary}"
    return MoneyMovement(
        status="dry_run",
        amount=_fmt(op.amount),
        currency=op.currency,
        request_id=op.request_id,
        payee=op.args.get("payee"),
        decision=decision,
        reasons=reasons,
        message=message,
        sandbox=rt.sandbox,
    )


def _fmt(amount: Decimal | None) -> str | None:
    return None if amount is None else format_amount(amount)
