"""``POST /webhooks/interlace``: Interlace's signed notifications about card transactions.

Authenticity rests on ``Signature = base64(HMAC-SHA256(key, resource))`` over the raw ``resource``
string (interlace-api.md section 7.3), compared in constant time. The unsigned ``Timestamp`` header is
never trusted alone: freshness comes from the signed resource's own ``createTime`` (older than the
retry horizon, or from the future, is refused). Replays are answered but never applied twice
(de-duplication by notification id). The answer is ``{"received": true}``, fast: recording is one
small transaction. Interlace stays the source of truth; webhooks only make spend visible sooner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from interlace_mcp.app import Runtime
from interlace_mcp.money import AmountError, parse_upstream_amount
from interlace_mcp.operations import clean_text
from interlace_mcp.policy import activity

__all__ = ["MAX_AGE_SECONDS", "sign_resource", "webhook_handler"]

logger = logging.getLogger("interlace_mcp.webhooks")

#: Interlace retries for about 4.5 hours; anything older than a day is a replay, not a retry.
MAX_AGE_SECONDS = 24 * 3600
MAX_FUTURE_SECONDS = 300
MAX_BODY = 256 * 1024


def sign_resource(resource: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), resource.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _reject(status: int, reason: str) -> Response:
    return JSONResponse({"received": False, "error": reason}, status_code=status)


def webhook_handler(runtime: Runtime) -> Any:
    settings = runtime.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else runtime.upstream.client_secret

    async def receive(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _reject(413, "body too large")
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
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            logger.warning("webhook %s refused: bad signature", clean_text(event_id, 64))
            return _reject(401, "bad signature")
        try:
            resource = json.loads(resource_raw)
        except ValueError:
            return _reject(400, "resource is not JSON")
        if not isinstance(resource, dict):
            return _reject(400, "resource is not an object")
        event_time = _event_time(resource, payload)
        now = runtime.ledger.now()
        if event_time is None or now - event_time > MAX_AGE_SECONDS or event_time - now > MAX_FUTURE_SECONDS:
            logger.warning("webhook %s refused: stale or undated", clean_text(event_id, 64))
            return _reject(400, "stale or undated event")
        if event_type.startswith("CARD_TRANSACTION."):
            recorded = await _record_transaction(runtime, event_id, event_type, resource, event_time)
            if recorded is None:
                return _reject(400, "malformed card transaction")
            if not recorded:
                logger.info("webhook %s was a duplicate", clean_text(event_id, 64))
        return JSONResponse({"received": True})

    return receive


def _event_time(resource: dict[str, Any], payload: dict[str, Any]) -> float | None:
    # Prefer the signed resource's own time; the envelope's createTime is a fallback for other events.
    for raw in (resource.get("createTime"), resource.get("transactionTime"), payload.get("createTime")):
        if isinstance(raw, str | int) and str(raw).isdigit():
            return int(raw) / 1000.0
    return None


async def _record_transaction(
    runtime: Runtime, event_id: str, event_type: str, resource: dict[str, Any], event_time: float
) -> bool | None:
    txn_id, card_id = resource.get("id"), resource.get("cardId")
    if not isinstance(txn_id, str) or not isinstance(card_id, str):
        return None
    try:
        amount = parse_upstream_amount(resource.get("billingAmount") or resource.get("amount") or "0")
        type_code = int(resource.get("type", 1) if str(resource.get("type", 1)).isdigit() else 1)
    except (AmountError, ValueError):
        return None
    if resource.get("transactionType") == "authorization":
        type_code = 1
    status = str(resource.get("status") or "PENDING").upper()
    return await runtime.store.write(
        activity.record_card_event,
        event_id,
        event_type,
        scope=runtime.scope,
        transaction_id=txn_id,
        card_id=card_id,
        type_code=type_code,
        status=status,
        amount=abs(Decimal(amount)),
        currency=str(resource.get("billingCurrency") or resource.get("currency") or "USD")[:3],
        merchant=clean_text(resource.get("merchantName")),
        remark=clean_text(resource.get("remark")),
        event_time=event_time,
    )
