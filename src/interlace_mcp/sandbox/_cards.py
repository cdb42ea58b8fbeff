"""Prepaid cards: issuing, card transactions, load/unload, status, deletion, expiry, velocity and
spend controls (MCC / currency allow and block lists)."""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from . import _seeds as seeds
from ._base import StateBase
from ._records import (
    GMT8,
    LIMIT_TYPES,
    SPEND_LIST_TYPES,
    SPEND_USAGES,
    TX_CONSUMPTION,
    TX_TRANSFER_IN,
    TX_TRANSFER_OUT,
    ZERO,
    Balance,
    Card,
    CardTransaction,
    Movement,
    SandboxError,
    SpendRule,
    bad,
    fmt,
    insufficient,
    luhn_check_digit,
    not_found,
)

__all__ = ["CardsMixin"]

logger = logging.getLogger(__name__)

_MCC_RE: Final = re.compile(r"[0-9]{4}")
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")


class CardsMixin(StateBase):
    """Cards and the card transactions that move money onto and off them."""

    # ---- issuing --------------------------------------------------------------------------------

    def _new_pan(self) -> str:
        used = {c.pan for c in self.cards.values()}
        while True:
            partial = seeds.PREPAID_BIN + "".join(secrets.choice("0123456789") for _ in range(9))
            pan = partial + luhn_check_digit(partial)
            if pan not in used:
                return pan

    def _expiry(self) -> str:
        now = datetime.fromtimestamp(self.now(), UTC)
        return f"{now.month:02d}/{(now.year + 3) % 100:02d}"

    def issue_prepaid_card(
        self,
        account_id: str,
        *,
        bin_id: str,
        cardholder_id: str,
        reference_id: str,
        card_mode: str,
        amount: Decimal | None,
        label: str = "",
        use_type: str = "default",
    ) -> Card:
        bin_ = self.bins.get(bin_id)
        if bin_ is None:
            raise not_found("BIN")
        if bin_.type != 1:
            raise SandboxError(400, "070033", "card type invalid")
        holder = self.cardholders.get(cardholder_id)
        if holder is None or holder.account_id != account_id:
            raise not_found("cardholder")
        if holder.status != "ACTIVE":
            raise bad("cardholder is not ACTIVE")
        if any(c.account_id == account_id and c.reference_id == reference_id for c in self.cards.values()):
            raise SandboxError(400, "070010", "duplicate referenceId")
        infinity = self.infinity_balance(account_id)
        initial = amount if amount is not None else ZERO
        fee = self.config.issuance_fee
        if infinity.available < initial + fee:
            raise insufficient()

        now = self.now_ms()
        card_id, balance_id = str(uuid.uuid4()), str(uuid.uuid4())
        infinity.available -= initial + fee
        self.balances[balance_id] = Balance(balance_id, account_id, 2, initial, now, card_id)
        card = Card(
            id=card_id,
            account_id=account_id,
            bin_id=bin_id,
            bin=bin_.bin,
            cardholder_id=cardholder_id,
            balance_id=balance_id,
            reference_id=reference_id,
            label=label,
            use_type=use_type,
            card_mode=card_mode,
            status="ACTIVE",
            user_name=f"{holder.first_name} {holder.last_name}",
            pan=self._new_pan(),
            cvv=f"{secrets.randbelow(1000):03d}",
            expiry=self._expiry(),
            create_time=now,
        )
        self.cards[card_id] = card
        if fee > 0:
            self.movements.append(Movement("issuance_fee", "", fee))
        if initial > 0:
            self._add_card_tx(card, TX_TRANSFER_IN, "CLOSED", initial, "", remark="initial amount")
            self.movements.append(Movement("card_issue", "", initial))
        logger.info("sandbox: issued card %s (initial %s)", card_id, fmt(initial))
        return card

    def _add_card_tx(
        self,
        card: Card,
        tx_type: int,
        status: str,
        amount: Decimal,
        client_transaction_id: str,
        *,
        settle_at: float | None = None,
        remark: str = "",
        decline_code: str = "",
        merchant: dict[str, str] | None = None,
    ) -> CardTransaction:
        where = merchant or {}
        tx = CardTransaction(
            id=self._new_snowflake(),
            seq=self._next_seq(),
            account_id=card.account_id,
            card_id=card.id,
            cardholder_id=card.cardholder_id,
            amount=amount,
            fee=ZERO,
            client_transaction_id=client_transaction_id,
            type=tx_type,
            status=status,
            create_time=self.now_ms(),
            settle_at=settle_at,
            remark=remark,
            decline_code=decline_code,
            merchant_name=where.get("merchant_name", ""),
            mcc=where.get("mcc", ""),
            merchant_city=where.get("merchant_city", ""),
            merchant_country=where.get("merchant_country", ""),
        )
        self.card_transactions[tx.id] = tx
        return tx

    # ---- load / unload --------------------------------------------------------------------------

    def card_transfer(
        self, account_id: str, *, direction: str, card_id: str, client_transaction_id: str, amount: Decimal
    ) -> CardTransaction:
        """Load (``in``) or unload (``out``) a prepaid card; a repeated clientTransactionId replays."""
        if direction not in ("in", "out"):
            raise ValueError("direction must be 'in' or 'out'")
        key = (account_id, f"transfer-{direction}", client_transaction_id)
        original = self._dedupe(key)
        if original is not None:
            return self.card_transactions[original]
        card = self.get_card(account_id, card_id)
        card_balance = self.card_balance(card)
        infinity = self.infinity_balance(account_id)
        if direction == "in":
            if card.status != "ACTIVE":
                raise SandboxError(400, "070021", "card status does not allow this operation")
            if infinity.available < amount:
                raise insufficient()
            infinity.available -= amount
            card_balance.available += amount
            tx = self._add_card_tx(card, TX_TRANSFER_IN, "CLOSED", amount, client_transaction_id)
            self.movements.append(Movement("transfer_in", client_transaction_id, amount))
        else:
            if card_balance.available < amount:
                raise insufficient()
            card_balance.available -= amount
            infinity.available += amount
            tx = self._add_card_tx(card, TX_TRANSFER_OUT, "CLOSED", amount, client_transaction_id)
            self.movements.append(Movement("transfer_out", client_transaction_id, amount))
        self.client_txn[key] = tx.id
        return tx

    # ---- status, deletion, expiry ---------------------------------------------------------------

    def set_card_status(self, account_id: str, card_id: str, status: str) -> Card:
        card = self.get_card(account_id, card_id)
        card.status = status
        return card

    def delete_card(self, account_id: str, card_id: str) -> Card:
        """Cancel a card: its remaining balance is swept back to the Infinity Account."""
        card = self.get_card(account_id, card_id)
        card_balance = self.card_balance(card)
        remaining = card_balance.available
        if remaining > 0:
            infinity = self.infinity_balance(account_id)
            card_balance.available = ZERO
            infinity.available += remaining
            self._add_card_tx(card, TX_TRANSFER_OUT, "CLOSED", remaining, "", remark="card deleted")
            self.movements.append(Movement("card_delete_sweep", "", remaining))
        card.deleted = True
        return card

    def expire_card(self, account_id: str, card_id: str) -> Card:
        """Sandbox only: move the card's expiry to last month, so authorizations decline as expired."""
        card = self.get_card(account_id, card_id)
        first = datetime.fromtimestamp(self.now(), UTC).replace(day=1)
        last_month = first - timedelta(days=1)
        card.expiry = f"{last_month.month:02d}/{last_month.year % 100:02d}"
        return card

    def card_expired(self, card: Card) -> bool:
        """A card works until the end of its expiry month (UTC)."""
        try:
            month, year = (int(part) for part in card.expiry.split("/"))
        except ValueError:
            return False
        now = datetime.fromtimestamp(self.now(), UTC)
        return (now.year, now.month) > (2000 + year, month)

    # ---- velocity -------------------------------------------------------------------------------

    def set_velocity(self, account_id: str, card_id: str, limit_type: str, limit: Decimal | None) -> Card:
        if limit_type not in LIMIT_TYPES:
            raise bad(f"transactionLimitsType must be one of {', '.join(LIMIT_TYPES)}")
        card = self.get_card(account_id, card_id)
        if limit_type == "NA":
            card.velocity_type, card.velocity_limit = None, None
        else:
            if limit is None:
                raise bad("amountLimit is required")
            card.velocity_type, card.velocity_limit = limit_type, limit
        return card

    def _window_start_ms(self, limit_type: str) -> int | None:
        """Start of the current velocity window (calendar windows in GMT+8); None = no window."""
        if limit_type == "LIFETIME":
            return 0
        now = datetime.fromtimestamp(self.now(), GMT8)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if limit_type == "DAY":
            start = day
        elif limit_type == "WEEK":
            start = day - timedelta(days=day.weekday())
        elif limit_type == "MONTH":
            start = day.replace(day=1)
        elif limit_type == "QUARTER":
            start = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
        elif limit_type == "YEAR":
            start = day.replace(month=1, day=1)
        else:
            return None
        return int(start.timestamp() * 1000)

    def _consumption(self, card_id: str, since_ms: int | None = None) -> Decimal:
        total = ZERO
        for tx in self.card_transactions.values():
            if (
                tx.card_id == card_id
                and tx.type == TX_CONSUMPTION
                and tx.status in ("PENDING", "CLOSED")
                and (since_ms is None or tx.create_time >= since_ms)
            ):
                total += tx.amount
        return total

    def velocity_available(self, card: Card) -> Decimal | None:
        if card.velocity_type is None or card.velocity_limit is None:
            return None
        if card.velocity_type == "TRANSACTION":
            return card.velocity_limit
        used = self._consumption(card.id, self._window_start_ms(card.velocity_type))
        return max(card.velocity_limit - used, ZERO)

    # ---- spend controls -------------------------------------------------------------------------

    def set_spend_rule(
        self,
        account_id: str,
        *,
        usage: str,
        keywords: str,
        list_type: str,
        rule_id: int | None = None,
        card_ids: list[str] | None = None,
        card_bin_ids: list[str] | None = None,
    ) -> SpendRule:
        """Insert (``rule_id`` None) or update a spend-control rule; an identical rule is returned as is."""
        if usage not in SPEND_USAGES:
            raise bad(f"usage must be one of {', '.join(SPEND_USAGES)} (SCENARIO is not modelled by the emulator)")
        if list_type not in SPEND_LIST_TYPES:
            raise bad(f"type must be one of {', '.join(SPEND_LIST_TYPES)}")
        pattern = _MCC_RE if usage == "MCC" else _CURRENCY_RE
        if not pattern.fullmatch(keywords):
            raise bad("keywords must be a 4-digit MCC" if usage == "MCC" else "keywords must be a 3-letter currency")
        cards = sorted(set(card_ids or ()))
        bins = sorted(set(card_bin_ids or ()))
        for card_id in cards:
            self.get_card(account_id, card_id)
        for bin_id in bins:
            if bin_id not in self.bins:
                raise not_found("BIN")
        if rule_id is not None:
            rule = self.spend_rules.get(rule_id)
            if rule is None or rule.account_id != account_id:
                raise not_found("spend control")
            rule.usage, rule.keywords, rule.list_type = usage, keywords, list_type
            rule.card_ids, rule.card_bin_ids = cards, bins
            return rule
        for rule in self.spend_rules.values():
            if (rule.account_id, rule.usage, rule.keywords, rule.list_type, rule.card_ids, rule.card_bin_ids) == (
                account_id,
                usage,
                keywords,
                list_type,
                cards,
                bins,
            ):
                return rule
        new_id = max(self.spend_rules, default=0) + 1
        rule = SpendRule(new_id, account_id, usage, keywords, list_type, self.now_ms(), cards, bins)
        self.spend_rules[new_id] = rule
        return rule

    def delete_spend_rule(self, account_id: str, rule_id: int) -> SpendRule:
        rule = self.spend_rules.get(rule_id)
        if rule is None or rule.account_id != account_id:
            raise not_found("spend control")
        del self.spend_rules[rule_id]
        return rule

    def spend_rules_for(
        self, account_id: str, *, card_id: str | None = None, bin_id: str | None = None
    ) -> list[SpendRule]:
        """The account's rules; with ``card_id`` those that apply to that card; with ``bin_id`` that BIN's."""
        rules = [r for r in self.spend_rules.values() if r.account_id == account_id]
        if card_id is not None:
            card = self.get_card(account_id, card_id)
            rules = [r for r in rules if r.applies_to(card)]
        if bin_id is not None:
            rules = [r for r in rules if bin_id in r.card_bin_ids]
        return sorted(rules, key=lambda r: r.id)

    def _spend_control_decline(self, card: Card, *, mcc: str, currency: str) -> str | None:
        """The DECLINES key a card's rules give this purchase, or None when they allow it."""
        rules = [r for r in self.spend_rules.values() if r.account_id == card.account_id and r.applies_to(card)]
        for usage, value, prefix in (("TRANSACTION_CURRENCY", currency, "currency"), ("MCC", mcc, "mcc")):
            mine = [r for r in rules if r.usage == usage]
            if any(r.list_type == "BLACKLIST" and r.keywords == value for r in mine):
                return f"{prefix}_blacklist"
            allowed = [r.keywords for r in mine if r.list_type == "WHITELIST"]
            if allowed and value not in allowed:
                return f"{prefix}_whitelist"
        return None
