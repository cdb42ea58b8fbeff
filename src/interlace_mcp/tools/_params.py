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
            "description": 'Amount as a JSON string with at most 2 decimals, greater than zero, e.g. "10.50"',
        }
    ),
]
RequestId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description=(
            "Your idempotency key for this request (1-64 chars of A-Z a-z 0-9 . _ : -). Reuse it to retry "
            "or to learn the outcome; a new request needs a new id."
        ),
    ),
]
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code; Interlace cards are USD only"),
]
CardId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The card's id (from issue_card or list_cards)",
    ),
]
DryRun = Annotated[
    StrictBool,
    Field(description="true: only report what policy would decide and what would happen; changes nothing"),
]
Reveal = Annotated[
    StrictBool,
    Field(
        description=(
            "true: card details as this agent's policy allows: the number and CVV, a widget token, or a one-time"
            " link that shows the card to a human (never to you)"
        )
    ),
]
SingleUse = Annotated[
    StrictBool,
    Field(
        description=(
            "true: a card for one purchase: once that purchase settles the server closes it and returns what is"
            " left to the Infinity account (policy single_use_cards may force it)"
        )
    ),
]
ExpiresInMinutes = Annotated[
    StrictInt,
    Field(
        ge=1,
        le=525_600,
        description=(
            "Minutes until the server closes the card and returns what is left (policy card_max_ttl_minutes caps"
            " it, and sets it when left out)"
        ),
    ),
]
Mcc = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}$",
        description='The merchant category code (MCC, 4 digits) of the simulated merchant, e.g. "5734" (software)',
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
    Field(min_length=1, max_length=50, description="A short name for the card (max 50 chars; never a card number)"),
    AfterValidator(_no_card_number),
]
Memo = Annotated[
    str,
    Field(
        min_length=1, max_length=140, description="A note stored with the transfer (max 140 chars; never a card number)"
    ),
    AfterValidator(_no_card_number),
]
Merchant = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Merchant name for the simulated purchase (never a card number)"),
    AfterValidator(_no_card_number),
]
PayeeName = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="A payee name from list_payees"),
]
PageSize = Annotated[int, Field(ge=1, le=100, description="How many transactions per page (1-100)")]
Page = Annotated[int, Field(ge=1, le=10_000, description="Page number, from 1")]
CardStatus = Literal["ACTIVE", "FROZEN", "PENDING", "INACTIVE", "CONTROL"]
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
