"""Typed views of Interlace's response objects.

Field names are snake_case; Interlace's camelCase names are the aliases, and either validates.
Unknown fields are kept (``extra="allow"``) because Interlace adds fields without notice.
Money is a ``Decimal`` parsed from Interlace's decimal strings; a Python float is rejected, and
JSON output renders money as a 2-place string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SecretStr, model_validator
from pydantic.alias_generators import to_camel

from interlace_mcp.money import format_amount, parse_upstream_amount

from ._declines import DeclineCodeAdapter

__all__ = [
    "Account",
    "Balance",
    "Card",
    "CardBalance",
    "CardBin",
    "CardDetails",
    "CardSpendControls",
    "CardStatistics",
    "CardSummary",
    "CardTransaction",
    "Cardholder",
    "CryptoDeposit",
    "CryptoWallet",
    "ExactDecimal",
    "InterlaceModel",
    "Money",
    "Page",
    "SpendControlRule",
    "TransactionLimit",
    "Transfer",
    "TransferFee",
    "TransferSide",
    "VelocityControl",
    "WalletAddress",
    "WalletBalance",
    "wire_time",
]

T = TypeVar("T")

# Epoch values at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is March 1973).
_MS_FROM = 100_000_000_000


def wire_time(raw: object) -> datetime | None:
    """An upstream time as an aware UTC datetime: v3 objects carry ms-epoch strings (``"1710813276127"``); seconds,
    numbers and ISO 8601 text (naive = UTC) are read too. None when absent or unreadable (never guessed)."""
    if isinstance(raw, bool) or raw is None:
        return None
    text = str(raw).strip()
    try:
        if text.isascii() and text.isdigit():
            value = int(text)
            return datetime.fromtimestamp(value / 1000 if value >= _MS_FROM else value, tz=UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: An exact decimal amount: validated from a decimal string (or int/Decimal), never a float;
#: serialised to JSON as a 2-place string ("10.50").
Money = Annotated[
    Decimal,
    BeforeValidator(parse_upstream_amount),
    PlainSerializer(format_amount, return_type=str, when_used="json"),
]

#: An exact decimal that is not a 2-place amount (an FX rate); JSON output keeps every digit.
ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(parse_upstream_amount),
    PlainSerializer(str, return_type=str, when_used="json"),
]


class InterlaceModel(BaseModel):
    """Base for response objects: camelCase aliases, unknown fields kept."""

    # coerce_numbers_to_str: ids and codes such as mcc may arrive as JSON numbers.
    # defer_build: validators are built on first use, not at import (faster server start).
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, coerce_numbers_to_str=True, defer_build=True
    )


class Account(InterlaceModel):
    """An Interlace account (``GET /accounts``)."""

    id: str
    status: str | None = None
    type: str | None = None
    name: str | None = None
    display_id: str | None = None


class CardBin(InterlaceModel):
    """A card product; ``type`` 1 = prepaid, 0 = budget."""

    id: str
    bin: str | None = None
    type: int | None = None
    currencies: list[str] = Field(default_factory=list)
    network: str | None = None
    support_physical_card: bool | None = None


class Cardholder(InterlaceModel):
    """The person or entity a card is issued to."""

    id: str
    status: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    user_name: str | None = None
    email: str | None = None
    card_bin_list: list[str] = Field(default_factory=list)


class Balance(InterlaceModel):
    """A balance object (wallet); ``object_type`` 0 = Infinity account, 2 = prepaid card."""

    id: str
    account_id: str | None = None
    currency: str | None = None
    object_type: int | None = None
    available: Money


class TransactionLimit(InterlaceModel):
    """A card velocity limit: ``type`` DAY/WEEK/MONTH/QUARTER/YEAR/TRANSACTION/LIFETIME/NA."""

    type: str
    value: Money | None = None
    currency: str | None = None


class Card(InterlaceModel):
    """A card, without the PAN or CVV."""

    id: str
    account_id: str | None = None
    status: str | None = None
    currency: str | None = None
    bin: str | None = None
    user_name: str | None = None
    card_last_four: str | None = None
    card_mode: str | None = None
    label: str | None = None
    reference_id: str | None = None
    cardholder_id: str | None = None
    balance_id: str | None = None
    create_time: str | None = None
    transaction_limits: list[TransactionLimit] = Field(default_factory=list)


class CardDetails(Card):
    """A card with its decrypted PAN and CVV, hidden from repr, str and model_dump."""

    card_number: SecretStr
    cvv: SecretStr
    expiry_date: str | None = None

    def reveal(self) -> tuple[str, str]:
        """Return ``(card_number, cvv)`` in clear. Do not log or store the result."""
        return self.card_number.get_secret_value(), self.cvv.get_secret_value()


class CardBalance(InterlaceModel):
    """The card's own balance inside a card summary."""

    id: str | None = None
    available: Money
    currency: str | None = None


class CardStatistics(InterlaceModel):
    """Spending totals inside a card summary."""

    consumption: Money | None = None
    reversal: Money | None = None
    reversal_fee: Money | None = None
    refund: Money | None = None
    refund_fee: Money | None = None
    net_consumption: Money | None = None
    currency: str | None = None


