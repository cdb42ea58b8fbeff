"""Purpose-bound cards and merchant categories: what the server does by itself (DESIGN section 13).

**Closing.** A single-use card is closed once its first purchase has settled, an expiring card once its
expiry came -- never while an authorization on it is still pending (closing before capture breaks the
merchant's capture). The close goes through the same path as ``close_card``: the :class:`CloseCard`
operation run by the runner, under the deterministic request id ``auto-close:<card>`` of the card's agent.
The runner's request record makes it happen once however often and wherever it is attempted: a second
attempt replays the completed close, one that meets another still executing is told it is busy, and one
after a crash resumes it by looking the unload up first. Before that, the card is *claimed* in the ledger
(``closed_reason``, first reason wins) with one audit record saying the server closes it and why.

**Enforcing merchant categories.** An authorization (approved or declined) at a category the agent's
policy does not allow (``mcc_allow`` / ``mcc_block``) freezes the card at Interlace, marks it
``frozen_by = "policy"`` (the agent cannot unfreeze it), writes an audit record and notifies operators
(``INTERLACE_APPROVAL_NOTIFY_URL``, event ``card.frozen_by_policy``) -- once per transaction, across
instances (``card_enforcement``). The rules are the policy's current ones: after an operator tightens them, an
earlier purchase they now forbid freezes its card once too (the operator lifts it with ``agents unfreeze``).

**What drives it.** Interlace is the source of truth: every decision reads the card's transactions
there. Webhooks (a purchase, its settlement) wake :func:`run_checkout` for that card at once; its timer
wakes at the next expiry; the reconcile round (:func:`check_cards` over every watched card) catches
the rest, so a stdio deployment without webhooks closes and freezes too, one round later.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio

from interlace_mcp.app._runtime import Runtime
from interlace_mcp.client import CardTransaction, InterlaceError, NotFoundError
from interlace_mcp.money import format_amount
from interlace_mcp.operations import CloseCard, Refusal, clean_text, run_money
from interlace_mcp.policy import AgentPolicy, CardRecord, RequestKey, Tx, cards, epoch_to_iso, requests

__all__ = [
    "AUTO_CLOSE_PREFIX",
    "MCC_FREEZE",
    "CheckoutReport",
    "auto_close_request_id",
    "check_cards",
    "close_card_now",
    "police",
    "run_checkout",
]

logger = logging.getLogger("interlace_mcp.checkout")

#: The request ids of the server's own closes (per card: the ledger makes each happen once).
AUTO_CLOSE_PREFIX = "auto-close:"
#: The enforcement action recorded once per offending transaction.
MCC_FREEZE = "mcc_freeze"
#: The longest the checkout loop sleeps without news (it re-reads which cards expire when).
IDLE_SECONDS = 60.0
#: How many of a card's newest transactions one look reads.
LOOK_LIMIT = 100


def auto_close_request_id(card_id: str) -> str:
    """``auto-close:<card>`` (a card id too long for a request id is hashed; request ids hold 64 chars)."""
    request_id = AUTO_CLOSE_PREFIX + card_id
    if len(request_id) <= 64:
        return request_id
    return AUTO_CLOSE_PREFIX + hashlib.sha256(card_id.encode("utf-8")).hexdigest()[:40]


@dataclass
class CheckoutReport:
    """What one round did: cards closed, card transactions that froze a card, cards waiting, failures."""

    closed: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _watches_mcc(policy: AgentPolicy) -> bool:
    return bool(policy.mcc_allow or policy.mcc_block)


async def check_cards(rt: Runtime, *, card_ids: Iterable[str] | None = None, due_only: bool = False) -> CheckoutReport:
    """Look at cards at Interlace and act: close what is due, freeze what broke the category rules.

    ``card_ids``: just these (a webhook named them); ``due_only``: the timer's round (expired, claimed, or
    resting cards whose pause is over); else every card the server watches (the reconcile round).
    """
    report = CheckoutReport()
    live = await rt.store.read(cards.live_cards, rt.scope)
    now = rt.store.now()
    watcher = rt.watcher
    if card_ids is not None:
        wanted = set(card_ids)
        chosen = [c for c in live if c.card_id in wanted]
    elif due_only:
        ready = watcher.ready()
        chosen = [
            c
            for c in live
            if c.card_id in ready
            or (
                (c.closed_reason is not None or (c.expires_at is not None and c.expires_at <= now))
                and not watcher.resting(c.card_id)
            )
        ]
    else:
        chosen = [c for c in live if c.purpose_bound or c.closed_reason or _watches_mcc(rt.policies.for_agent(c.agent))]
    for record in chosen:
        try:
            await _check(rt, record, now, report)
        except Exception:  # one card must not stop the round; it is looked at again after a pause
            logger.exception("checkout: card %s could not be checked", record.card_id)
            watcher.later(record.card_id)
            report.failed.append(record.card_id)
    return report


async def _check(rt: Runtime, record: CardRecord, now: float, report: CheckoutReport) -> None:
    policy = rt.policies.for_agent(record.agent)
    if not (record.purpose_bound or record.closed_reason or _watches_mcc(policy)):
        return
    try:
        page = await rt.api.list_card_transactions(card_id=record.card_id, limit=LOOK_LIMIT)
    except InterlaceError as exc:
        logger.warning("checkout: transactions of card %s could not be read: %s", record.card_id, exc)
        rt.watcher.later(record.card_id)
        report.failed.append(record.card_id)
        return
    report.frozen += await police(rt, record, page.items)
    purchases = [t for t in page.items if t.type == 1]
    pending = [t for t in purchases if t.status == "PENDING"]
    reason = record.closed_reason
    if reason is None and record.expires_at is not None and record.expires_at <= now:
        reason = "expired"
    if reason is None and record.single_use and any(t.status == "CLOSED" for t in purchases):
        reason = "single_use"
    if reason is None:
        if record.single_use and pending:
            rt.watcher.later(record.card_id)  # its first purchase settles soon: look again, webhooks or not
        else:
            rt.watcher.done(record.card_id)
        return
    if pending:
        # Closing now would break the merchant's capture of what is pending: close once it settled.
        logger.info("checkout: card %s is due (%s); %d purchase(s) still pending", record.card_id, reason, len(pending))
        rt.watcher.later(record.card_id)
        report.waiting.append(record.card_id)
        return
    done = await close_card_now(rt, record, reason)
    if done in ("closed", "gone"):
        rt.watcher.done(record.card_id)
        report.closed.append(record.card_id)
    else:
        rt.watcher.later(record.card_id)
        (report.waiting if done == "busy" else report.failed).append(record.card_id)


def _claim(tx: Tx, rt: Runtime, record: CardRecord, reason: str, request_id: str) -> None:
    """The card is the server's to close, and why (first reason wins), audited once."""
    if cards.claim_close(tx, rt.scope, record.card_id, reason):
        rt.audit.append_in(
            tx,
            agent=record.agent,
            tool=CloseCard.SPEC.name,
            event="card_auto_close",
            actor="server",
            arguments={"card_id": record.card_id},
            request_id=request_id,
            detail=cards.CLOSE_REASONS.get(reason, reason),
            scope=rt.scope,
        )


