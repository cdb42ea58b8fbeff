"""The one place money moves (DESIGN section 8). :func:`run_money` drives every operation the same way:

1. identity and the policy snapshot come from the caller (never the MCP context: everything is handed in);
2. arguments were validated by the SDK and the tool adapter (the operation object);
3. + 4. ONE write transaction: the request record (new, replay, resume, or conflict), every rule checked and
   the amount reserved, the keys (the intent) stored, and -- when this call executes -- the decision audit
   record and the execution lease; above ``approval_above`` a pending approval instead;
5. the Interlace call(s) with the stored keys (a resumed request looks its movement up first: ``find``
   then ``send``);
6. ONE write transaction: success -> commit (+ card registered or marked deleted) and the outcome audit
   record; definite failure -> release (and forget the request); unknown outcome -> keep the reservation,
   end the lease, answer ``in_progress`` (the agent's retry with the same request_id resolves it);
7. the typed result (stored for replays).

So a money call opens at most two write transactions, and concurrent calls share their commits (the
store's group commit). A retry of a request still executing never runs beside it: in this process it
waits for the first (bounded), in another it is told the request is busy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio

from interlace_mcp._crash import crashpoint
from interlace_mcp.audit import AuditWriteError
from interlace_mcp.client import (
    InProgressError,
    InterlaceConnectionError,
    InterlaceError,
    InterlaceTimeoutError,
    ServerError,
)
from interlace_mcp.money import format_amount
from interlace_mcp.operations._base import Deps, Execution, Operation, Outcome
from interlace_mcp.operations._refusals import refusal_from_upstream, upstream_ref
from interlace_mcp.operations._results import MoneyMovement
from interlace_mcp.policy import (
    AgentPolicy,
    BeginResult,
    Refusal,
    RequestKey,
    RequestRecord,
    Tx,
    Violation,
    approval_above_reason,
    approvals,
    cards,
    confirmation_band_reason,
    refusal_text,
    requests,
)

__all__ = ["INFLIGHT_WAIT_SECONDS", "approval_reasons", "args_hash", "pending_message", "run_money"]

logger = logging.getLogger("interlace_mcp.operations")

#: How long a retry waits for the same request still executing in this process before answering in_progress.
INFLIGHT_WAIT_SECONDS = 15.0


def args_hash(tool: str, args: dict[str, Any]) -> str:
    canonical = json.dumps({"tool": tool, **args}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _audit_unavailable() -> Refusal:
    return Refusal.one(
        "audit_unavailable", "the audit log cannot be written, so no money moves; an operator must fix it"
    )


async def run_money(
    deps: Deps,
    agent: str,
    policy: AgentPolicy,
    op: Operation,
    *,
    stateless: list[Violation],
    dry_run: bool = False,
    force_approval: bool = False,
    known: bool = False,
    kill_switch: bool = True,
    unconfirmed: bool = False,
) -> MoneyMovement:
    """Run one money call. ``stateless``: the rules the caller found broken (kill switch, per-transaction,
    payee); ``force_approval``: the confirmation band applies but the client could not be asked;
    ``known``: the request existed when the caller looked (a new one is planned before it is reserved);
    ``kill_switch=False``: the server's own call that only returns money (closing a purpose-bound card),
    which an agent's kill switch does not stop. ``unconfirmed``: a confirmation-band call whose question was
    not asked because it looked like needing approval anyway -- if the ledger finds no approval needed when it
    reserves (a reservation released meanwhile), a human still approves it: never moved unconfirmed."""
    spec = op.spec
    key = RequestKey(deps.scope, agent, spec.name, op.request_id)
    reasons = approval_reasons(policy, op, force_approval=force_approval)
    if dry_run:
        return await _dry_run(deps, op, key, policy, stateless, reasons)
    if not await deps.inflight.wait(key, INFLIGHT_WAIT_SECONDS):
        return _busy(deps, op, replayed=True)
    with deps.inflight.hold(key):
        progress = None
        if not known and not stateless:
            try:
                progress = await op.plan(deps)
            except InterlaceError as exc:
                raise refusal_from_upstream(exc, what=op.summary()) from None
        try:
            fallback = [confirmation_band_reason(policy, op.governed, op.currency, skipped=True)] if unconfirmed else []
            begun = await deps.store.write(
                _reserve, deps, key, agent, policy, op, stateless, reasons, progress, kill_switch, fallback
            )
        except AuditWriteError:
            # Fail closed: no audit record, no money movement (the reservation was rolled back with it).
            raise _audit_unavailable() from None
        record = begun.record
        if begun.is_new:
            crashpoint("after_reserve")
        if begun.busy:
            return _busy(deps, op, replayed=True)
        if begun.started:
            # Once the first upstream send may have started, finish (or fail) it even if the caller cancels:
            # the outcome is then recorded and a retry with the same request_id learns it.
            with anyio.CancelScope(shield=True):
                return await _execute(deps, agent, policy, op, key, record, resumed=begun.resumed)
        return await _known(deps, op, begun)


def approval_reasons(policy: AgentPolicy, op: Operation, *, force_approval: bool) -> list[str]:
    """Why this call needs a human, known before the ledger is read (``approval_daily_above`` is checked with
    the reservation): the approval threshold, or the confirmation band of a client that cannot ask."""
    if not op.spec.needs_consent:
        return []
    reasons = [confirmation_band_reason(policy, op.governed, op.currency)] if force_approval else []
    if (above := approval_above_reason(policy, op.governed, op.currency)) is not None:
        reasons.append(above)
    return reasons


def _reserve(
    tx: Tx,
    deps: Deps,
    key: RequestKey,
    agent: str,
    policy: AgentPolicy,
    op: Operation,
    stateless: list[Violation],
    reasons: list[str],
    progress: dict[str, Any] | None,
    kill_switch: bool = True,
    fallback: list[str] | None = None,
) -> BeginResult:
    """Write transaction 1: record, rules, reservation, keys, lease -- and the decision, when executing."""
    spec = op.spec
    begun = requests.begin(
        tx,
        key,
        args_hash=args_hash(spec.name, op.arguments()),
        policy=policy,
        spend=op.spend,
        currency=op.currency,
        issues_card=spec.issues_card,
        stateless_violations=stateless,
        needs_approval=bool(reasons),
        approval_reasons=reasons,
        approval_details={**op.approval_details(), **(progress or {})},
        daily_approval=spec.needs_consent,
        recheck=stateless,
        approval_summary=f"{agent}: {op.summary()}",
        approval_ttl=deps.approval_ttl,
        steps=spec.steps,
        progress=progress,
        card_id=op.card_id,
        args=op.arguments(),
        lease=deps.lease,
        kill_switch=kill_switch,
        fund=op.fund,
        fallback_reasons=fallback or (),
    )
    if begun.started:
        record = begun.record
        deps.audit.append_in(
            tx,
            agent=agent,
            tool=spec.name,
            event="decision",
            decision="allow" if record.approval_id is None else "approved",
            amount=op.describe_amount(),
            currency=op.currency,
            request_id=op.request_id,
            upstream_ids={"idempotency_keys": ",".join(record.keys.values())},
            detail=op.summary(),
            actor=deps.actor,
            scope=key.scope,
        )
    return begun


async def _known(deps: Deps, op: Operation, begun: BeginResult) -> MoneyMovement:
    """A request this call does not execute: replay, refusal, or pending approval."""
    record = begun.record
    if record.status == "completed":
        assert record.result is not None
        return MoneyMovement.model_validate({**record.result, "replayed": True})
    if record.status == "refused":
        stored = record.result or {}
        raise Refusal.one(str(stored.get("code", "upstream_error")), str(stored.get("message", "refused")))
    if record.status == "pending_approval":
        if begun.is_new:
            logger.info(
                "request %s/%s of %s is pending approval %s",
                record.key.tool,
                record.key.request_id,
                record.key.agent,
                record.approval_id,
            )
            await deps.notify_approval(record)
        return _pending(deps, op, record, replayed=not begun.is_new)
    return _busy(deps, op, replayed=True)  # executing, and not ours to run


async def _execute(
    deps: Deps,
    agent: str,
    policy: AgentPolicy,
    op: Operation,
    key: RequestKey,
    record: RequestRecord,
    *,
    resumed: bool,
) -> MoneyMovement:
    ex = Execution(deps, agent, policy, key, record, resumed=resumed)
    try:
        crashpoint("after_intent")
        found = await op.find(ex) if resumed else None
        outcome = await op.send(ex, found)
        crashpoint("after_upstream")
    except Refusal as refusal:
        # Operations refuse only before moving money; a request that may have moved stays for a retry.
        await _stop(deps, key, agent, op, f"refused:{refusal.code}", keep=ex.moved or resumed)
        refusal.audited = True
        raise
    except InterlaceError as exc:
        # Release only what provably did not move: a first attempt that failed definitively before
        # Interlace confirmed anything. After a confirmed movement, or when an earlier attempt may
        # have reached Interlace, any failure leaves the request in progress (retry or recovery settles it).
        if exc.unknown_outcome or ex.moved or resumed:
            logger.warning(
                "request %s/%s of %s: outcome unknown (%s); reservation kept", key.tool, key.request_id, agent, exc
            )
            await _stop(deps, key, agent, op, "ok:in_progress", keep=True)
            return MoneyMovement(
                status="in_progress",
                amount=op.describe_amount(),
                currency=op.currency,
                request_id=op.request_id,
                sandbox=deps.sandbox,
                replayed=resumed,
                message=(
                    "Interlace did not confirm every step in time; the amount stays reserved and nothing will "
                    "move twice. Call the same tool again with the same request_id (or get_request_status) to "
                    f"learn the result. Interlace's last answer: {_answer(exc)}"
                ),
            ).audited()
        failed = refusal_from_upstream(exc, what=op.summary())
        await _stop(deps, key, agent, op, f"refused:{failed.code}", keep=False)
        failed.audited = True
        raise failed from None
    movement = MoneyMovement(
        status="completed",
        amount=None if outcome.amount is None else format_amount(outcome.amount),
        currency=op.currency,
        request_id=op.request_id,
        transaction_id=outcome.transaction_id,
        card=outcome.card,
        payee=op.arguments().get("payee"),
        sandbox=deps.sandbox,
        message=outcome.message,
        warnings=outcome.warnings or None,
    )
    try:
        await deps.store.write(_complete, deps, key, agent, op, movement, outcome, audit=True)
    except AuditWriteError:
        # The money moved: the commit must not depend on the audit log. Loudly, without the record.
        logger.critical("audit record could not be written: outcome of %s/%s", key.tool, key.request_id)
        await deps.store.write(_complete, deps, key, agent, op, movement, outcome, audit=False)
    crashpoint("after_commit")
    if outcome.amount is not None:
        deps.metrics.money_moved(agent=agent, tool=op.spec.name, amount=outcome.amount, currency=op.currency)
    if resumed:
        movement = movement.model_copy(update={"replayed": True})
    return movement.audited()


def _answer(exc: InterlaceError) -> str:
    """Interlace's last answer in the server's words: its kind and code, never its message (text from outside)."""
    if isinstance(exc, InterlaceTimeoutError):
        kind = "no answer in time"
    elif isinstance(exc, InterlaceConnectionError):
        kind = "the connection failed"
    elif isinstance(exc, InProgressError):
        kind = "transaction in progress"
    elif isinstance(exc, ServerError):
        kind = "a server error"
    else:
        kind = "an error"
    return kind + upstream_ref(exc)


async def _stop(deps: Deps, key: RequestKey, agent: str, op: Operation, outcome: str, *, keep: bool) -> None:
    """Write transaction 2 when nothing completed: keep the request for a retry (end the lease) or release
    and forget it -- with the call's audit record in the same transaction."""
    try:
        await deps.store.write(_stop_job, deps, key, agent, op, outcome, keep=keep, audit=True)
    except AuditWriteError:
        logger.critical("audit record could not be written: %s of %s/%s", outcome, key.tool, key.request_id)
        await deps.store.write(_stop_job, deps, key, agent, op, outcome, keep=keep, audit=False)


