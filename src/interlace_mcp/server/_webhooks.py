"""``POST /webhooks/interlace``: Interlace's signed notifications over HTTP.

This is the HTTP side only: the body is capped while it is read (256 KB: a larger ``Content-Length`` is
refused before reading anything, a chunked body as soon as it passes the cap, 413), then handed to the
one intake (:func:`interlace_mcp.app.receive_webhook`: signature, freshness, de-duplication, recording),
which the embedded emulator's in-process deliveries use too.

The answer is ``{"received": true}``, fast: recording is one small transaction. Interlace stays the
source of truth; webhooks only make things happen sooner.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from interlace_mcp.app import Runtime, receive_webhook
from interlace_mcp.app import dedup_key as dedup_key
from interlace_mcp.app import sign_resource as sign_resource
from interlace_mcp.app import webhook_amount as webhook_amount

__all__ = ["MAX_BODY", "dedup_key", "sign_resource", "webhook_amount", "webhook_handler"]

logger = logging.getLogger("interlace_mcp.webhooks")

MAX_BODY = 256 * 1024
_DIGITS = re.compile(r"[0-9]{1,15}", re.ASCII)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


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
    async def receive(request: Request) -> Response:
        try:
            body = await _capped_body(request)
        except _Refused as refused:
            if refused.status == 413:
                logger.warning("webhook refused: %s", refused.reason)
            return _reject(refused.status, refused.reason)
        answer = await receive_webhook(runtime, body, request.headers.get("signature", ""))
        return JSONResponse(answer.body, status_code=answer.status)

    return receive
