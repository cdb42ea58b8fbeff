"""Interlace's signed notifications, however they arrive: the one intake.

``POST /webhooks/interlace`` (the HTTP server) hands the body here; on the embedded emulator its
in-process sink hands over the very same signed body and headers, without HTTP (:func:`webhook_sink`):
one signature check, one freshness rule, one de-duplication.

Authenticity rests on ``Signature = base64(HMAC-SHA256(key, resource))`` over the raw ``resource``
string (interlace-api.md section 7.3), compared in constant time. Everything outside ``resource`` (the
envelope's ``id``, ``createTime``, ``eventType`` and the ``Timestamp`` header) is unsigned and decides
nothing that matters:

- **Freshness** comes only from the signed resource's own times (the newest of ``updateTime``,
  ``createTime`` and ``transactionTime``): older than a day, or from the future, or undated -> 400. A
  3-D Secure code is the one exception to "undated": its shape is unconfirmed, so an undated one is taken
  (it expires ten minutes after it arrived) rather than lost.
- **De-duplication** rests on the signed resource: the key is the sha256 of its canonical JSON, so
  Interlace's retries and a captured resource replayed under new envelope ids are recorded once.
- **Amounts** (``billingAmount``, ``amount``) must be decimal strings (or integers) with at most 2
  decimals and at most 9 integer digits, optionally negative; anything else is a 400.

What is recorded: card transactions (``CARD_TRANSACTION.*``: spend status, and a nudge to the checkout
watcher, which reads the card at Interlace and closes or freezes it as policy says) and 3-D Secure codes
(``CARD.3DS.OTP``: the resource stored whole; the code itself is never logged).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlace_mcp._logging import mask_card_numbers
from interlace_mcp.app._runtime import Runtime
from interlace_mcp.money import MAX_AMOUNT
from interlace_mcp.operations import clean_text
from interlace_mcp.policy import activity, three_ds
from interlace_mcp.sandbox import WebhookEnvelope, WebhookSink

__all__ = [
    "MAX_AGE_SECONDS",
    "OTP_EVENT",
    "OTP_TTL_SECONDS",
    "Answer",
    "dedup_key",
    "receive_webhook",
    "sign_resource",
    "webhook_amount",
    "webhook_sink",
]

logger = logging.getLogger("interlace_mcp.webhooks")

#: Interlace retries for about 4.5 hours; anything older than a day is a replay, not a retry.
MAX_AGE_SECONDS = 24 * 3600
MAX_FUTURE_SECONDS = 300
#: The 3-D Secure one-time code event (Interlace's name; its payload is unconfirmed).
OTP_EVENT = "CARD.3DS.OTP"
#: A code's lifetime when the notification does not say (DESIGN section 13: 10 minutes).
OTP_TTL_SECONDS = 600
#: The signed times a resource may carry (ms since the epoch); the newest one dates the event.
_TIME_FIELDS = ("updateTime", "createTime", "transactionTime")
_AMOUNT_FIELDS = ("billingAmount", "amount")
_UPSTREAM_AMOUNT = re.compile(r"-?[0-9]{1,9}(?:\.[0-9]{1,2})?", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)
_CARD_ID = re.compile(r"[A-Za-z0-9-]{1,64}", re.ASCII)


@dataclass(frozen=True)
class Answer:
    """What the intake answers: an HTTP status and a small JSON body (never an echo of the input)."""

    status: int
    body: dict[str, Any] = field(default_factory=lambda: {"received": True})

    @classmethod
    def refused(cls, status: int, reason: str) -> Answer:
        return cls(status, {"received": False, "error": reason})


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def sign_resource(resource: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), resource.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def dedup_key(resource: dict[str, Any]) -> str:
    """The de-duplication key of a signed resource: sha256 of its canonical JSON (never the envelope id)."""
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def webhook_amount(value: object) -> Decimal | None:
    """An upstream amount: a decimal string (or integer) with at most 2 decimals and 9 integer digits, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not _UPSTREAM_AMOUNT.fullmatch(text):
        return None
    amount = Decimal(text)
    return amount if abs(amount) <= MAX_AMOUNT else None