def _stop_job(
    tx: Tx, deps: Deps, key: RequestKey, agent: str, op: Operation, outcome: str, *, keep: bool, audit: bool
) -> None:
    if keep:
        requests.release_lease(tx, key)
    else:
        requests.abandon(tx, key)
    if audit:
        deps.audit.append_in(
            tx,
            agent=agent,
            tool=op.spec.name,
            event="tool_call",
            arguments={"request_id": op.request_id, **op.arguments()},
            amount=op.describe_amount(),
            request_id=op.request_id,
            outcome=outcome,
            actor=deps.actor,
            scope=key.scope,
        )


def _complete(
    tx: Tx,
    deps: Deps,
    key: RequestKey,
    agent: str,
    op: Operation,
    movement: MoneyMovement,
    outcome: Outcome,
    *,
    audit: bool,
) -> None:
    """Write transaction 2: commit the reservation, note the card, store the result -- and the outcome record."""
    if outcome.new_card is not None:
        card_id, label = outcome.new_card
        cards.register_card(tx, key.scope, key.agent, card_id, label=label, request_id=key.request_id)
        if (terms := outcome.card_terms) is not None:
            cards.set_card_terms(
                tx, key.scope, card_id, single_use=terms.single_use, expires_at=terms.expires_at,
                last_four=terms.last_four,
            )  # fmt: skip
    if outcome.deleted_card is not None:
        cards.mark_card_deleted(tx, key.scope, outcome.deleted_card)
    requests.complete(
        tx,
        key,
        movement.model_dump(mode="json"),
        progress=outcome.progress or None,
        card_id=outcome.new_card[0] if outcome.new_card is not None else None,
    )
    if audit:
        deps.audit.append_in(
            tx,
            agent=agent,
            tool=op.spec.name,
            event="outcome",
            arguments={"request_id": op.request_id, **op.arguments()},
            amount=movement.amount,
            currency=op.currency,
            request_id=op.request_id,
            upstream_ids={"transaction_id": outcome.transaction_id or ""},
            outcome="completed",
            actor=deps.actor,
            scope=key.scope,
        )


