"""Response models: aliases, exact money, hidden card data."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pydantic
import pytest

from interlace_mcp.client import (
    Balance,
    Card,
    CardDetails,
    CardSummary,
    CardTransaction,
    Page,
    Transfer,
    wire_time,
)


def test_money_parses_decimal_strings_exactly() -> None:
    """ "10", "10.5" and "10.50" become exact Decimals; JSON output is 2-place strings."""
    for raw, expected in (("10", Decimal("10")), ("10.5", Decimal("10.5")), ("0.10", Decimal("0.10"))):
        balance = Balance.model_validate({"id": "b", "available": raw})
        assert balance.available == expected
        assert isinstance(balance.available, Decimal)
    assert Balance(id="b", available=Decimal("10")).model_dump(mode="json")["available"] == "10.00"


@pytest.mark.parametrize("bad", [10.5, 0.1, True, "abc", "NaN", None])
def test_money_rejects_floats_and_non_decimals(bad: object) -> None:
    """A float (or bool, junk, NaN) is never accepted as an amount."""
    with pytest.raises(pydantic.ValidationError):
        Balance.model_validate({"id": "b", "available": bad})


def test_camel_case_aliases_and_snake_case_names_both_validate() -> None:
    """Interlace's camelCase and our snake_case both populate the same field; extras are kept."""
    by_alias = Card.model_validate({"id": "c", "cardLastFour": "1111", "budgetId": ""})
    by_name = Card.model_validate({"id": "c", "card_last_four": "1111"})
    assert by_alias.card_last_four == by_name.card_last_four == "1111"
    assert by_alias.model_extra == {"budgetId": ""}


def test_card_limits_and_transaction_types() -> None:
    """Nested limits parse money; a card transaction's type is an int."""
    card = Card.model_validate({"id": "c", "transactionLimits": [{"type": "DAY", "value": "500", "currency": "USD"}]})
    assert card.transaction_limits[0].value == Decimal("500")
    tx = CardTransaction.model_validate({"id": "t", "amount": "10.00", "fee": "0", "type": 2, "mcc": 5734})
    assert tx.type == 2
    assert tx.mcc == "5734"
    assert tx.fee == Decimal("0")


def test_card_details_never_show_pan_or_cvv() -> None:
    """repr, str and model_dump hide the PAN and CVV; reveal() returns them."""
    details = CardDetails.model_validate(
        {"id": "c", "cardNumber": "4111111111111111", "cvv": "123", "expiryDate": "12/29"}
    )
    for text in (repr(details), str(details), str(details.model_dump()), details.model_dump_json()):
        assert "4111111111111111" not in text
        assert "123" not in text
    assert details.reveal() == ("4111111111111111", "123")
    assert details.expiry_date == "12/29"


def test_card_summary_and_transfer_sides() -> None:
    """The summary's nested balance and a transfer's from/to sides parse."""
    summary = CardSummary.model_validate(
        {
            "cardId": "c",
            "balance": {"id": "b", "available": "12.34", "currency": "USD"},
            "statistics": {"consumption": "1", "netConsumption": "1", "currency": "USD"},
            "velocityControl": None,
        }
    )
    assert summary.balance.available == Decimal("12.34")
    assert summary.velocity_control is None
    transfer = Transfer.model_validate(
        {
            "id": "1",
            "amount": "5",
            "from": {"id": "a", "amount": "5", "rate": "1", "fees": [{"feeType": 0, "amount": "0"}]},
            "to": {"id": "b", "accountId": "x"},
        }
    )
    assert transfer.from_ is not None and transfer.from_.amount == Decimal("5")
    assert transfer.to is not None and transfer.to.account_id == "x"
    assert transfer.model_dump(mode="json", by_alias=True)["from"]["amount"] == "5.00"


def test_page_holds_items_and_total() -> None:
    """Page is generic over the item model."""
    page = Page[Card](items=[Card(id="c")], total=3)
    assert page.total == 3
    assert page.items[0].id == "c"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1795000000000", "2026-11-18T11:06:40Z"),  # v3: ms-epoch strings
        ("1795000000", "2026-11-18T11:06:40Z"),  # seconds
        (1795000000000, "2026-11-18T11:06:40Z"),
        ("2026-11-18T11:06:40Z", "2026-11-18T11:06:40Z"),
        ("2026-11-18T12:06:40+01:00", "2026-11-18T11:06:40Z"),
        ("2026-11-18 11:06:40", "2026-11-18T11:06:40Z"),  # naive: UTC
        ("", None),
        (None, None),
        (True, None),
        ("yesterday", None),
        ("9" * 40, None),  # beyond any calendar
        ("\u0661\u0667\u0669\u0665", None),  # non-ASCII digits are not a time
    ],
)
def test_wire_times_read_as_utc_or_not_at_all(raw: object, expected: str | None) -> None:
    """Upstream times become aware UTC datetimes (ISO 8601 on the way out); nothing unreadable is guessed."""
    moment = wire_time(raw)
    assert (moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None) == expected
    assert moment is None or moment.tzinfo is UTC