async def close_card_now(rt: Runtime, record: CardRecord, reason: str) -> str:
    """Close the card through the runner, once: ``closed`` (now or before), ``gone`` (Interlace no longer knows
    it), ``busy`` (another execution holds it, or Interlace did not confirm: looked at again later), ``failed``."""
    request_id = auto_close_request_id(record.card_id)
    await rt.store.write(_claim, rt, record, reason, request_id)
    key = RequestKey(rt.scope, record.agent, CloseCard.SPEC.name, request_id)
    known = await rt.store.read(requests.get_request, key)
    op = CloseCard(record.card_id, request_id, record=record)
    try:
        movement = await run_money(
            rt.deps(),
            record.agent,
            rt.policies.for_agent(record.agent),
            op,
            stateless=[],
            known=known is not None,
            kill_switch=False,
        )
    except Refusal as refusal:
        if refusal.code == "not_found" and known is None:
            # Interlace no longer has the card (closed behind our back): nothing to sweep; note it as closed.
            await rt.store.write(cards.mark_card_deleted, rt.scope, record.card_id)
            return "gone"
        logger.warning("checkout: closing card %s (%s) was refused: %s", record.card_id, reason, refusal)
        return "failed"
    if movement.status != "completed":
        return "busy"
    if not movement.replayed:
        logger.info(
            "checkout: card %s of %s closed by the server (%s); %s USD returned",
            record.card_id,
            record.agent,
            reason,
            movement.amount,
        )
    return "closed"


# ---- merchant categories ------------------------------------------------------------------------------------


def _broken_rule(policy: AgentPolicy, mcc: str | None) -> str:
    return "mcc_block" if (mcc or "") in policy.mcc_block else "mcc_allow"


