"""The emulator's database and ledger: accounts, balances, cards, transactions, tokens, faults.

Every operation here is synchronous and either fails with :class:`SandboxError` *before* it mutates
anything, or succeeds completely; the HTTP layer serialises calls with a lock. Amounts are
``Decimal`` with exactly two places; PAN/CVV never leave this module except through
:meth:`SandboxState.card_details_view` (encrypted) and the state file.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

from interlace_mcp.money import format_amount

from . import _seeds as seeds
from ._crypto import encrypt_card_field

__all__ = [
    "FAULT_KINDS",
    "LIMIT_TYPES",
    "Account",
    "Balance",
    "Bin",
    "Card",
    "CardTransaction",
    "Cardholder",
    "FaultRule",
    "Movement",
    "SandboxConfig",
    "SandboxError",
    "SandboxState",
    "Transfer",
    "luhn_valid",
]

logger = logging.getLogger(__name__)

CURRENCY: Final = "USD"
CENT: Final = Decimal("0.01")
ZERO: Final = Decimal("0.00")
GMT8: Final = timezone(timedelta(hours=8))
STATE_VERSION: Final = 1
AUTH_CODE_TTL: Final = 600.0
REFRESH_TOKEN_TTL: Final = 30 * 86400.0
PRIVATE_INFO_TOKEN_TTL: Final = 300.0
DEFAULT_TOKEN_TTL: Final = 86400

TX_CONSUMPTION: Final = 1
TX_TRANSFER_IN: Final = 2
TX_TRANSFER_OUT: Final = 3

LIMIT_TYPES: Final = ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "TRANSACTION", "LIFETIME", "NA")
FAULT_KINDS: Final = ("latency", "error", "rate_limit", "timeout", "reset", "fail_after_commit")
_HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")

BILLING_ADDRESS: Final[dict[str, str]] = {
    "addressLine1": "1 Sandbox Way",
    "addressLine2": "",
    "city": "San Francisco",
    "state": "CA",
    "postalCode": "94105",
    "country": "US",
}


class SandboxError(Exception):
    """A business error the emulator answers with: HTTP status, Interlace code, message."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"{http_status} {code} {message}")
        self.http_status = http_status
        self.code = code
        self.message = message


def _bad(message: str) -> SandboxError:
    return SandboxError(400, "400002", message)


def _not_found(what: str) -> SandboxError:
    return SandboxError(404, "404001", f"{what} not found")


def _insufficient() -> SandboxError:
    return SandboxError(400, "100100001", "sub amount is error")


def _fmt(amount: Decimal) -> str:
    return format_amount(amount)


def luhn_valid(number: str) -> bool:
    """True when ``number`` is all ASCII digits and passes the Luhn check."""
    if not number or not number.isascii() or not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _luhn_check_digit(partial: str) -> str:
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: some check digit always fits")


# --------------------------------------------------------------------------------------------------
# records


_R = TypeVar("_R", bound="_Record")


@dataclass
class _Record:
    """A dataclass that round-trips through JSON; fields named in DECIMALS are stored as strings."""

    DECIMALS: ClassVar[frozenset[str]] = frozenset()

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, list):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def load(cls: type[_R], raw: dict[str, Any]) -> _R:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in raw:
                value = raw[f.name]
                if f.name in cls.DECIMALS and value is not None:
                    value = Decimal(str(value))
                kwargs[f.name] = value
        return cls(**kwargs)


@dataclass
class Account(_Record):
    id: str
    name: str
    display_id: str
    type: str = "MasterAccount"
    status: str = "ACTIVE"


@dataclass
class Balance(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"available"})

    id: str
    account_id: str
    object_type: int  # 0 Infinity, 2 prepaid card
    available: Decimal
    create_time: int
    card_id: str | None = None


@dataclass
class Bin(_Record):
    id: str
    bin: str
    type: int  # 1 prepaid, 0 budget
    network: str = "VISA"
    support_physical_card: bool = False


