"""Signed webhook notifications, as Interlace sends them (interlace-api.md section 7).

The state *emits* an envelope when something happens (an authorization, its settlement, a 3-D Secure
code); the envelope is signed then and there and kept in :attr:`StateBase.webhooks` (the newest
:data:`MAX_WEBHOOK_LOG`). :meth:`WebhooksMixin.flush_webhooks` delivers what is pending, in order, to

- the configured URL (``config.webhook_url``): one POST per event, no retries, failures logged; and
- every registered in-process *sink*: a callable that receives exactly the same envelope (body bytes
  and headers) without HTTP, so an embedding server can feed its own webhook intake.

Each delivery is recorded on its envelope (:attr:`WebhookEnvelope.deliveries`), so tests can observe
them. The HTTP app flushes after every request (in a background task, after the response).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from . import _seeds as seeds
from ._base import StateBase

__all__ = [
    "MAX_WEBHOOK_LOG",
    "WebhookDelivery",
    "WebhookEnvelope",
    "WebhookSink",
    "WebhooksMixin",
    "sign_resource",
]

logger = logging.getLogger(__name__)

#: How many emitted envelopes the state remembers.
MAX_WEBHOOK_LOG: Final = 1000
_WEBHOOK_TIMEOUT: Final = 5.0


def sign_resource(resource: str, secret: str) -> str:
    """Interlace's webhook signature: base64(HMAC-SHA256(key=secret, message=resource))."""
    digest = hmac.new(secret.encode("utf-8"), resource.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class WebhookDelivery:
    """One attempt to hand an envelope to one target (``"sink"`` or the URL)."""

    target: str
    ok: bool
    status: int | None = None
    error: str | None = None


@dataclass
class WebhookEnvelope:
    """One signed notification: the exact body and headers a receiver gets."""

    id: str
    event_type: str
    #: the signed, JSON-encoded ``resource`` string (the body carries it as a string)
    resource: str
    body: bytes
    headers: dict[str, str]
    create_time: int
    deliveries: list[WebhookDelivery] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        """The parsed body (``eventType``, ``resource`` as a string, ``id``, ...)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def resource_object(self) -> dict[str, Any]:
        """The parsed ``resource``."""
        parsed: dict[str, Any] = json.loads(self.resource)
        return parsed

    @property
    def delivered(self) -> bool:
        return any(d.ok for d in self.deliveries)


#: An in-process receiver: called with each envelope, in order; may be sync or async.
#: Whatever it raises is logged and recorded as a failed delivery, never propagated.
WebhookSink = Callable[[WebhookEnvelope], object]


class WebhooksMixin(StateBase):
    """Emission, the outbox, in-process sinks and delivery."""

    def emit(self, event_type: str, resource: dict[str, Any]) -> WebhookEnvelope:
        """Sign a v3 notification about ``resource`` and queue it for delivery."""
        resource_text = json.dumps(resource, separators=(",", ":"))
        ms = str(self.now_ms())
        payload = {
            "eventType": event_type,
            "apiVersion": "v3",
            "code": "000000",
            "message": "",
            "resource": resource_text,
            "createTime": ms,
            "id": str(uuid.uuid4()),
        }
        envelope = WebhookEnvelope(
            id=payload["id"],
            event_type=event_type,
            resource=resource_text,
            body=json.dumps(payload).encode("utf-8"),
            headers={
                "Content-Type": "application/json",
                "Signature-Method": "HMAC-SHA256",
                "Signature": sign_resource(resource_text, seeds.CLIENT_SECRET),
                "Timestamp": ms,
            },
            create_time=int(ms),
        )
        self.webhooks.append(envelope)
        del self.webhooks[:-MAX_WEBHOOK_LOG]
        self.webhook_outbox.append(envelope)
        return envelope

    def take_outbox(self) -> list[WebhookEnvelope]:
        """The envelopes not yet handed to a delivery, in emission order (and forget them there)."""
        pending, self.webhook_outbox = self.webhook_outbox, []
        return pending

    def add_webhook_sink(self, sink: WebhookSink) -> None:
        """Deliver every later webhook to ``sink`` too (in-process, same body and headers, no HTTP)."""
        self.webhook_sinks.append(sink)

    def remove_webhook_sink(self, sink: WebhookSink) -> None:
        if sink in self.webhook_sinks:
            self.webhook_sinks.remove(sink)

    def webhooks_of(self, event_type: str) -> list[WebhookEnvelope]:
        """The remembered envelopes of one event type, oldest first."""
        return [e for e in self.webhooks if e.event_type == event_type]

    async def flush_webhooks(self, transport: httpx.AsyncBaseTransport | None = None) -> list[WebhookEnvelope]:
        """Deliver every pending envelope to the sinks and the configured URL; never raises."""
        return await self.deliver_webhooks(self.take_outbox(), transport=transport)

    async def deliver_webhooks(
        self, envelopes: list[WebhookEnvelope], *, transport: httpx.AsyncBaseTransport | None = None
    ) -> list[WebhookEnvelope]:
        """Deliver ``envelopes`` in order: to each sink, then to the URL; record every attempt."""
        if not envelopes:
            return envelopes
        sinks = list(self.webhook_sinks)
        url = self.config.webhook_url
        client: httpx.AsyncClient | None = None
        try:
            if url:
                client = httpx.AsyncClient(timeout=_WEBHOOK_TIMEOUT, transport=transport)
            for envelope in envelopes:
                for sink in sinks:
                    envelope.deliveries.append(await _to_sink(sink, envelope))
                if client is not None and url:
                    envelope.deliveries.append(await _to_url(client, url, envelope))
        finally:
            if client is not None:
                await client.aclose()
        return envelopes


async def _to_sink(sink: WebhookSink, envelope: WebhookEnvelope) -> WebhookDelivery:
    try:
        result = sink(envelope)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        logger.warning("sandbox: webhook sink failed (%s)", type(exc).__name__)
        return WebhookDelivery("sink", False, error=type(exc).__name__)
    return WebhookDelivery("sink", True)


async def _to_url(client: httpx.AsyncClient, url: str, envelope: WebhookEnvelope) -> WebhookDelivery:
    try:
        response = await client.post(url, content=envelope.body, headers=envelope.headers)
    except Exception as exc:
        logger.warning("sandbox: webhook delivery failed (%s)", type(exc).__name__)
        return WebhookDelivery(url, False, error=type(exc).__name__)
    if response.status_code >= 300:
        logger.warning("sandbox: webhook receiver answered HTTP %s", response.status_code)
        return WebhookDelivery(url, False, status=response.status_code)
    return WebhookDelivery(url, True, status=response.status_code)