def _secret(rt: Runtime) -> str:
    settings = rt.settings
    return settings.webhook_secret.get_secret_value() if settings.webhook_secret else rt.upstream.client_secret


async def receive_webhook(rt: Runtime, body: bytes, signature: str) -> Answer:
    """Verify, de-duplicate and record one notification (``body``: the raw request body)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return Answer.refused(400, "not JSON")
    if not isinstance(payload, dict):
        return Answer.refused(400, "not a JSON object")
    resource_raw = payload.get("resource")
    event_id = payload.get("id")
    event_type = payload.get("eventType")
    if not isinstance(resource_raw, str) or not isinstance(event_id, str) or not isinstance(event_type, str):
        return Answer.refused(400, "missing id, eventType or resource")
    expected = sign_resource(resource_raw, _secret(rt))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        logger.warning("webhook %s refused: bad signature", clean_text(event_id, 64))
        return Answer.refused(401, "bad signature")
    try:
        resource = json.loads(resource_raw)
    except ValueError:
        return Answer.refused(400, "resource is not JSON")
    if not isinstance(resource, dict):
        return Answer.refused(400, "resource is not an object")
    is_otp = event_type == OTP_EVENT
    if not is_otp and not event_type.startswith("CARD_TRANSACTION."):
        return Answer(200)  # authentic, but nothing this server records
    event_time = _event_time(resource)
    now = rt.store.now()
    if event_time is None and is_otp:
        event_time = now  # shape unconfirmed: taken, and expiring ten minutes from now
    if event_time is None or now - event_time > MAX_AGE_SECONDS or event_time - now > MAX_FUTURE_SECONDS:
        logger.warning("webhook %s refused: stale or undated", clean_text(event_id, 64))
        return Answer.refused(400, "stale or undated event")
    try:
        if is_otp:
            recorded = await _record_code(rt, resource, event_time)
        else:
            recorded = await _record_transaction(rt, event_type, resource, event_time)
    except _Refused as refused:
        logger.warning("webhook %s refused: %s", clean_text(event_id, 64), refused.reason)
        return Answer.refused(refused.status, refused.reason)
    if not recorded:
        logger.info("webhook %s was a duplicate", clean_text(event_id, 64))
    return Answer(200)


def webhook_sink(rt: Runtime) -> WebhookSink:
    """The embedded emulator's in-process delivery into :func:`receive_webhook` (same body, same signature)."""

    async def deliver(envelope: WebhookEnvelope) -> None:
        answer = await receive_webhook(rt, envelope.body, envelope.headers.get("Signature", ""))
        if answer.status != 200:
            logger.warning("embedded webhook %s not taken: %s", envelope.event_type, answer.body.get("error"))

    return deliver


def _event_time(resource: dict[str, Any]) -> float | None:
    """The newest signed time in the resource (seconds), or None; the unsigned envelope never dates an event."""
    times = [
        int(raw) / 1000.0
        for raw in (resource.get(name) for name in _TIME_FIELDS)
        if isinstance(raw, str | int) and not isinstance(raw, bool) and _DIGITS.fullmatch(str(raw))
    ]
    return max(times) if times else None