@dataclass
class Cardholder(_Record):
    id: str
    account_id: str
    first_name: str
    last_name: str
    email: str
    card_bin_list: list[str] = field(default_factory=list)
    status: str = "ACTIVE"


@dataclass
class Card(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"velocity_limit"})

    id: str
    account_id: str
    bin_id: str
    bin: str
    cardholder_id: str
    balance_id: str
    reference_id: str
    label: str
    use_type: str
    card_mode: str
    status: str
    user_name: str
    pan: str
    cvv: str
    expiry: str  # "MM/YY"
    create_time: int
    velocity_type: str | None = None
    velocity_limit: Decimal | None = None
    deleted: bool = False


@dataclass
class CardTransaction(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"amount", "fee"})

    id: str
    seq: int
    account_id: str
    card_id: str
    cardholder_id: str
    amount: Decimal
    fee: Decimal
    client_transaction_id: str
    type: int
    status: str
    create_time: int
    merchant_name: str = ""
    mcc: str = ""
    merchant_city: str = ""
    merchant_country: str = ""
    remark: str = ""
    detail: str = ""


@dataclass
class Transfer(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"amount"})

    id: str
    seq: int
    account_id: str
    client_transaction_id: str
    transfer_type: str  # SAME_ACCOUNT / DIFFERENT_ACCOUNT
    amount: Decimal
    create_time: int
    from_balance_id: str
    from_account_id: str
    to_balance_id: str
    to_account_id: str
    status: str = "CLOSED"


@dataclass
class Movement(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"amount"})

    kind: str
    client_transaction_id: str
    amount: Decimal


@dataclass
class Grant(_Record):
    """An issued credential: who it belongs to (client id or card id) and when it expires."""

    subject: str
    expires_at: float


@dataclass
class SandboxConfig(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"issuance_fee"})

    token_ttl_seconds: int = DEFAULT_TOKEN_TTL
    issuance_fee: Decimal = ZERO
    webhook_url: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "token_ttl_seconds": self.token_ttl_seconds,
            "issuance_fee": _fmt(self.issuance_fee),
            "webhook_url": self.webhook_url,
        }


@dataclass
class FaultRule(_Record):
    """One injected fault; ``times`` None = applies until cleared."""

    id: str
    path: str
    kind: str
    method: str | None = None
    status: int | None = None
    retry_after: int | None = None
    delay_ms: int | None = None
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.path == path and (self.method is None or self.method == method.upper())

    @property
    def effective_status(self) -> int:
        if self.kind == "rate_limit":
            return 429
        return 500 if self.status is None else self.status

    @property
    def delay_seconds(self) -> float:
        default = 30000 if self.kind == "timeout" else 0
        return (default if self.delay_ms is None else self.delay_ms) / 1000.0

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "method": self.method,
            "kind": self.kind,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "times": self.times,
        }


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} out of range")
    return value


# --------------------------------------------------------------------------------------------------
# the state


IdempotencyScope = tuple[str, str, str]  # (accountId, Idempotency-Key, path)
ClientTxnKey = tuple[str, str, str]  # (accountId, endpoint, clientTransactionId)