def _busy(deps: Deps, op: Operation, *, replayed: bool) -> MoneyMovement:
    return MoneyMovement(
        status="in_progress",
        amount=op.describe_amount(),
        currency=op.currency,
        request_id=op.request_id,
        payee=op.arguments().get("payee"),
        replayed=replayed,
        sandbox=deps.sandbox,
        message=(
            "an earlier call with this request_id is still being executed; nothing will move twice. Call the "
            "same tool again with the same request_id (or get_request_status) in a moment to learn the result"
        ),
    )


def pending_message(record: RequestRecord, *, replayed: bool, url: str | None) -> str:
    """What a pending request tells the agent: that a human has been asked, and why -- never how to approve.

    The decision is a human's alone (the dashboard or the operator's CLI); nothing in this text is a command,
    a credential or a way around it. The agent's part is to wait and then retry with the same request_id.
    """
    approval = record.approval
    reasons = "; ".join(approval.reasons) if approval is not None and approval.reasons else ""
    expires = approval.expires_at_iso if approval is not None else "its expiry"
    approved = approval is not None and approval.status == "approved"
    if approved:
        head = "A human approved this request; it has not run yet"
    elif replayed:
        head = "Still waiting: a human has been asked to approve or deny this request"
    else:
        head = "A human has been asked to approve or deny this request"
    text = head + (f" ({reasons})" if reasons and not approved else "") + ". Nothing has moved;"
    text += f" {format_amount(record.amount)} {record.currency} stays reserved until {expires}."
    if url is not None and not approved:
        text += " The human decides on the approval page (approval_url), which only a signed-in operator can use."
    if approved:
        return text + " Call the same tool again with the same request_id to execute it (once)."
    return text + (
        " Call the same tool again with the same request_id (or get_request_status) later to learn the decision;"
        " once approved, that call executes it (once)."
    )


