"""The emulator's value types: JSON-round-tripping records, constants, the business error, decline codes.

Nothing here touches the state; :mod:`._state` and its parts build on these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final, TypeVar

from interlace_mcp.money import format_amount

__all__ = [
    "AUTH_CODE_TTL",
    "BILLING_ADDRESS",
    "CENT",
    "CURRENCY",
    "DECLINES",
    "DEFAULT_SETTLE_AFTER_SECONDS",
    "DEFAULT_TOKEN_TTL",
    "FAULT_KINDS",
    "GMT8",
    "HTTP_METHODS",
    "LIMIT_TYPES",
    "OTP_TTL_SECONDS",
    "PRIVATE_INFO_TOKEN_TTL",
    "REFRESH_TOKEN_TTL",
    "SPEND_LIST_TYPES",
    "SPEND_USAGES",
    "STABLECOINS",
    "STATE_VERSION",
    "TX_CONSUMPTION",
    "TX_TRANSFER_IN",
    "TX_TRANSFER_OUT",
    "WALLET_PLACES",
    "ZERO",
    "Account",
    "Balance",
    "Bin",
    "Card",
    "CardTransaction",
    "Cardholder",
    "CryptoDeposit",
    "CryptoWallet",
    "Decline",
    "FaultRule",
    "Grant",
    "Movement",
    "SandboxConfig",
    "SandboxError",
    "SpendRule",
    "Transfer",
    "WalletAddress",
    "bad",
    "check_int",
    "fmt",
    "fmt_crypto",
    "insufficient",
    "luhn_check_digit",
    "luhn_valid",
    "not_found",
]

CURRENCY: Final = "USD"
CENT: Final = Decimal("0.01")
ZERO: Final = Decimal("0.00")
GMT8: Final = timezone(timedelta(hours=8))
#: The state file format. New keys are optional on load, so version 1 files written before them still load.
STATE_VERSION: Final = 1
AUTH_CODE_TTL: Final = 600.0
REFRESH_TOKEN_TTL: Final = 30 * 86400.0
PRIVATE_INFO_TOKEN_TTL: Final = 300.0
DEFAULT_TOKEN_TTL: Final = 86400
#: An approved authorization clears (PENDING -> CLOSED) this long after it was made, as a card network would.
DEFAULT_SETTLE_AFTER_SECONDS: Final = 3.0
#: How long a 3-D Secure one-time code stays valid.
OTP_TTL_SECONDS: Final = 600

TX_CONSUMPTION: Final = 1
TX_TRANSFER_IN: Final = 2
TX_TRANSFER_OUT: Final = 3

LIMIT_TYPES: Final = ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "TRANSACTION", "LIFETIME", "NA")
FAULT_KINDS: Final = ("latency", "error", "rate_limit", "timeout", "reset", "fail_after_commit")
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Spend-control rule kinds (Interlace "usage"); SCENARIO is documented upstream but not modelled here.
SPEND_USAGES: Final = ("MCC", "TRANSACTION_CURRENCY")
SPEND_LIST_TYPES: Final = ("WHITELIST", "BLACKLIST")
#: CryptoConnect stablecoins the emulator holds, and their precision (interlace-api.md 6.2: 6 places).
STABLECOINS: Final = ("USDC", "USDT")
WALLET_PLACES: Final = Decimal("0.000001")

BILLING_ADDRESS: Final[dict[str, str]] = {
    "addressLine1": "1 Sandbox Way",
    "addressLine2": "",
    "city": "San Francisco",
    "state": "CA",
    "postalCode": "94105",
    "country": "US",
}


@dataclass(frozen=True)
class Decline:
    """Why an authorization was declined: Interlace's business code and its description."""

    code: str
    message: str


#: Decline reasons of a simulated authorization. Codes 1013, 1014 and 1110-1113 are Interlace's
#: ("Card Business Code Reference", developer.interlace.money/docs/card-business-code-reference);
#: the 12xx codes are the emulator's own for reasons that page does not list (docs/wire-contract.md).
DECLINES: Final[dict[str, Decline]] = {
    "fraud": Decline("1013", "Fraudulent transaction"),
    "deleted": Decline("1014", "Transaction after card deletion"),
    "mcc_whitelist": Decline("1110", "Blocked by customer MCC whitelist"),
    "mcc_blacklist": Decline("1111", "Blocked by customer MCC blacklist"),
    "currency_whitelist": Decline("1112", "Blocked by customer currency whitelist"),
    "currency_blacklist": Decline("1113", "Blocked by customer currency blacklist"),
    "insufficient": Decline("1201", "insufficient balance"),
    "frozen": Decline("1202", "card frozen"),
    "inactive": Decline("1203", "card not active"),
    "expired": Decline("1204", "card expired"),
    "velocity": Decline("1205", "exceeds velocity limit"),
}