class VelocityControl(InterlaceModel):
    """The active velocity limit and what remains of it."""

    type: str | None = None
    limit: Money | None = None
    available: Money | None = None


class CardSummary(InterlaceModel):
    """Balance, statistics and velocity control of one card."""

    card_id: str
    account_id: str | None = None
    balance: CardBalance
    statistics: CardStatistics | None = None
    velocity_control: VelocityControl | None = None


class CardTransaction(InterlaceModel):
    """A card transaction; ``type`` 1 Consumption, 2 TransferIn, 3 TransferOut, 9 Fee, 10 Declined fee."""

    id: str
    account_id: str | None = None
    card_id: str | None = None
    cardholder_id: str | None = None
    amount: Money
    fee: Money | None = None
    currency: str | None = None
    client_transaction_id: str | None = None
    type: int
    status: str | None = None
    merchant_name: str | None = None
    mcc: str | None = None
    merchant_city: str | None = None
    merchant_country: str | None = None
    transaction_time: str | None = None
    transaction_currency: str | None = None
    transaction_amount: Money | None = None
    create_time: str | None = None
    remark: str | None = None
    detail: str | None = None
    #: Interlace's business code of a declined (FAIL) authorization; None otherwise. Where upstream
    #: carries it is unconfirmed: :class:`~._declines.DeclineCodeAdapter` reads it (``remark`` keeps
    #: the raw message). See :func:`~._declines.describe_decline` for plain words.
    decline_code: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_decline_code(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("decline_code") is None:
            data = {**data, "declineCode": DeclineCodeAdapter.decline_code(data)}
        return data


class TransferFee(InterlaceModel):
    """A fee taken on one side of a business transfer."""

    fee_type: int | None = None
    amount: Money | None = None
    currency: str | None = None


class TransferSide(InterlaceModel):
    """The ``from`` or ``to`` side of a business transfer."""

    id: str | None = None
    transfer_id: str | None = None
    account_id: str | None = None
    amount: Money | None = None
    rate: ExactDecimal | None = None
    currency: str | None = None
    business_type: int | None = None
    fees: list[TransferFee] = Field(default_factory=list)


class Transfer(InterlaceModel):
    """A business transfer between balance objects (internal or to another account)."""

    id: str
    client_transaction_id: str | None = None
    status: str | None = None
    account_transfer_type: str | None = None
    amount: Money | None = None
    currency: str | None = None
    create_time: str | None = None
    from_: TransferSide | None = Field(default=None, alias="from")
    to: TransferSide | None = None


class WalletBalance(InterlaceModel):
    """One currency's holdings in a CryptoConnect wallet (USDC/USDT: up to 6 decimals)."""

    id: str | None = None
    currency: str
    available: ExactDecimal = Decimal(0)
    frozen: ExactDecimal = Decimal(0)


class WalletAddress(InterlaceModel):
    """A deposit address of a CryptoConnect wallet. Field names beyond ``address`` are unconfirmed."""

    id: str | None = None
    currency: str | None = None
    chain: str | None = None
    address: str


class CryptoWallet(InterlaceModel):
    """A CryptoConnect wallet: stablecoin balances and deposit addresses (``/cryptoconnect/wallets``)."""

    id: str
    account_id: str | None = None
    reference_id: str | None = None
    nickname: str | None = None
    master: bool | None = None
    balances: list[WalletBalance] = Field(default_factory=list)
    addresses: list[WalletAddress] = Field(default_factory=list)

    def balance(self, currency: str) -> WalletBalance | None:
        """The balance of ``currency`` (case-insensitive), if the wallet holds it."""
        wanted = currency.upper()
        return next((b for b in self.balances if b.currency.upper() == wanted), None)


class CryptoDeposit(InterlaceModel):
    """A simulated on-chain deposit (emulator control API only)."""

    id: str
    wallet_id: str | None = None
    currency: str | None = None
    chain: str | None = None
    address: str | None = None
    amount: ExactDecimal
    tx_hash: str | None = None


class SpendControlRule(InterlaceModel):
    """One spend-control rule: allow (WHITELIST) or block (BLACKLIST) one MCC or currency (``keywords``).

    Scope: ``card_ids`` and the cards of ``card_bin_ids``; both empty = every card of the account.
    """

    id: str
    usage: str | None = None
    keywords: str | None = None
    type: str | None = None
    card_ids: list[str] = Field(default_factory=list)
    card_bin_ids: list[str] = Field(default_factory=list)


class CardSpendControls(BaseModel):
    """The merchant-category lists in force on one card (its own rules, its BIN's and the account's)."""

    model_config = ConfigDict(extra="forbid")

    card_id: str
    mcc_allow: list[str]
    mcc_block: list[str]
    rules: list[SpendControlRule]


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint; ``total`` counts every match, not just this page."""

    model_config = ConfigDict(extra="forbid")

    items: list[T]
    total: int
