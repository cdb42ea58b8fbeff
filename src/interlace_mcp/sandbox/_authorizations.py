"""Simulated card authorizations, their settlement, and 3-D Secure one-time codes.

The lifecycle follows interlace-api.md 4.13 and section 7:

1. ``simulate_auth`` (``POST /vcc/simulate/auth``, ``/_sandbox/simulate-purchase``): with ``three_ds``
   a ``CARD.3DS.OTP`` notification first; then a type-1 consumption, either approved (``PENDING``,
   the amount held on the card) or declined (``FAIL`` with Interlace's business code in
   ``declineCode`` and its description in ``remark``); ``CARD_TRANSACTION.CREATED`` either way.
2. Settlement: ``config.settle_after_seconds`` after approval (0 = at once) the consumption clears to
   ``CLOSED``, or is reversed to ``FAIL`` with the hold released (only on request);
   ``CARD_TRANSACTION.UPDATED`` carries the new state. Nothing runs in the background: due
   settlements happen on the next request or state read (:meth:`settle_due`), or at once on
   ``POST /_sandbox/settle`` (:meth:`settle`).
"""

from __future__ import annotations

import math
import secrets
import uuid
from decimal import Decimal
from typing import Any

from ._cards import CardsMixin
from ._records import (
    DECLINES,
    OTP_TTL_SECONDS,
    TX_CONSUMPTION,
    Card,
    CardTransaction,
    Movement,
    bad,
    fmt,
    not_found,
)
from ._views import transaction_view
from ._webhooks import WebhooksMixin

__all__ = ["AuthorizationsMixin"]


