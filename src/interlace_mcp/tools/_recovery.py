"""Settling requests whose upstream outcome is unknown, and comparing the ledger with Interlace.

A request stays ``executing`` (its reservation held) when the process died or Interlace gave no usable
answer. :func:`recover` looks each one up at Interlace by its stored keys (``clientTransactionId`` /
``referenceId``): found -> commit (the result is stored for the agent's replay); definitely absent ->
release. It never sends a money movement itself. Requests touched within ``grace`` seconds are left
alone: another process may still be driving them.

:func:`reconcile` compares the ledger's completed money requests with Interlace's card transactions
and transfers and reports every difference; it changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlace_mcp.client import InterlaceError, NotFoundError
from interlace_mcp.money import format_amount
from interlace_mcp.policy import RequestRecord
from interlace_mcp.tools._flow import in_thread
from interlace_mcp.tools._results import MoneyMovement
from interlace_mcp.tools._runtime import Runtime

__all__ = ["Difference", "ReconcileReport", "RecoveryReport", "reconcile", "recover"]

logger = logging.getLogger("interlace_mcp.recovery")

_CARD_TRANSFERS = {"top_up_card": 2, "withdraw_from_card": 3}


@dataclass
class RecoveryReport:
    committed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    skipped_recent: int = 0


async def _lookup(rt: Runtime, record: RequestRecord) -> tuple[bool | None, str | None]:
    """(True, upstream id) found; (False, None) definitely absent; (None, None) cannot tell."""
    tool = record.key.tool
    try:
        if tool in _CARD_TRANSFERS and record.card_id:
            key = record.keys["transfer"]
            page = await rt.api.list_card_transactions(card_id=record.card_id, client_transaction_id=key)
            hits = [t for t in page.items if t.client_transaction_id == key and t.status != "FAIL"]
            return (True, hits[0].id) if hits else (False, None)
        if tool == "create_transfer":
            key = record.keys["transfer"]
            transfers = await rt.api.list_transfers(client_transaction_id=key)
            found = [t for t in transfers.items if t.client_transaction_id == key]
            return (True, found[0].id) if found else (False, None)
        if tool == "issue_card":
            cards = await rt.api.list_cards(reference_id=record.keys["create"])
            if cards.items:
                card = cards.items[0]
                await in_thread(
                    rt.ledger.register_card, record.key.scope, record.key.agent, card.id, label=card.label,
                    request_id=record.key.request_id,
                )  # fmt: skip
                return True, card.id
            return False, None
        if tool == "close_card" and record.card_id:
            try:
                await rt.api.get_card(record.card_id)
            except NotFoundError:
                await in_thread(rt.ledger.mark_card_deleted, record.key.scope, record.card_id)
                return True, record.progress.get("unload_txn")
            # Still there. If the unload never reached Interlace, nothing moved: release, so a close stuck on
            # a stale unload amount (e.g. the card spent meanwhile) does not stay in progress forever.
            if record.progress.get("unload_txn") is None and "unload" in record.keys:
                key = record.keys["unload"]
                page = await rt.api.list_card_transactions(card_id=record.card_id, client_transaction_id=key)
                if not any(t.client_transaction_id == key and t.status != "FAIL" for t in page.items):
                    return False, None
            return None, None  # the unload happened: the agent's retry finishes the close with the stored keys
    except InterlaceError as exc:
        logger.warning("recovery lookup of %s/%s failed: %s", tool, record.key.request_id, exc)
        return None, None
    return None, None


async def recover(rt: Runtime, *, grace: float = 120.0) -> RecoveryReport:
    """Settle this upstream's unfinished requests by looking them up; never sends a movement."""
    report = RecoveryReport()
    now = rt.ledger.now()
    for record in await in_thread(rt.ledger.open_requests, rt.scope):
        label = f"{record.key.agent}/{record.key.tool}/{record.key.request_id}"
        if now - record.updated_at < grace:
            report.skipped_recent += 1
            continue
        found, upstream_id = await _lookup(rt, record)
        if found is None:
            report.unresolved.append(label)
            continue
        if found:
            amount = record.amount if record.amount > 0 else Decimal(str(record.progress.get("unload", "0")))
            movement = MoneyMovement(
                status="completed",
                amount=format_amount(amount),
                currency=record.currency,
                request_id=record.key.request_id,
                transaction_id=upstream_id,
                sandbox=rt.sandbox,
                message="confirmed at Interlace after an interrupted call (settled by reconciliation)",
            )
            await in_thread(rt.ledger.complete, record.key, movement.model_dump(mode="json"))
            report.committed.append(label)
        else:
            await in_thread(rt.ledger.abandon, record.key)
            report.released.append(label)
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
    records = await in_thread(rt.ledger.completed_requests, rt.scope, since)
    expected: dict[str, tuple[RequestRecord, Decimal]] = {}
    for record in records:
        result = record.result or {}
        if record.key.tool in _CARD_TRANSFERS or record.key.tool == "create_transfer":
            expected[record.keys["transfer"]] = (record, Decimal(str(result.get("amount") or "0")))
        elif record.key.tool == "close_card" and record.progress.get("unload_txn"):
            expected[record.keys["unload"]] = (record, Decimal(str(result.get("amount") or "0")))
    seen: set[str] = set()
    agents_cards = await in_thread(rt.ledger.all_cards, rt.scope)
    for card in agents_cards:
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
                record, amount = expected[key]
                if txn.amount != amount:
                    report.differences.append(
                        Difference(
                            "amount_mismatch",
                            card.agent,
                            f"{record.key.tool} {record.key.request_id}: ledger {format_amount(amount)},"
                            f" Interlace {format_amount(txn.amount)}",
                        )
                    )
                else:
                    report.matched += 1
            if page_no * 100 >= page.total or not page.items:
                break
            page_no += 1
    for key, (record, amount) in expected.items():
        if key in seen:
            continue
        if record.key.tool == "create_transfer":
            try:
                found = await rt.api.list_transfers(client_transaction_id=key)
            except InterlaceError as exc:
                report.differences.append(Difference("unresolved", record.key.agent, f"transfer {key}: {exc}"))
                continue
            hit = next((t for t in found.items if t.client_transaction_id == key), None)
            if hit is not None:
                if hit.amount is not None and hit.amount != amount:
                    report.differences.append(
                        Difference(
                            "amount_mismatch",
                            record.key.agent,
                            f"create_transfer {record.key.request_id}: ledger {format_amount(amount)},"
                            f" Interlace {format_amount(hit.amount)}",
                        )
                    )
                else:
                    report.matched += 1
                continue
        report.differences.append(
            Difference(
                "ledger_only",
                record.key.agent,
                f"{record.key.tool} {record.key.request_id} ({format_amount(amount)} {record.currency}) is completed"
                " in the ledger but Interlace has no movement with its clientTransactionId",
            )
        )
    for record in await in_thread(rt.ledger.open_requests, rt.scope):
        report.differences.append(
            Difference(
                "unresolved",
                record.key.agent,
                f"{record.key.tool} {record.key.request_id} is still in progress (reservation held)",
            )
        )
    return report
