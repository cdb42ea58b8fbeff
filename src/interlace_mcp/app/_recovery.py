"""Settling requests whose upstream outcome is unknown, and comparing the ledger with Interlace.

A request stays ``executing`` (its reservation held) when the process died or Interlace gave no usable
answer. :func:`recover` rebuilds each one's operation from its record and asks it to ``find`` its movement
by the stored keys (``clientTransactionId`` / ``referenceId``): done -> commit (the result is stored for
the agent's replay); definitely absent -> release. It never sends a money movement itself. Requests
touched within ``grace`` seconds are left alone: another process may still be driving them.

:func:`reconcile` compares the ledger's completed money requests -- what each operation says it left
upstream -- with Interlace's card transactions and transfers, and reports every difference; it changes
nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlace_mcp.app._runtime import Runtime
from interlace_mcp.client import InterlaceError
from interlace_mcp.money import format_amount
from interlace_mcp.operations import CardTerms, Execution, Expected, MoneyMovement, operation_for
from interlace_mcp.policy import RequestRecord, Tx, cards, requests

__all__ = ["Difference", "ReconcileReport", "RecoveryReport", "reconcile", "recover"]

logger = logging.getLogger("interlace_mcp.recovery")


@dataclass
class RecoveryReport:
    committed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    skipped_recent: int = 0


def _settle(tx: Tx, record: RequestRecord, movement: MoneyMovement, new_card: tuple[str, str | None] | None,
            deleted_card: str | None, terms: CardTerms | None = None) -> None:  # fmt: skip
    if new_card is not None:
        cards.register_card(tx, record.key.scope, record.key.agent, new_card[0], label=new_card[1],
                            request_id=record.key.request_id)  # fmt: skip
        if terms is not None:
            cards.set_card_terms(tx, record.key.scope, new_card[0], single_use=terms.single_use,
                                 expires_at=terms.expires_at, last_four=terms.last_four)  # fmt: skip
    if deleted_card is not None:
        cards.mark_card_deleted(tx, record.key.scope, deleted_card)
    requests.complete(tx, record.key, movement.model_dump(mode="json"),
                      card_id=new_card[0] if new_card is not None else None)  # fmt: skip


async def recover(rt: Runtime, *, grace: float = 120.0) -> RecoveryReport:
    """Settle this upstream's unfinished requests by looking them up; never sends a movement."""
    report = RecoveryReport()
    now = rt.store.now()
    deps = rt.deps()
    for record in await rt.store.read(requests.open_requests, rt.scope):
        label = f"{record.key.agent}/{record.key.tool}/{record.key.request_id}"
        if now - record.updated_at < grace:
            report.skipped_recent += 1
            continue
        op = operation_for(record)
        if op is None:
            report.unresolved.append(label)
            continue
        ex = Execution(deps, record.key.agent, rt.policies.for_agent(record.key.agent), record.key, record, True)
        try:
            found = await op.find(ex)
        except InterlaceError as exc:
            logger.warning("recovery lookup of %s/%s failed: %s", record.key.tool, record.key.request_id, exc)
            report.unresolved.append(label)
            continue
        if found.state == "absent":
            await rt.store.write(requests.abandon, record.key)
            report.released.append(label)
        elif found.state == "done" and found.outcome is not None:
            outcome = found.outcome
            amount = outcome.amount if outcome.amount is not None else record.amount
            movement = MoneyMovement(
                status="completed",
                amount=format_amount(amount),
                currency=record.currency,
                request_id=record.key.request_id,
                transaction_id=outcome.transaction_id,
                sandbox=rt.sandbox,
                message="confirmed at Interlace after an interrupted call (settled by reconciliation)",
            )
            await rt.store.write(_settle, record, movement, outcome.new_card, outcome.deleted_card, outcome.card_terms)
            report.committed.append(label)
        else:  # money moved but a step is left (a close's delete): the agent's retry finishes it
            report.unresolved.append(label)
    if report.committed or report.released or report.unresolved:
        logger.warning(
            "recovery: %d committed, %d released, %d unresolved, %d too recent",
            len(report.committed),
            len(report.released),
            len(report.unresolved),
            report.skipped_recent,
        )
    return report


@dataclass(frozen=True)
class Difference:
    kind: str  # ledger_only | upstream_only | amount_mismatch | unresolved
    agent: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "agent": self.agent, "detail": self.detail}


@dataclass
class ReconcileReport:
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def reconcile(rt: Runtime, *, since: float | None = None) -> ReconcileReport:
    """Compare completed ledger requests with Interlace's card transactions and transfers."""
    report = ReconcileReport()
    expected: dict[str, tuple[RequestRecord, Expected]] = {}
    for record in await rt.store.read(requests.completed_requests, rt.scope, since):
        op = operation_for(record)
        for movement in op.expected(record) if op is not None else []:
            expected[movement.key] = (record, movement)
    seen: set[str] = set()
    for card in await rt.store.read(cards.all_cards, rt.scope):
        page_no = 1
        while True:
            try:
                page = await rt.api.list_card_transactions(card_id=card.card_id, page=page_no, limit=100)
            except InterlaceError as exc:
                report.differences.append(Difference("unresolved", card.agent, f"card {card.card_id}: {exc}"))
                break
            for txn in page.items:
                key = txn.client_transaction_id
                if txn.type not in (2, 3) or not key or txn.status == "FAIL":
                    continue  # purchases and initial loads are not ours to match by key
                seen.add(key)
                if key not in expected:
                    report.differences.append(
                        Difference(
                            "upstream_only",
                            card.agent,
                            f"card {card.card_id}: {format_amount(txn.amount)} {txn.currency} (type {txn.type},"
                            f" clientTransactionId {key}) is not in the ledger",
                        )
                    )
                    continue
                record, movement = expected[key]
                _compare(report, record, movement.amount, txn.amount)
            if page_no * 100 >= page.total or not page.items:
                break
            page_no += 1
    for key, (record, movement) in expected.items():
        if key in seen:
            continue
        if movement.card_id is None:  # a business transfer: look it up by its key
            try:
                found = await rt.api.list_transfers(client_transaction_id=key)
            except InterlaceError as exc:
                report.differences.append(Difference("unresolved", record.key.agent, f"transfer {key}: {exc}"))
                continue
            hit = next((t for t in found.items if t.client_transaction_id == key), None)
            if hit is not None:
                _compare(report, record, movement.amount, hit.amount)
                continue
        report.differences.append(
            Difference(
                "ledger_only",
                record.key.agent,
                f"{record.key.tool} {record.key.request_id} ({format_amount(movement.amount)} {record.currency}) is"
                " completed in the ledger but Interlace has no movement with its clientTransactionId",
            )
        )
    for record in await rt.store.read(requests.open_requests, rt.scope):
        report.differences.append(
            Difference(
                "unresolved",
                record.key.agent,
                f"{record.key.tool} {record.key.request_id} is still in progress (reservation held)",
            )
        )
    return report


def _compare(report: ReconcileReport, record: RequestRecord, ledger: Decimal, upstream: Decimal | None) -> None:
    if upstream is not None and upstream != ledger:
        report.differences.append(
            Difference(
                "amount_mismatch",
                record.key.agent,
                f"{record.key.tool} {record.key.request_id}: ledger {format_amount(ledger)},"
                f" Interlace {format_amount(upstream)}",
            )
        )
    else:
        report.matched += 1