class SandboxState:
    """All of the emulator's data. Not thread-safe; the app serialises access with a lock."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self.config = SandboxConfig()
        self.accounts: dict[str, Account] = {}
        self.balances: dict[str, Balance] = {}
        self.bins: dict[str, Bin] = {}
        self.cardholders: dict[str, Cardholder] = {}
        self.cards: dict[str, Card] = {}
        self.card_transactions: dict[str, CardTransaction] = {}
        self.transfers: dict[str, Transfer] = {}
        #: finished records hold the first success's ``data`` as JSON text; None = in progress.
        self.idempotency: dict[IdempotencyScope, str | None] = {}
        self.client_txn: dict[ClientTxnKey, str] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.auth_codes: dict[str, Grant] = {}
        self.private_info_tokens: dict[str, Grant] = {}
        self.requests: dict[str, int] = {}
        self.movements: list[Movement] = []
        self.faults: list[FaultRule] = []
        self._seq = 0
        self.reset()

    # ---- basics ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the seeds (in place, so an app holding this object sees the reset)."""
        now = self.now_ms()
        self.config = SandboxConfig()
        self.accounts = {
            seeds.ACCOUNT_ID: Account(seeds.ACCOUNT_ID, seeds.ACCOUNT_NAME, "100000001"),
            seeds.PAYEE_ACCOUNT_ID: Account(seeds.PAYEE_ACCOUNT_ID, seeds.PAYEE_ACCOUNT_NAME, "100000002"),
        }
        self.balances = {
            seeds.INFINITY_BALANCE_ID: Balance(
                seeds.INFINITY_BALANCE_ID, seeds.ACCOUNT_ID, 0, seeds.INITIAL_INFINITY_BALANCE, now
            ),
            seeds.PAYEE_BALANCE_ID: Balance(seeds.PAYEE_BALANCE_ID, seeds.PAYEE_ACCOUNT_ID, 0, ZERO, now),
        }
        self.bins = {
            seeds.PREPAID_BIN_ID: Bin(seeds.PREPAID_BIN_ID, seeds.PREPAID_BIN, 1),
            seeds.BUDGET_BIN_ID: Bin(seeds.BUDGET_BIN_ID, seeds.BUDGET_BIN, 0),
        }
        first, last = seeds.CARDHOLDER_NAME.split(" ", 1)
        self.cardholders = {
            seeds.CARDHOLDER_ID: Cardholder(
                seeds.CARDHOLDER_ID,
                seeds.ACCOUNT_ID,
                first,
                last,
                "agent.holder@sandbox.invalid",
                [seeds.PREPAID_BIN_ID, seeds.BUDGET_BIN_ID],
            )
        }
        self.cards = {}
        self.card_transactions = {}
        self.transfers = {}
        self.idempotency = {}
        self.client_txn = {}
        self.access_tokens = {}
        self.refresh_tokens = {}
        self.auth_codes = {}
        self.private_info_tokens = {}
        self.requests = {}
        self.movements = []
        self.faults = []
        self._seq = 0

    def now(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_snowflake(self) -> str:
        taken = self.card_transactions.keys() | self.transfers.keys()
        while True:
            candidate = str(10**18 + secrets.randbelow(9 * 10**18))
            if candidate not in taken:
                return candidate

    def count_request(self, label: str) -> None:
        self.requests[label] = self.requests.get(label, 0) + 1

    # ---- OAuth ----------------------------------------------------------------------------------

    def authorize(self, client_id: str) -> tuple[str, int]:
        """Issue a single-use authorization code (10 min); returns (code, timestamp seconds)."""
        if not hmac.compare_digest(client_id.encode(), seeds.CLIENT_ID.encode()):
            raise SandboxError(401, "401001", "unknown clientId")
        self._purge_expired()
        code = secrets.token_hex(16)
        self.auth_codes[code] = Grant(client_id, self.now() + AUTH_CODE_TTL)
        return code, int(self.now())

    def exchange_code(self, client_id: str, code: str, client_secret: str | None) -> dict[str, Any]:
        """Trade an authorization code (burned on any attempt) for an access + refresh token."""
        grant = self.auth_codes.pop(code, None)
        ok = (
            grant is not None
            and grant.subject == client_id
            and grant.expires_at > self.now()
            and (client_secret is None or hmac.compare_digest(client_secret.encode(), seeds.CLIENT_SECRET.encode()))
        )
        if not ok:
            raise SandboxError(401, "401002", "authorization code invalid, used or expired")
        return self._issue_tokens(client_id)

    def refresh(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        """Rotate: a new access + refresh token; the old refresh token stops working."""
        grant = self.refresh_tokens.get(refresh_token)
        if grant is None or grant.subject != client_id or grant.expires_at <= self.now():
            raise SandboxError(401, "401002", "refresh token invalid or expired")
        del self.refresh_tokens[refresh_token]
        return self._issue_tokens(client_id)

    def _issue_tokens(self, client_id: str) -> dict[str, Any]:
        self._purge_expired()
        ttl = self.config.token_ttl_seconds
        access, refresh = secrets.token_hex(20), secrets.token_hex(32)
        self.access_tokens[access] = Grant(client_id, self.now() + ttl)
        self.refresh_tokens[refresh] = Grant(client_id, self.now() + max(float(ttl), REFRESH_TOKEN_TTL))
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": ttl,
            "timestamp": int(self.now()),
        }

    def access_token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        grant = self.access_tokens.get(token)
        return grant is not None and grant.expires_at > self.now()

    def expire_access_tokens(self) -> int:
        """Invalidate every issued access token (refresh tokens keep working); returns how many."""
        count = len(self.access_tokens)
        self.access_tokens.clear()
        return count

    def _purge_expired(self) -> None:
        now = self.now()
        for table in (self.access_tokens, self.refresh_tokens, self.auth_codes, self.private_info_tokens):
            for key in [k for k, g in table.items() if g.expires_at <= now]:
                del table[key]

    # ---- idempotency ----------------------------------------------------------------------------

    def idempotency_begin(self, scope: IdempotencyScope) -> str | None:
        """None = go ahead (now marked in progress); a string = replay this stored ``data`` JSON."""
        if scope in self.idempotency:
            stored = self.idempotency[scope]
            if stored is None:
                raise SandboxError(409, "409001", "transaction in progress")
            return stored
        self.idempotency[scope] = None
        return None

    def idempotency_finish(self, scope: IdempotencyScope, data_json: str) -> None:
        self.idempotency[scope] = data_json

    def idempotency_abort(self, scope: IdempotencyScope) -> None:
        if scope in self.idempotency and self.idempotency[scope] is None:
            del self.idempotency[scope]

    # ---- faults ---------------------------------------------------------------------------------

    def add_fault(
        self,
        path: str,
        kind: str,
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        delay_ms: int | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Register a fault rule (see the control API); raises ValueError on a malformed rule."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("path must be an absolute API path like /open-api/v3/cards/transfer-in")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if method is not None:
            if not isinstance(method, str) or method.upper() not in _HTTP_METHODS:
                raise ValueError(f"method must be one of {', '.join(_HTTP_METHODS)}")
            method = method.upper()
        if kind == "fail_after_commit" and status == 0:
            pass
        elif status is not None:
            _check_int("status", status, 400, 599)
        _check_int("retry_after", retry_after, 0, 86400)
        _check_int("delay_ms", delay_ms, 0, 600_000)
        _check_int("times", times, 1)
        rule = FaultRule(uuid.uuid4().hex, path, kind, method, status, retry_after, delay_ms, times)
        self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching this request, counting one use of it."""
        for rule in self.faults:
            if rule.matches(method, path):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.faults.remove(rule)
                return rule
        return None

    # ---- lookups --------------------------------------------------------------------------------

    def infinity_balance(self, account_id: str) -> Balance:
        for balance in self.balances.values():
            if balance.account_id == account_id and balance.object_type == 0:
                return balance
        raise SandboxError(400, "010021", "account balance does not exist")

    def get_card(self, account_id: str, card_id: str) -> Card:
        card = self.cards.get(card_id)
        if card is None or card.deleted or card.account_id != account_id:
            raise _not_found("card")
        return card

    def card_balance(self, card: Card) -> Balance:
        return self.balances[card.balance_id]

    def _dedupe(self, key: ClientTxnKey) -> str | None:
        return self.client_txn.get(key)

    # ---- cards ----------------------------------------------------------------------------------

    def _new_pan(self) -> str:
        used = {c.pan for c in self.cards.values()}
        while True:
            partial = seeds.PREPAID_BIN + "".join(secrets.choice("0123456789") for _ in range(9))
            pan = partial + _luhn_check_digit(partial)
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
            raise _not_found("BIN")
        if bin_.type != 1:
            raise SandboxError(400, "070033", "card type invalid")
        holder = self.cardholders.get(cardholder_id)
        if holder is None or holder.account_id != account_id:
            raise _not_found("cardholder")
        if holder.status != "ACTIVE":
            raise _bad("cardholder is not ACTIVE")
        if any(c.account_id == account_id and c.reference_id == reference_id for c in self.cards.values()):
            raise SandboxError(400, "070010", "duplicate referenceId")
        infinity = self.infinity_balance(account_id)
        initial = amount if amount is not None else ZERO
        fee = self.config.issuance_fee
        if infinity.available < initial + fee:
            raise _insufficient()

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
        logger.info("sandbox: issued card %s (initial %s)", card_id, _fmt(initial))
        return card

    def _add_card_tx(
        self,
        card: Card,
        tx_type: int,
        status: str,
        amount: Decimal,
        client_transaction_id: str,
        **extra: str,
    ) -> CardTransaction:
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
            **extra,
        )
        self.card_transactions[tx.id] = tx
        return tx

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
                raise _insufficient()
            infinity.available -= amount
            card_balance.available += amount
            tx = self._add_card_tx(card, TX_TRANSFER_IN, "CLOSED", amount, client_transaction_id)
            self.movements.append(Movement("transfer_in", client_transaction_id, amount))
        else:
            if card_balance.available < amount:
                raise _insufficient()
            card_balance.available -= amount
            infinity.available += amount
            tx = self._add_card_tx(card, TX_TRANSFER_OUT, "CLOSED", amount, client_transaction_id)
            self.movements.append(Movement("transfer_out", client_transaction_id, amount))
        self.client_txn[key] = tx.id
        return tx

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

    def set_velocity(self, account_id: str, card_id: str, limit_type: str, limit: Decimal | None) -> Card:
        if limit_type not in LIMIT_TYPES:
            raise _bad(f"transactionLimitsType must be one of {', '.join(LIMIT_TYPES)}")
        card = self.get_card(account_id, card_id)
        if limit_type == "NA":
            card.velocity_type, card.velocity_limit = None, None
        else:
            if limit is None:
                raise _bad("amountLimit is required")
            card.velocity_type, card.velocity_limit = limit_type, limit
        return card

    # ---- velocity -------------------------------------------------------------------------------

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

    # ---- simulated authorization ----------------------------------------------------------------

    def simulate_auth(
        self,
        account_id: str,
        *,
        card_id: str,
        amount: Decimal,
        merchant_name: str = "",
        mcc: str = "",
        merchant_city: str = "",
        merchant_country: str = "",
    ) -> CardTransaction:
        """Approve (PENDING, balance held) or decline (FAIL with a remark) a card purchase."""
        card = self.get_card(account_id, card_id)
        card_balance = self.card_balance(card)
        velocity = self.velocity_available(card)
        if card.status != "ACTIVE":
            remark = "card frozen" if card.status == "FROZEN" else "card not active"
        elif amount > card_balance.available:
            remark = "insufficient balance"
        elif velocity is not None and amount > velocity:
            remark = "exceeds velocity limit"
        else:
            remark = ""
        if not remark:
            card_balance.available -= amount
            self.movements.append(Movement("purchase", "", amount))
        return self._add_card_tx(
            card,
            TX_CONSUMPTION,
            "FAIL" if remark else "PENDING",
            amount,
            "",
            merchant_name=merchant_name,
            mcc=mcc,
            merchant_city=merchant_city,
            merchant_country=merchant_country,
            remark=remark,
        )

    # ---- business transfers ---------------------------------------------------------------------

    def business_transfer(
        self,
        account_id: str,
        *,
        external: bool,
        client_transaction_id: str,
        amount: Decimal,
        from_balance_id: str,
        from_account_id: str,
        to_balance_id: str,
        to_account_id: str,
    ) -> Transfer:
        """Move money between Infinity balances (same account, or to another account)."""
        endpoint = "external" if external else "internal"
        key = (account_id, endpoint, client_transaction_id)
        original = self._dedupe(key)
        if original is not None:
            return self.transfers[original]
        if from_account_id != account_id:
            raise SandboxError(403, "403001", "from.accountId is not your account")
        if external:
            if to_account_id == account_id:
                raise _bad("external transfers go to another account; use /business/transfer/internal")
            if to_account_id not in self.accounts:
                raise _not_found("account")
        elif to_account_id != account_id:
            raise _bad("internal transfers stay within accountId")
        source = self.balances.get(from_balance_id)
        if source is None or source.account_id != account_id or source.object_type != 0:
            raise _not_found("balance")
        target = self.balances.get(to_balance_id)
        if target is None or target.account_id != to_account_id or target.object_type != 0:
            raise _not_found("balance")
        if source.id == target.id:
            raise _bad("from and to are the same balance")
        if source.available < amount:
            raise _insufficient()
        source.available -= amount
        target.available += amount
        transfer = Transfer(
            id=self._new_snowflake(),
            seq=self._next_seq(),
            account_id=account_id,
            client_transaction_id=client_transaction_id,
            transfer_type="DIFFERENT_ACCOUNT" if external else "SAME_ACCOUNT",
            amount=amount,
            create_time=self.now_ms(),
            from_balance_id=source.id,
            from_account_id=source.account_id,
            to_balance_id=target.id,
            to_account_id=target.account_id,
        )
        self.transfers[transfer.id] = transfer
        self.client_txn[key] = transfer.id
        self.movements.append(Movement(f"transfer_{endpoint}", client_transaction_id, amount))
        return transfer

    # ---- private-info token ---------------------------------------------------------------------

    def private_info_token(self, account_id: str, card_id: str) -> str:
        card = self.get_card(account_id, card_id)
        self._purge_expired()
        token = secrets.token_urlsafe(32)
        self.private_info_tokens[token] = Grant(card.id, self.now() + PRIVATE_INFO_TOKEN_TTL)
        return token

    # ---- wire views -----------------------------------------------------------------------------

    @staticmethod
    def account_view(account: Account) -> dict[str, Any]:
        return {
            "id": account.id,
            "status": account.status,
            "type": account.type,
            "name": account.name,
            "displayId": account.display_id,
        }

    @staticmethod
    def bin_view(bin_: Bin) -> dict[str, Any]:
        return {
            "id": bin_.id,
            "bin": bin_.bin,
            "type": bin_.type,
            "currencies": [CURRENCY],
            "network": bin_.network,
            "supportPhysicalCard": bin_.support_physical_card,
        }

    @staticmethod
    def cardholder_view(holder: Cardholder) -> dict[str, Any]:
        return {
            "id": holder.id,
            "status": holder.status,
            "firstName": holder.first_name,
            "lastName": holder.last_name,
            "userName": f"{holder.first_name} {holder.last_name}",
            "email": holder.email,
            "cardBinList": list(holder.card_bin_list),
        }

    @staticmethod
    def balance_view(balance: Balance) -> dict[str, Any]:
        return {
            "id": balance.id,
            "accountId": balance.account_id,
            "createTime": str(balance.create_time),
            "currency": CURRENCY,
            "walletType": 0,
            "objectType": balance.object_type,
            "available": _fmt(balance.available),
        }

    def card_view(self, card: Card) -> dict[str, Any]:
        limits: list[dict[str, Any]] = []
        if card.velocity_type is not None and card.velocity_limit is not None:
            limits.append({"type": card.velocity_type, "value": _fmt(card.velocity_limit), "currency": CURRENCY})
        return {
            "id": card.id,
            "accountId": card.account_id,
            "status": card.status,
            "currency": CURRENCY,
            "bin": card.bin,
            "userName": card.user_name,
            "cardLastFour": card.pan[-4:],
            "cardMode": card.card_mode,
            "label": card.label,
            "referenceId": card.reference_id,
            "cardholderId": card.cardholder_id,
            "balanceId": card.balance_id,
            "budgetId": "",
            "createTime": str(card.create_time),
            "billingAddress": dict(BILLING_ADDRESS),
            "transactionLimits": limits,
        }

    def card_details_view(self, card: Card, secret: str) -> dict[str, Any]:
        view = self.card_view(card)
        view["cardNumber"] = encrypt_card_field(card.pan, secret)
        view["cvv"] = encrypt_card_field(card.cvv, secret)
        view["expiryDate"] = card.expiry
        return view

    def card_summary_view(self, card: Card) -> dict[str, Any]:
        balance = self.card_balance(card)
        consumption = self._consumption(card.id)
        velocity: dict[str, Any] | None = None
        available = self.velocity_available(card)
        if card.velocity_type is not None and card.velocity_limit is not None and available is not None:
            velocity = {
                "type": card.velocity_type,
                "limit": _fmt(card.velocity_limit),
                "available": _fmt(available),
            }
        return {
            "cardId": card.id,
            "accountId": card.account_id,
            "balance": {"id": balance.id, "available": _fmt(balance.available), "currency": CURRENCY},
            "statistics": {
                "consumption": _fmt(consumption),
                "reversal": _fmt(ZERO),
                "reversalFee": _fmt(ZERO),
                "refund": _fmt(ZERO),
                "refundFee": _fmt(ZERO),
                "netConsumption": _fmt(consumption),
                "currency": CURRENCY,
            },
            "velocityControl": velocity,
        }

    @staticmethod
    def transaction_view(tx: CardTransaction) -> dict[str, Any]:
        return {
            "id": tx.id,
            "accountId": tx.account_id,
            "cardId": tx.card_id,
            "cardholderId": tx.cardholder_id,
            "currency": CURRENCY,
            "amount": _fmt(tx.amount),
            "fee": _fmt(tx.fee),
            "feeDetails": [],
            "clientTransactionId": tx.client_transaction_id,
            "type": tx.type,
            "status": tx.status,
            "merchantName": tx.merchant_name,
            "mcc": tx.mcc,
            "merchantCity": tx.merchant_city,
            "merchantCountry": tx.merchant_country,
            "transactionTime": str(tx.create_time),
            "transactionCurrency": CURRENCY,
            "transactionAmount": _fmt(tx.amount),
            "createTime": str(tx.create_time),
            "remark": tx.remark,
            "detail": tx.detail,
        }

    @staticmethod
    def transfer_view(transfer: Transfer) -> dict[str, Any]:
        def side(balance_id: str, account_id: str) -> dict[str, Any]:
            return {
                "id": balance_id,
                "transferId": transfer.id,
                "accountId": account_id,
                "amount": _fmt(transfer.amount),
                "rate": "1",
                "currency": CURRENCY,
                "businessType": 0,
                "fees": [],
            }

        return {
            "id": transfer.id,
            "clientTransactionId": transfer.client_transaction_id,
            "status": transfer.status,
            "accountTransferType": transfer.transfer_type,
            "amount": _fmt(transfer.amount),
            "currency": CURRENCY,
            "createTime": str(transfer.create_time),
            "from": side(transfer.from_balance_id, transfer.from_account_id),
            "to": side(transfer.to_balance_id, transfer.to_account_id),
        }

    def snapshot(self) -> dict[str, Any]:
        """Totals for tests and the CLI (``GET /_sandbox/state``); never PAN/CVV."""

        def total(kinds: Iterable[str]) -> str:
            wanted = set(kinds)
            return _fmt(sum((m.amount for m in self.movements if m.kind in wanted), ZERO))

        return {
            "infinity": {b.id: _fmt(b.available) for b in self.balances.values() if b.object_type == 0},
            "loaded_total": total(("card_issue", "transfer_in")),
            "unloaded_total": total(("transfer_out", "card_delete_sweep")),
            "transfers_total": total(("transfer_internal", "transfer_external")),
            "purchases_total": total(("purchase",)),
            "fees_total": total(("issuance_fee",)),
            "card_count": sum(1 for c in self.cards.values() if not c.deleted),
            "cards": {
                c.id: {
                    "status": "DELETED" if c.deleted else c.status,
                    "available": _fmt(self.balances[c.balance_id].available),
                }
                for c in self.cards.values()
            },
            "requests": dict(self.requests),
            "movements": [
                {"kind": m.kind, "clientTransactionId": m.client_transaction_id, "amount": _fmt(m.amount)}
                for m in self.movements
            ],
        }

    # ---- persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything except fault rules and in-progress idempotency markers, JSON-ready."""
        return {
            "version": STATE_VERSION,
            "seq": self._seq,
            "config": self.config.dump(),
            "accounts": [a.dump() for a in self.accounts.values()],
            "balances": [b.dump() for b in self.balances.values()],
            "bins": [b.dump() for b in self.bins.values()],
            "cardholders": [h.dump() for h in self.cardholders.values()],
            "cards": [c.dump() for c in self.cards.values()],
            "card_transactions": [t.dump() for t in self.card_transactions.values()],
            "transfers": [t.dump() for t in self.transfers.values()],
            "idempotency": [[*scope, data] for scope, data in self.idempotency.items() if data is not None],
            "client_txn": [[*key, object_id] for key, object_id in self.client_txn.items()],
            "access_tokens": {k: g.dump() for k, g in self.access_tokens.items()},
            "refresh_tokens": {k: g.dump() for k, g in self.refresh_tokens.items()},
            "auth_codes": {k: g.dump() for k, g in self.auth_codes.items()},
            "private_info_tokens": {k: g.dump() for k, g in self.private_info_tokens.items()},
            "requests": dict(self.requests),
            "movements": [m.dump() for m in self.movements],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, clock: Callable[[], float] | None = None) -> SandboxState:
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ValueError(f"not a sandbox state (version {STATE_VERSION}) document")
        state = cls(clock=clock)
        try:
            state._seq = int(raw["seq"])
            state.config = SandboxConfig.load(raw["config"])
            state.accounts = {a.id: a for a in map(Account.load, raw["accounts"])}
            state.balances = {b.id: b for b in map(Balance.load, raw["balances"])}
            state.bins = {b.id: b for b in map(Bin.load, raw["bins"])}
            state.cardholders = {h.id: h for h in map(Cardholder.load, raw["cardholders"])}
            state.cards = {c.id: c for c in map(Card.load, raw["cards"])}
            state.card_transactions = {t.id: t for t in map(CardTransaction.load, raw["card_transactions"])}
            state.transfers = {t.id: t for t in map(Transfer.load, raw["transfers"])}
            state.idempotency = {(a, k, p): d for a, k, p, d in raw["idempotency"]}
            state.client_txn = {(a, e, c): i for a, e, c, i in raw["client_txn"]}
            state.access_tokens = {k: Grant.load(g) for k, g in raw["access_tokens"].items()}
            state.refresh_tokens = {k: Grant.load(g) for k, g in raw["refresh_tokens"].items()}
            state.auth_codes = {k: Grant.load(g) for k, g in raw["auth_codes"].items()}
            state.private_info_tokens = {k: Grant.load(g) for k, g in raw["private_info_tokens"].items()}
            state.requests = {str(k): int(v) for k, v in raw["requests"].items()}
            state.movements = [Movement.load(m) for m in raw["movements"]]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"malformed sandbox state: {type(exc).__name__}") from None
        return state

    def save(self, path: Path) -> None:
        """Atomically write the state as JSON (temp file in the same dir + os.replace; mode 0600)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], float] | None = None) -> SandboxState:
        with Path(path).open(encoding="utf-8") as fh:
            raw = json.load(fh)
        return cls.from_dict(raw, clock=clock)
