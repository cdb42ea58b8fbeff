"""Money values: ``Decimal`` at the edges, integer minor units inside the ledger, never ``float``.

Every amount an agent sends is a JSON *string* matching :data:`AMOUNT_PATTERN` and greater than
zero. Upstream amounts (Interlace sends decimal strings such as ``"56846.52"``) are parsed with
:func:`parse_upstream_amount`, which refuses anything that is not an exact decimal.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = [
    "AMOUNT_PATTERN",
    "CENT",
    "MAX_AMOUNT",
    "AmountError",
    "format_amount",
    "format_exact_amount",
    "from_minor",
    "parse_amount",
    "parse_upstream_amount",
    "to_minor",
]

#: The only accepted shape for an amount argument: 1-9 integer digits, at most 2 decimals.
AMOUNT_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,2})?$"
_AMOUNT_RE = re.compile(AMOUNT_PATTERN)
CENT = Decimal("0.01")
#: Largest amount accepted anywhere (9 integer digits).
MAX_AMOUNT = Decimal("999999999.99")


class AmountError(ValueError):
    """An amount that is not a positive decimal string with at most 2 decimals."""


def parse_amount(value: object) -> Decimal:
    """Turn an agent-supplied amount string into a ``Decimal`` (2 places), or raise AmountError."""
    if not isinstance(value, str):
        raise AmountError('amount must be a JSON string like "10.50", not a number')
    # re.ASCII semantics: [0-9] already excludes other scripts' digits; fullmatch excludes padding.
    if not _AMOUNT_RE.fullmatch(value):
        raise AmountError(
            f'amount must look like "10" or "10.50" (digits, at most 2 decimals, no sign or exponent); '
            f"got {_short(value)!r}"
        )
    amount = Decimal(value).quantize(CENT)
    if amount <= 0:
        raise AmountError("amount must be greater than zero")
    return amount


def parse_upstream_amount(value: object) -> Decimal:
    """Parse an amount Interlace sent (a decimal string, or an int); never accept a float."""
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError(f"upstream amount is not an exact decimal: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError("upstream amount is not finite")
        return value
    if not isinstance(value, str):
        raise AmountError(f"upstream amount has type {type(value).__name__}")
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise AmountError(f"upstream amount is not a decimal: {_short(value)!r}") from None
    if not amount.is_finite():
        raise AmountError("upstream amount is not finite")
    return amount


def format_amount(amount: Decimal) -> str:
    """Render a Decimal as the 2-place string Interlace and our results use ("15.00")."""
    return f"{amount.quantize(CENT):f}"


def format_exact_amount(amount: Decimal) -> str:
    """At least 2 places, never rounded: stablecoin balances keep up to 6 ("5000.00", "0.000001")."""
    return format_amount(amount) if amount == amount.quantize(CENT) else f"{amount.normalize():f}"


def to_minor(amount: Decimal) -> int:
    """Decimal (at most 2 places) -> integer cents. Refuses sub-cent precision instead of rounding."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise AmountError(f"{amount} has more than 2 decimals")
    return int(cents)


def from_minor(cents: int) -> Decimal:
    """Integer cents -> Decimal with 2 places."""
    return (Decimal(cents) / 100).quantize(CENT)


def _short(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