def _record_freeze(tx: Tx, rt: Runtime, record: CardRecord, fresh: list[CardTransaction], policy: AgentPolicy) -> list[
    CardTransaction
]:  # fmt: skip
    """Claim each offending transaction once; for those claimed here: the card is policy's, audited."""
    taken = [t for t in fresh if cards.enforce_once(tx, rt.scope, t.id, MCC_FREEZE, record.card_id)]
    if taken:
        cards.set_card_frozen_by(tx, rt.scope, record.card_id, "policy")
    for txn in taken:
        mcc = clean_text(txn.mcc, 8) or "none"
        rt.audit.append_in(
            tx,
            agent=record.agent,
            tool="checkout",
            event="card_frozen_by_policy",
            actor="server",
            arguments={"card_id": record.card_id, "mcc": mcc},
            amount=format_amount(txn.amount),
            currency=txn.currency or "USD",
            upstream_ids={"transaction_id": txn.id},
            outcome=f"frozen:{_broken_rule(policy, txn.mcc)}",
            detail=f"an authorization at merchant category {mcc} broke {_broken_rule(policy, txn.mcc)}; card frozen",
            scope=rt.scope,
        )
    return taken


async def police(rt: Runtime, record: CardRecord, transactions: Iterable[CardTransaction]) -> list[str]:
    """Freeze the card if any authorization on it was at a category its agent may not buy from (once per
    transaction); returns the ids of the transactions this call acted on."""
    policy = rt.policies.for_agent(record.agent)
    if not _watches_mcc(policy) or record.deleted_at is not None:
        return []
    offending = [t for t in transactions if t.type == 1 and not policy.mcc_allowed(t.mcc)]
    if not offending:
        return []
    seen = await rt.store.read(cards.enforced, rt.scope, [t.id for t in offending], MCC_FREEZE)
    fresh = [t for t in offending if t.id not in seen]
    if not fresh:
        return []
    try:
        frozen_card = await rt.api.freeze_card(record.card_id)  # freezing a frozen card is fine upstream
    except NotFoundError:
        return []  # closed meanwhile: nothing left to freeze
    except InterlaceError as exc:
        logger.warning("checkout: card %s could not be frozen (category rules): %s", record.card_id, exc)
        return []  # not claimed: the next look tries again
    rt.cards.put(frozen_card)
    taken = await rt.store.write(_record_freeze, rt, record, fresh, policy)
    if taken:
        # Once more, now that frozen_by says "policy": an agent's unfreeze_card that ran between the freeze above and
        # that write would otherwise leave the card active (unfreeze_card re-freezes when it loses the race later).
        try:
            rt.cards.put(await rt.api.freeze_card(record.card_id))
        except InterlaceError as exc:
            logger.warning("checkout: card %s could not be frozen again (category rules): %s", record.card_id, exc)
    for txn in taken:
        logger.warning(
            "checkout: card %s of %s frozen: authorization %s at merchant category %s is not allowed",
            record.card_id,
            record.agent,
            txn.id,
            clean_text(txn.mcc, 8) or "(none)",
        )
        await rt.notify_operators(
            {
                "event": "card.frozen_by_policy",
                "agent": record.agent,
                "card_id": record.card_id,
                "last_four": record.last_four,
                "rule": _broken_rule(policy, txn.mcc),
                "mcc": clean_text(txn.mcc, 8),
                "merchant": clean_text(txn.merchant_name),
                "amount": format_amount(txn.amount),
                "currency": txn.currency or "USD",
                "transaction_id": txn.id,
                "transaction_status": txn.status,
                "frozen_at": epoch_to_iso(rt.store.now()),
            }
        )
    return [t.id for t in taken]


# ---- the loop -----------------------------------------------------------------------------------------------


async def _next_wait(rt: Runtime) -> float:
    """Seconds until something is due: the next expiry, a resting card's next look, else IDLE_SECONDS."""
    live = await rt.store.read(cards.live_cards, rt.scope)
    now = rt.store.now()
    waits = [IDLE_SECONDS]
    for card in live:
        if card.closed_reason is not None:
            due_in = 0.0
        elif card.expires_at is not None:
            due_in = max(0.0, card.expires_at - now)
        else:
            continue
        if due_in <= 0.0 and rt.watcher.resting(card.card_id):
            continue  # its pause decides (next_look below)
        waits.append(due_in)
    if (look := rt.watcher.next_look()) is not None:
        waits.append(look)
    return max(0.0, min(waits))


async def run_checkout(rt: Runtime) -> None:
    """The checkout loop (servers): wake on news or at the next due time, look, act; forever."""
    while True:
        try:
            wait = await _next_wait(rt)
        except Exception:
            logger.exception("checkout: could not read which cards are due")
            wait = IDLE_SECONDS
        due, _ = await rt.watcher.wait(wait)
        try:
            if due:
                await check_cards(rt, card_ids=due)
            await check_cards(rt, due_only=True)
        except Exception:  # the loop must outlive any one failure
            logger.exception("checkout round failed")
            await anyio.sleep(1.0)