async def _record_transaction(rt: Runtime, event_type: str, resource: dict[str, Any], event_time: float) -> bool:
    txn_id, card_id = resource.get("id"), resource.get("cardId")
    if not isinstance(txn_id, str) or not isinstance(card_id, str) or not txn_id or not card_id:
        raise _Refused(400, "malformed card transaction")
    amount = Decimal("0")
    for name in _AMOUNT_FIELDS:  # every amount the resource carries is checked, the first one is recorded
        raw = resource.get(name)
        if raw is None:
            continue
        parsed = webhook_amount(raw)
        if parsed is None:
            raise _Refused(400, f"malformed amount in {name}")
        if name == _AMOUNT_FIELDS[0] or resource.get(_AMOUNT_FIELDS[0]) is None:
            amount = parsed
    raw_type = resource.get("type", 1)
    type_code = int(raw_type) if isinstance(raw_type, str | int) and _DIGITS.fullmatch(str(raw_type)) else 1
    if resource.get("transactionType") == "authorization":
        type_code = 1
    status = str(resource.get("status") or "PENDING").upper()[:32]
    recorded = await rt.store.write(
        activity.record_card_event,
        dedup_key(resource),
        event_type[:64],
        scope=rt.scope,
        transaction_id=txn_id,
        card_id=card_id,
        type_code=type_code,
        status=status,
        amount=abs(amount),
        currency=str(resource.get("billingCurrency") or resource.get("currency") or "USD")[:3],
        merchant=clean_text(resource.get("merchantName")),
        remark=clean_text(resource.get("remark")),
        event_time=event_time,
    )
    if recorded and type_code == 1 and _CARD_ID.fullmatch(card_id):
        # A purchase on a card: the watcher reads it at Interlace (the source of truth) and closes a single-use
        # card whose purchase settled, or freezes one used in a category policy does not allow.
        rt.watcher.wake(card_id)
    return bool(recorded)


#: Where a 3-D Secure notification may carry what we need (first found wins; the shape is unconfirmed).
_CARD_FIELDS = ("cardId", "card_id", "cardID")
_EXPIRY_FIELDS = ("expireTime", "expiresAt", "expiryTime", "expirationTime", "expireAt", "otpExpireTime")


def _expiry(resource: dict[str, Any], event_time: float) -> float:
    """When the code stops working: the notification's own expiry (ms, within a day), else ten minutes."""
    for name in _EXPIRY_FIELDS:
        raw = resource.get(name)
        if isinstance(raw, str | int) and not isinstance(raw, bool) and _DIGITS.fullmatch(str(raw)):
            at = int(raw) / 1000.0
            if event_time < at <= event_time + MAX_AGE_SECONDS:
                return at
    return event_time + OTP_TTL_SECONDS


#: Key names (lower case, letters and digits only) whose values are card data: never stored.
_CARD_DATA_KEYS = frozenset(
    {"pan", "cardpan", "cardnumber", "cardno", "primaryaccountnumber", "cvv", "cvv2", "cvc", "cvc2", "securitycode"}
)
_MAX_DEPTH = 16


def _without_card_data(value: Any, depth: int = 0) -> Any:
    """The resource as stored: card-data fields masked and card numbers anywhere else masked (the payload's shape
    is unconfirmed, and card numbers are in no database file); times are kept as they came."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = re.sub(r"[^a-z0-9]", "", str(key).lower())
            if name in _CARD_DATA_KEYS:
                out[key] = "[redacted]"
            elif key in _TIME_FIELDS or key in _EXPIRY_FIELDS:
                out[key] = item
            else:
                out[key] = _without_card_data(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_without_card_data(item, depth + 1) for item in value]
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, int) and not isinstance(value, bool):
        masked = mask_card_numbers(str(value))
        return value if masked == str(value) else masked
    return value


async def _record_code(rt: Runtime, resource: dict[str, Any], event_time: float) -> bool:
    card_id = next((v for v in (resource.get(n) for n in _CARD_FIELDS) if isinstance(v, str) and v), None)
    if card_id is None or not _CARD_ID.fullmatch(card_id):
        raise _Refused(400, "a 3-D Secure notification without a card id")
    recorded = await rt.store.write(
        three_ds.record_code,
        dedup_key(resource),
        scope=rt.scope,
        card_id=card_id,
        resource=_without_card_data(resource),
        expires_at=_expiry(resource, event_time),
    )
    if recorded:
        logger.info("3-D Secure code received for card %s (stored; never logged)", card_id)
    return bool(recorded)