class AuthorizationsMixin(CardsMixin, WebhooksMixin):
    """Purchases on cards: decide, hold, settle, notify."""

    def simulate_auth(
        self,
        account_id: str,
        *,
        card_id: str,
        amount: Decimal,
        currency: str = "USD",
        merchant_name: str = "",
        mcc: str = "",
        merchant_city: str = "",
        merchant_country: str = "",
        three_ds: bool = False,
        risk_decline: bool = False,
    ) -> CardTransaction:
        """Approve (PENDING, balance held) or decline (FAIL with a decline code) a card purchase."""
        card = self.cards.get(card_id)
        if card is None or card.account_id != account_id:
            raise not_found("card")
        if three_ds and not card.deleted:
            self._send_otp(card, amount, currency, merchant_name)
        reason = self._decline_reason(
            card, amount, currency=currency, mcc=mcc, merchant_name=merchant_name, risk_decline=risk_decline
        )
        merchant = {
            "merchant_name": merchant_name,
            "mcc": mcc,
            "merchant_city": merchant_city,
            "merchant_country": merchant_country,
        }
        if reason is None:
            self.card_balance(card).available -= amount
            self.movements.append(Movement("purchase", "", amount))
            settle_at = self.now() + self.config.settle_after_seconds
            tx = self._add_card_tx(card, TX_CONSUMPTION, "PENDING", amount, "", settle_at=settle_at, merchant=merchant)
            self._pending_index()[tx.id] = tx
            self._next_due = min(self._next_due, settle_at)
        else:
            decline = DECLINES[reason]
            tx = self._add_card_tx(
                card,
                TX_CONSUMPTION,
                "FAIL",
                amount,
                "",
                remark=decline.message,
                decline_code=decline.code,
                merchant=merchant,
            )
        self.emit("CARD_TRANSACTION.CREATED", transaction_view(tx))
        if reason is None and self.config.settle_after_seconds <= 0:
            self._settle(tx, "CLOSED")
        return tx

    def _decline_reason(
        self, card: Card, amount: Decimal, *, currency: str, mcc: str, merchant_name: str, risk_decline: bool
    ) -> str | None:
        """The DECLINES key for this purchase, or None to approve it (checked in issuer order)."""
        if card.deleted:
            return "deleted"
        if card.status == "FROZEN":
            return "frozen"
        if card.status != "ACTIVE":
            return "inactive"
        if self.card_expired(card):
            return "expired"
        risky = {m.casefold() for m in self.config.risk_decline_merchants}
        if risk_decline or (merchant_name and merchant_name.casefold() in risky):
            return "fraud"
        control = self._spend_control_decline(card, mcc=mcc, currency=currency)
        if control is not None:
            return control
        if amount > self.card_balance(card).available:
            return "insufficient"
        velocity = self.velocity_available(card)
        if velocity is not None and amount > velocity:
            return "velocity"
        return None

    def _send_otp(self, card: Card, amount: Decimal, currency: str, merchant_name: str) -> dict[str, Any]:
        """Emit ``CARD.3DS.OTP`` with a fresh 6-digit code (resource shape: emulator choice, see the contract)."""
        now = self.now_ms()
        resource = {
            "id": str(uuid.uuid4()),
            "accountId": card.account_id,
            "cardId": card.id,
            "cardLastFour": card.pan[-4:],
            "otp": f"{secrets.randbelow(10**6):06d}",
            "merchantName": merchant_name,
            "transactionAmount": fmt(amount),
            "transactionCurrency": currency,
            "createTime": str(now),
            "expireTime": str(now + OTP_TTL_SECONDS * 1000),
        }
        self.emit("CARD.3DS.OTP", resource)
        return resource

    # ---- settlement -----------------------------------------------------------------------------

    def _settle_deadline(self, tx: CardTransaction) -> float:
        if tx.settle_at is not None:
            return tx.settle_at
        # transactions saved before settlement existed clear as if made with today's setting
        return tx.create_time / 1000 + self.config.settle_after_seconds

    def _pending_index(self) -> dict[str, CardTransaction]:
        # Every request asks what is due: keep the pending authorizations apart instead of scanning
        # every transaction. A replaced table (load, reset) rebuilds the index.
        if self._pending_source is not self.card_transactions:
            self._pending_by_id = {
                t.id: t for t in self.card_transactions.values() if t.type == TX_CONSUMPTION and t.status == "PENDING"
            }
            self._pending_source = self.card_transactions
            self._next_due = min(map(self._settle_deadline, self._pending_by_id.values()), default=math.inf)
        return self._pending_by_id

    def _pending_authorizations(self) -> list[CardTransaction]:
        return sorted(self._pending_index().values(), key=lambda t: t.seq)

    def settle_due(self) -> list[CardTransaction]:
        """Clear every approved authorization whose settlement time has come (oldest first)."""
        pending = self._pending_index()
        now = self.now()
        if now < self._next_due:  # the common case, answered without looking at any transaction
            return []
        due = sorted((t for t in pending.values() if self._settle_deadline(t) <= now), key=lambda t: t.seq)
        for tx in due:
            self._settle(tx, "CLOSED")
        self._next_due = min(map(self._settle_deadline, pending.values()), default=math.inf)
        return due

    def settle(
        self,
        account_id: str,
        *,
        card_id: str | None = None,
        transaction_id: str | None = None,
        status: str = "CLOSED",
    ) -> list[CardTransaction]:
        """Settle now: one authorization, every pending one of a card, or every pending one."""
        if status not in ("CLOSED", "FAIL"):
            raise bad("status must be CLOSED or FAIL")
        if transaction_id is not None:
            tx = self.card_transactions.get(transaction_id)
            if tx is None or tx.account_id != account_id or (card_id is not None and tx.card_id != card_id):
                raise not_found("transaction")
            if tx.type != TX_CONSUMPTION or tx.status != "PENDING":
                raise bad("only a PENDING authorization can be settled")
            chosen = [tx]
        else:
            if card_id is not None and card_id not in self.cards:
                raise not_found("card")
            chosen = [
                t
                for t in self._pending_authorizations()
                if t.account_id == account_id and (card_id is None or t.card_id == card_id)
            ]
        for tx in chosen:
            self._settle(tx, status)
        return chosen

    def _settle(self, tx: CardTransaction, status: str) -> None:
        if status == "FAIL":
            card = self.cards[tx.card_id]
            # a reversed hold goes back to the card, or to the Infinity Account once the card is gone
            target = self.infinity_balance(card.account_id) if card.deleted else self.card_balance(card)
            target.available += tx.amount
            self.movements.append(Movement("purchase_reversal", "", tx.amount))
            tx.remark = "authorization reversed"
        self._pending_index().pop(tx.id, None)
        tx.status = status
        tx.settle_at = None
        tx.update_time = self.now_ms()
        self.emit("CARD_TRANSACTION.UPDATED", transaction_view(tx))