class SandboxError(Exception):
    """A business error the emulator answers with: HTTP status, Interlace code, message."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"{http_status} {code} {message}")
        self.http_status = http_status
        self.code = code
        self.message = message


def bad(message: str) -> SandboxError:
    return SandboxError(400, "400002", message)


def not_found(what: str) -> SandboxError:
    return SandboxError(404, "404001", f"{what} not found")


def insufficient() -> SandboxError:
    return SandboxError(400, "100100001", "sub amount is error")


def fmt(amount: Decimal) -> str:
    return format_amount(amount)


def fmt_crypto(amount: Decimal) -> str:
    """A wallet amount: at least 2 places, up to the 6 of USDC/USDT, no trailing zeros beyond 2."""
    text = f"{amount.quantize(WALLET_PLACES):f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


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


def luhn_check_digit(partial: str) -> str:
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: some check digit always fits")


def check_int(name: str, value: object, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} out of range")
    return value


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
    expiry: str  # "MM/YY"; the card works until the end of that month
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
    #: Interlace's business code of a declined authorization ("" when approved).
    decline_code: str = ""
    #: When an approved authorization clears (epoch seconds); None on other transactions.
    settle_at: float | None = None
    #: Last status change (ms); 0 = never changed since creation.
    update_time: int = 0


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
    #: 0 Infinity balance, 2 CryptoConnect wallet (then from_balance_id is the wallet id).
    from_business_type: int = 0
    from_currency: str = CURRENCY
    to_business_type: int = 0
    to_currency: str = CURRENCY


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
class SpendRule(_Record):
    """One spend-control rule: allow (WHITELIST) or block (BLACKLIST) one MCC or currency.

    Scope: the cards in ``card_ids`` and every card of the BINs in ``card_bin_ids``; both empty = every
    card of the account.
    """

    id: int
    account_id: str
    usage: str  # MCC / TRANSACTION_CURRENCY
    keywords: str
    list_type: str  # WHITELIST / BLACKLIST
    create_time: int
    card_ids: list[str] = field(default_factory=list)
    card_bin_ids: list[str] = field(default_factory=list)

    def applies_to(self, card: Card) -> bool:
        if not self.card_ids and not self.card_bin_ids:
            return True
        return card.id in self.card_ids or card.bin_id in self.card_bin_ids


@dataclass
class WalletAddress(_Record):
    id: str
    currency: str
    chain: str
    address: str
    create_time: int


@dataclass
class CryptoWallet(_Record):
    """A CryptoConnect wallet: stablecoin balances (available, frozen) and deposit addresses."""

    id: str
    account_id: str
    reference_id: str
    nickname: str
    master: bool
    create_time: int
    available: dict[str, Decimal] = field(default_factory=dict)
    frozen: dict[str, Decimal] = field(default_factory=dict)
    addresses: list[WalletAddress] = field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "reference_id": self.reference_id,
            "nickname": self.nickname,
            "master": self.master,
            "create_time": self.create_time,
            "available": {k: str(v) for k, v in self.available.items()},
            "frozen": {k: str(v) for k, v in self.frozen.items()},
            "addresses": [a.dump() for a in self.addresses],
        }

    @classmethod
    def load(cls, raw: dict[str, Any]) -> CryptoWallet:
        return cls(
            id=str(raw["id"]),
            account_id=str(raw["account_id"]),
            reference_id=str(raw["reference_id"]),
            nickname=str(raw["nickname"]),
            master=bool(raw["master"]),
            create_time=int(raw["create_time"]),
            available={str(k): Decimal(str(v)) for k, v in raw["available"].items()},
            frozen={str(k): Decimal(str(v)) for k, v in raw["frozen"].items()},
            addresses=[WalletAddress.load(a) for a in raw["addresses"]],
        )


@dataclass
class CryptoDeposit(_Record):
    """A simulated on-chain deposit into a wallet."""

    DECIMALS: ClassVar[frozenset[str]] = frozenset({"amount"})

    id: str
    wallet_id: str
    currency: str
    chain: str
    address: str
    amount: Decimal
    tx_hash: str
    create_time: int


@dataclass
class SandboxConfig(_Record):
    DECIMALS: ClassVar[frozenset[str]] = frozenset({"issuance_fee"})

    token_ttl_seconds: int = DEFAULT_TOKEN_TTL
    issuance_fee: Decimal = ZERO
    webhook_url: str | None = None
    settle_after_seconds: float = DEFAULT_SETTLE_AFTER_SECONDS
    #: Merchant names (case-insensitive) whose authorizations the issuer's risk checks decline.
    risk_decline_merchants: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "token_ttl_seconds": self.token_ttl_seconds,
            "issuance_fee": fmt(self.issuance_fee),
            "webhook_url": self.webhook_url,
            "settle_after_seconds": self.settle_after_seconds,
            "risk_decline_merchants": list(self.risk_decline_merchants),
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
