"""Reading a 3-D Secure code out of a stored ``CARD.3DS.OTP`` resource -- defensively.

Interlace names the event but publishes no payload (docs/wire-contract.md): the emulator sends ``otp``,
``merchantName``, ``transactionAmount``, ``transactionCurrency``, ``expireTime``; other issuers use names
like ``code`` or ``verificationCode``, sometimes one level down (``data``). So each field is looked for
under the names below, at the top and in one nested object; a value that does not look like what it
should be (a code of 4-12 letters or digits, a 2-place amount, a 3-letter currency) is ignored rather
than passed on. A resource without a readable code is skipped (the next older one may have one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from interlace_mcp.app import webhook_amount
from interlace_mcp.money import format_amount
from interlace_mcp.operations import ThreeDSCode, clean_text
from interlace_mcp.policy import epoch_to_iso, three_ds

__all__ = ["FoundCode", "read_code"]

_CODE_FIELDS = (
    "otp", "code", "otpCode", "verificationCode", "verifyCode", "passcode", "authCode", "authenticationCode",
    "oneTimePassword", "oneTimeCode",
)  # fmt: skip
_MERCHANT_FIELDS = ("merchantName", "merchant", "merchant_name", "merchantNameLocation")
_AMOUNT_FIELDS = ("transactionAmount", "amount", "billingAmount", "transAmount")
_CURRENCY_FIELDS = ("transactionCurrency", "currency", "billingCurrency", "transCurrency")
_NESTED_FIELDS = ("data", "otpInfo", "detail", "details", "authentication", "threeDs", "threeDS", "transaction")
_CODE = re.compile(r"[A-Za-z0-9]{4,12}", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)


@dataclass(frozen=True)
class FoundCode:
    code: str
    merchant: str | None
    amount: str | None
    currency: str | None
    expires_at: float

    def result(self, card_id: str, *, sandbox: bool) -> ThreeDSCode:
        return ThreeDSCode(
            card_id=card_id,
            code=self.code,
            merchant=self.merchant,
            amount=self.amount,
            currency=self.currency,
            expires_at=epoch_to_iso(self.expires_at) or "",
            sandbox=sandbox,
        )


def _levels(resource: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The resource, then each nested object it carries (as an object or as a JSON string)."""
    yield resource
    for name in _NESTED_FIELDS:
        inner = resource.get(name)
        if isinstance(inner, str) and inner.startswith("{"):
            try:
                inner = json.loads(inner)
            except ValueError:
                continue
        if isinstance(inner, Mapping):
            yield inner


def _first(resource: Mapping[str, Any], names: tuple[str, ...], accept: Any) -> Any:
    for level in _levels(resource):
        for name in names:
            value = accept(level.get(name))
            if value is not None:
                return value
    return None


def _code(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if _CODE.fullmatch(text) else None


def _amount(value: object) -> str | None:
    parsed = webhook_amount(value)
    return format_amount(abs(parsed)) if parsed is not None else None


def _currency(value: object) -> str | None:
    return value if isinstance(value, str) and _CURRENCY.fullmatch(value) else None


def _merchant(value: object) -> str | None:
    return clean_text(value) or None if isinstance(value, str) else None


def read_code(stored: three_ds.StoredCode) -> FoundCode | None:
    """The code and what it is for, read defensively; None when the resource holds no readable code."""
    resource = stored.resource
    code = _first(resource, _CODE_FIELDS, _code)
    if code is None:
        return None
    return FoundCode(
        code=code,
        merchant=_first(resource, _MERCHANT_FIELDS, _merchant),
        amount=_first(resource, _AMOUNT_FIELDS, _amount),
        currency=_first(resource, _CURRENCY_FIELDS, _currency),
        expires_at=stored.expires_at,
    )