def _pending(deps: Deps, op: Operation, record: RequestRecord, *, replayed: bool) -> MoneyMovement:
    approval = record.approval
    url = deps.approval_url(record.approval_id) if record.approval_id else None
    return MoneyMovement(
        status="pending_approval",
        amount=op.describe_amount(),
        currency=op.currency,
        request_id=op.request_id,
        payee=op.arguments().get("payee"),
        approval_id=record.approval_id,
        expires_at=approval.expires_at_iso if approval else None,
        approval_url=url,
        replayed=replayed,
        sandbox=deps.sandbox,
        message=pending_message(record, replayed=replayed, url=url),
    )


async def _dry_run(
    deps: Deps,
    op: Operation,
    key: RequestKey,
    policy: AgentPolicy,
    stateless: list[Violation],
    asked: list[str],
) -> MoneyMovement:
    violations = await deps.store.read(
        requests.evaluate,
        key,
        policy=policy,
        spend=op.spend,
        currency=op.currency,
        issues_card=op.spec.issues_card,
        stateless_violations=stateless,
        fund=op.fund,
    )
    needs = await deps.store.read(
        approvals.reasons_for, key, policy, op.spend, op.currency, asked=asked, daily=op.spec.needs_consent
    )
    if violations:
        decision = "deny"
        reasons = [v.text for v in violations]
        message = f"would be refused: {refusal_text(violations)}"
    elif needs:
        decision = "needs_approval"
        reasons = [f"[approval_required] {why}: a human would have to approve it" for why in needs]
        message = f"would wait for approval, then: {op.summary()}"
    else:
        decision = "allow"
        reasons = []
        message = f"would {op.summary()}"
    return MoneyMovement(
        status="dry_run",
        amount=op.describe_amount(),
        currency=op.currency,
        request_id=op.request_id,
        payee=op.arguments().get("payee"),
        decision=decision,
        reasons=reasons,
        message=message,
        sandbox=deps.sandbox,
    )
