"""``POST /webhooks/interlace``: Interlace's signed notifications about card transactions.

Authenticity rests on ``Signature = base64(HMAC-SHA256(key, resource))`` over the raw ``resource``
string (interlace-api.md section 7.3), compared in constant time. Everything outside ``resource`` (the
envelope's ``id``, ``createTime``, ``eventType`` and the ``Timestamp`` header) is unsigned and decides
nothing that matters:

- **Size.** The body is capped while it is read (256 KB): a larger ``Content-Length`` is refused
  before reading anything, a chunked body as soon as it passes the cap (413).
- **Freshness** comes only from the signed resource's own times (the newest of ``updateTime``,
  ``createTime`` and ``transactionTime``): older than a day, or from the future, or undated -> 400.
- **De-duplication** rests on the signed resource: the key is the sha256 of its canonical JSON, so
  Interlace's retries and a captured resource replayed under new envelope ids are recorded once.
- **Amounts** (``billingAmount``, ``amount``) must be decimal strings (or integers) with at most 2
  decimals and at most 9 integer digits, optionally negative; anything else is a 400.

The answer is ``{"received": true}``, fast: recording is one small transaction. Interlace stays the
source of truth; webhooks only make spend visible sooner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from decimal import Decimal
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from interlace_mcp.app import Runtime
from interlace_mcp.money import MAX_AMOUNT
from interlace_mcp.operations import clean_text
from interlace_mcp.policy import activity

__all__ = ["MAX_AGE_SECONDS", "MAX_BODY", "dedup_key", "sign_resource", "webhook_amount", "webhook_handler"]

logger = logging.getLogger("interlace_mcp.webhooks")

#: Interlace retries for about 4.5 hours; anything older than a day is a replay, not a retry.
MAX_AGE_SECONDS = 24 * 3600
MAX_FUTURE_SECONDS = 300
MAX_BODY = 256 * 1024
#: The signed times a resource may carry (ms since the epoch); the newest one dates the event.
_TIME_FIELDS = ("updateTime", "createTime", "transactionTime")
_AMOUNT_FIELDS = ("billingAmount", "amount")
_UPSTREAM_AMOUNT = re.compile(r"-?[0-9]{1,9}(?:\.[0-9]{1,2})?", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)


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


def _reject(status: int, reason: str) -> Response:
    return JSONResponse({"received": False, "error": reason}, status_code=status)


async def _capped_body(request: Request) -> bytes:
    """The body, read at most MAX_BODY bytes far: a larger declared length is refused before reading."""
    length = request.headers.get("content-length")
    if length is not None:
        if not _DIGITS.fullmatch(length.strip()):
            raise _Refused(400, "bad Content-Length")
        if int(length) > MAX_BODY:
            raise _Refused(413, f"body too large (limit {MAX_BODY} bytes)")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise _Refused(413, f"body too large (limit {MAX_BODY} bytes)")
    except ClientDisconnect:
        raise _Refused(400, "client disconnected") from None
    return bytes(body)


def webhook_handler(runtime: Runtime) -> Any:
    settings = runtime.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else runtime.upstream.client_secret

    async def receive(request: Request) -> Response:
        try:
            body = await _capped_body(request)
        except _Refused as refused:
            if refused.status == 413:
                logger.warning("webhook refused: %s", refused.reason)
            return _reject(refused.status, refused.reason)
        try:
            payload = json.loads(body)
        except ValueError:
            return _reject(400, "not JSON")
        if not isinstance(payload, dict):
            return _reject(400, "not a JSON object")
        resource_raw = payload.get("resource")
        event_id = payload.get("id")
        event_type = payload.get("eventType")
        signature = request.headers.get("signature", "")
        if not isinstance(resource_raw, str) or not isinstance(event_id, str) or not isinstance(event_type, str):
            return _reject(400, "missing id, eventType or resource")
        expected = sign_resource(resource_raw, secret)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            logger.warning("webhook %s refused: bad signature", clean_text(event_id, 64))
            return _reject(401, "bad signature")
        try:
            resource = json.loads(resource_raw)
        except ValueError:
            return _reject(400, "resource is not JSON")
        if not isinstance(resource, dict):
            return _reject(400, "resource is not an object")
        if not event_type.startswith("CARD_TRANSACTION."):
            return JSONResponse({"received": True})  # authentic, but nothing this server records
        event_time = _event_time(resource)
        now = runtime.ledger.now()
        if event_time is None or now - event_time > MAX_AGE_SECONDS or event_time - now > MAX_FUTURE_SECONDS:
            logger.warning("webhook %s refused: stale or undated", clean_text(event_id, 64))
            return _reject(400, "stale or undated event")
        try:
            recorded = await _record_transaction(runtime, event_type, resource, event_time)
        except _Refused as refused:
            logger.warning("webhook %s refused: %s", clean_text(event_id, 64), refused.reason)
            return _reject(refused.status, refused.reason)
        if not recorded:
            logger.info("webhook %s was a duplicate", clean_text(event_id, 64))
        return JSONResponse({"received": True})

    return receive


def _event_time(resource: dict[str, Any]) -> float | None:
    """The newest signed time in the resource (seconds), or None; the unsigned envelope never dates an event."""
    times = [
        int(raw) / 1000.0
        for raw in (resource.get(name) for name in _TIME_FIELDS)
        if isinstance(raw, str | int) and not isinstance(raw, bool) and _DIGITS.fullmatch(str(raw))
    ]
    return max(times) if times else None


async def _record_transaction(runtime: Runtime, event_type: str, resource: dict[str, Any], event_time: float) -> bool:
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
    return await runtime.store.write(
        activity.record_card_event,
        dedup_key(resource),
        event_type[:64],
        scope=runtime.scope,
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
