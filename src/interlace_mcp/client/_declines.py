"""Why a card authorization was declined: Interlace's business codes, read defensively, in plain words.

Sources (docs/wire-contract.md, "Sources"):

- Interlace's "Card Business Code Reference" (developer.interlace.money/docs/card-business-code-reference,
  high confidence) lists 1001-1014, 1103-1115: e.g. 1013 "Fraudulent transaction", 1014 "Transaction
  after card deletion", 1108-1115 the merchant / scenario / MCC / currency / ATM-country allow and
  block lists. It says these codes "may be returned in both API responses and webhook notifications"
  but not in which field.
- Insufficient balance, frozen, inactive, expired and velocity declines have no code on that page:
  1201-1205 are the emulator's own (**unconfirmed: emulator choice**).

:class:`DeclineCodeAdapter` is the one place that knows where a transaction carries the code: the
field the emulator uses (``declineCode``), the names Interlace might use, and as a last resort the
code whose documented description is the transaction's ``remark``. Fix it there when Interlace
confirms the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DECLINE_REASONS", "DeclineCodeAdapter", "DeclineReason", "describe_decline"]


@dataclass(frozen=True)
class DeclineReason:
    """A decline code in words an agent can act on.

    ``category`` is a stable identifier (``category_not_allowed``, ``insufficient_balance``...);
    ``reason`` is the plain sentence; ``risk`` marks fraud-related codes, whose reason never says more
    than "declined by the issuer's risk checks"; ``interlace`` says the code is Interlace's own
    (documented) rather than the emulator's.
    """

    code: str
    category: str
    reason: str
    interlace: bool = True
    risk: bool = False


_RISK_REASON: Final = "declined by the issuer's risk checks"

#: Known decline codes. 10xx/11xx: Interlace's reference; 12xx: the emulator's (see the module doc).
DECLINE_REASONS: Final[dict[str, DeclineReason]] = {
    r.code: r
    for r in (
        DeclineReason("1008", "issuer_outage", "declined because the card issuer's systems failed; try again later"),
        DeclineReason("1013", "risk", _RISK_REASON, risk=True),
        DeclineReason("1014", "card_closed", "the card was closed (deleted)"),
        DeclineReason("1108", "merchant_not_allowed", "the merchant is not on the card's allow list"),
        DeclineReason("1109", "scenario_not_allowed", "this kind of purchase is not on the card's allow list"),
        DeclineReason("1110", "category_not_allowed", "the merchant category is not on the card's allow list"),
        DeclineReason("1111", "category_blocked", "the merchant category is blocked for this card"),
        DeclineReason("1112", "currency_not_allowed", "the transaction currency is not on the card's allow list"),
        DeclineReason("1113", "currency_blocked", "the transaction currency is blocked for this card"),
        DeclineReason("1114", "atm_country_not_allowed", "ATM withdrawals in this country are not allowed"),
        DeclineReason("1115", "atm_country_blocked", "ATM withdrawals in this country are blocked"),
        DeclineReason("1201", "insufficient_balance", "the card's balance is lower than the amount", interlace=False),
        DeclineReason("1202", "card_frozen", "the card is frozen", interlace=False),
        DeclineReason("1203", "card_inactive", "the card is not active", interlace=False),
        DeclineReason("1204", "card_expired", "the card has expired", interlace=False),
        DeclineReason(
            "1205", "velocity_limit", "the card's spending limit for this period is used up", interlace=False
        ),
    )
}

#: Interlace's (and the emulator's) description of each code, as it may appear in ``remark``.
_DESCRIPTIONS: Final[dict[str, str]] = {
    "forced debit": "1001",
    "failed due to internal system outage": "1008",
    "fraudulent transaction": "1013",
    "transaction after card deletion": "1014",
    "blocked by merchant-defined whitelist": "1108",
    "blocked by customer scenario whitelist": "1109",
    "blocked by customer mcc whitelist": "1110",
    "blocked by customer mcc blacklist": "1111",
    "blocked by customer currency whitelist": "1112",
    "blocked by customer currency blacklist": "1113",
    "blocked by customer atm country whitelist": "1114",
    "blocked by customer atm country blacklist": "1115",
    "insufficient balance": "1201",
    "card frozen": "1202",
    "card not active": "1203",
    "card expired": "1204",
    "exceeds velocity limit": "1205",
}


def describe_decline(code: str | None) -> DeclineReason | None:
    """The plain-words reason for ``code``; an unknown code reads "declined by the card issuer (code N)"."""
    if code is None or not code:
        return None
    known = DECLINE_REASONS.get(code)
    if known is not None:
        return known
    return DeclineReason(code, "declined", f"declined by the card issuer (code {code})", interlace=True)


class DeclineCodeAdapter:
    """Where a card transaction carries Interlace's business code. **A guess; see the module doc.**

    Interlace documents the codes but not the field; the emulator sends ``declineCode``. This reads,
    in order: ``declineCode``, ``businessCode``, ``responseCode``; then the code whose
    documented description equals ``remark``. Change :attr:`FIELDS` when Interlace confirms the name.
    """

    FIELDS: Final = ("declineCode", "businessCode", "responseCode")

    @classmethod
    def business_code(cls, raw: Mapping[str, object]) -> str | None:
        """Any business code the transaction carries (a decline or a settlement note)."""
        for name in cls.FIELDS:
            value = raw.get(name)
            if value is None or isinstance(value, bool) or isinstance(value, dict | list):
                continue
            text = str(value).strip()
            if text and len(text) <= 16 and text not in ("000000", "0"):
                return text
        remark = raw.get("remark")
        if isinstance(remark, str):
            return _DESCRIPTIONS.get(remark.strip().casefold())
        return None

    @classmethod
    def decline_code(cls, raw: Mapping[str, object]) -> str | None:
        """The code of a declined (``FAIL``) transaction; None for any other status."""
        status = raw.get("status")
        if not isinstance(status, str) or status.upper() != "FAIL":
            return None
        return cls.business_code(raw)
