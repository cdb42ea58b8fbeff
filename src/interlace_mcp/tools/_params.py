"""Shared tool parameter types: one definition each, with descriptions and bounds."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PlainValidator, StrictBool, StrictInt, WithJsonSchema

from interlace_mcp.money import AMOUNT_PATTERN, AmountError, parse_amount
from interlace_mcp.operations import CARD_NUMBER_RULE, looks_like_card_number

__all__ = [
    "Amount",
    "CardId",
    "CardStatus",
    "Chain",
    "Currency",
    "DryRun",
    "ExpiresInMinutes",
    "Label",
    "Mcc",
    "Memo",
    "Merchant",
    "Page",
    "PageSize",
    "PayeeName",
    "RequestId",
    "Reveal",
    "SingleUse",
    "Stablecoin",
    "ThreeDS",
]


def _amount(value: object) -> Decimal:
    try:
        return parse_amount(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from None


Amount = Annotated[
    Decimal,
    PlainValidator(_amount),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": AMOUNT_PATTERN,
            "description": 'A string, > 0, e.g. "10.50"',
        }
    ),
]
# The patterns bound the length too: no minLength/maxLength repeated next to them.
RequestId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description="Your key for this request: the same id retries it (nothing moves twice); a new request, a new id",
    ),
]
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code: USD only"),
]
CardId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="One of this agent's card ids (from issue_card or list_cards)",
    ),
]
DryRun = Annotated[
    StrictBool,
    Field(description="true: only say what would happen; changes nothing"),
]
Reveal = Annotated[
    StrictBool,
    Field(description="true: card details as policy allows (see the tool description); every reveal is audited"),
]
SingleUse = Annotated[
    StrictBool,
    Field(description="true: the server closes the card, returning what is left, once its first purchase settles"),
]
ExpiresInMinutes = Annotated[
    StrictInt,
    Field(
        ge=1,
        le=525_600,
        description="Minutes until the server closes the card, returning what is left (policy may cap or set it)",
    ),
]
Mcc = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}$",
        description='The merchant category code (4 digits), e.g. "5734" (software)',
    ),
]
ThreeDS = Annotated[
    StrictBool,
    Field(description="true: the merchant asks for 3-D Secure: a one-time code arrives first (get_3ds_code)"),
]


def _no_card_number(value: str) -> str:
    """Free text from agents is stored, audited, sent upstream and shown to operators: never a card number."""
    if looks_like_card_number(value):
        raise ValueError(CARD_NUMBER_RULE)
    return value


Label = Annotated[
    str,
    Field(min_length=1, max_length=50, description="A short name for the card; never a card number"),
    AfterValidator(_no_card_number),
]
Memo = Annotated[
    str,
    Field(min_length=1, max_length=140, description="A note stored with the transfer; never a card number"),
    AfterValidator(_no_card_number),
]
Merchant = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Merchant name for the simulated purchase (never a card number)"),
    AfterValidator(_no_card_number),
]
PayeeName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="A payee name from list_payees"),
]
PageSize = Annotated[int, Field(ge=1, le=100, description="How many transactions per page (1-100)")]
Page = Annotated[int, Field(ge=1, le=10_000, description="Page number, from 1")]
CardStatus = Annotated[
    Literal["ACTIVE", "FROZEN", "PENDING", "INACTIVE", "CONTROL"],
    Field(description="Only cards with this card_status (get_card explains them)"),
]
#: The stablecoins a CryptoConnect wallet holds (client.STABLECOINS; a test keeps them equal).
Stablecoin = Annotated[
    Literal["USDC", "USDT"],
    Field(description="Stablecoin: USDC or USDT (it arrives in the Infinity account as USD, 1:1)"),
]
#: Deposit chains (client.DEPOSIT_CHAINS; a test keeps them equal).
Chain = Annotated[
    Literal["ETH", "ARB", "BASE", "BSC", "POLYGON", "OP", "AVAX"],
    Field(
        description="Blockchain network of the deposit address: ETH (Ethereum), ARB (Arbitrum), BASE, BSC,"
        " POLYGON, OP (Optimism) or AVAX (Avalanche C-Chain)"
    ),
]
