"""Reaching the human at the client, out of the agent's reach: ask the client to open a URL (URL-mode
elicitation), then wait for what the human does there, with progress notifications.

Used for approvals (the approval page on the dashboard) and meant for anything else a human must do on a
page of ours (e.g. a one-time card reveal page). The URL is opened by the client for its user; what
happens on the page (an operator signs in and decides) never passes through the model.

How each protocol era gets the question (verified with the official ``mcp`` 2.3 Client):

- **2025-era sessions** (2025-11-25, legacy handshake) with a back-channel (stdio, in-memory, streamable
  HTTP sessions on a real socket): a live ``elicitation/create`` request in URL mode
  (``ctx.elicit_url``), answered accept / decline / cancel; after the human acted,
  ``notifications/elicitation/complete`` tells the client. Without a back-channel (a stateless legacy HTTP
  request) nothing can be asked: :func:`ask_to_open` answers ``"unsupported"``.
- **2026-07-28** (no back-channel at all): the URL-mode ``elicitation/create`` travels inside an
  ``InputRequiredResult`` -- the spec's multi-round-trip. The tool raises :class:`OpenUrlRound` (a
  ``UrlElicitationRequiredError``), :func:`url_elicitation_rounds` (server middleware) answers the round
  with the ``InputRequiredResult``, the client shows the URL and retries the same call with the answer,
  and this time :func:`ask_to_open` returns it. (The -32042 error itself was retired in 2026-07-28, and the
  official client only raises it to the application in both eras; it is what a 2025-era client would see
  if the middleware were missing.)

API: :func:`can_open_urls` (does the client declare URL mode?), :func:`ask_to_open` (ask; returns the
client's answer), :func:`wait_for` (poll a check until it answers or time runs out, woken early by
:class:`~interlace_mcp.app.Wakeups`, with progress), :func:`done` (tell a 2025-era client the page is done).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio
from mcp import MCPError, UrlElicitationRequiredError
from mcp.server.mcpserver import Context
from mcp.types import ElicitRequest, ElicitRequestURLParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from interlace_mcp.app import Wakeups
from interlace_mcp.tools._progress import report

__all__ = [
    "POLL_SECONDS",
    "PROGRESS_SECONDS",
    "Answer",
    "OpenUrlRound",
    "ask_to_open",
    "can_open_urls",
    "done",
    "is_modern",
    "url_elicitation_rounds",
    "wait_for",
]

logger = logging.getLogger("interlace_mcp.tools")

T = TypeVar("T")

#: How the client answered a request to open a URL ("unsupported": it could not be asked on this call).
Answer = Literal["accept", "decline", "cancel", "unsupported"]

#: How often a waiting call re-reads the database (a decision made in another process).
POLL_SECONDS = 1.0
#: How often a waiting call sends a progress notification (when the client sent a progress token).
PROGRESS_SECONDS = 5.0

_MODERN = "2026-07-28"


def is_modern(ctx: Context[Any, Any]) -> bool:
    """A 2026-07-28 (or later) request: no back-channel; questions ride an InputRequiredResult."""
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, _MODERN)


def can_open_urls(ctx: Context[Any, Any]) -> bool:
    """Whether the client declared URL-mode elicitation (a bare ``elicitation: {}`` means form only)."""
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None and caps.elicitation.url is not None


class OpenUrlRound(UrlElicitationRequiredError):
    """A 2026-07-28 round that asks the client to open ``url``: :func:`url_elicitation_rounds` turns it into
    an ``InputRequiredResult`` whose answer comes back under ``key`` with the client's retry."""

    def __init__(self, key: str, message: str, url: str) -> None:
        super().__init__([ElicitRequestURLParams(message=message, url=url, elicitation_id=key)])
        self.key = key
        self.prompt = message
        self.url = url


async def url_elicitation_rounds(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware: answer a tool's :class:`OpenUrlRound` with the 2026-07-28 ``InputRequiredResult``.

    A 2025-era request never raises it (the question is asked live there); should one get here anyway, the
    error goes out as what it is, -32042 URLElicitationRequiredError, the 2025-11-25 form of the same ask.
    """
    try:
        return await call_next(ctx)
    except OpenUrlRound as round_:
        version = getattr(ctx, "protocol_version", None)
        if ctx.method != "tools/call" or version is None or not is_version_at_least(version, _MODERN):
            raise
        state = (ctx.params or {}).get("requestState")
        return InputRequiredResult(
            input_requests={
                round_.key: ElicitRequest(params=ElicitRequestURLParams(message=round_.prompt, url=round_.url))
            },
            request_state=state if isinstance(state, str) else None,
        )


async def ask_to_open(ctx: Context[Any, Any], *, key: str, message: str, url: str) -> Answer:
    """Ask the client to open ``url`` for its user; the client's answer (accept = it opened / will open it).

    ``key`` identifies this question (unique per server, stable across the rounds of one call: e.g.
    ``approval:<id>``). On 2026-07-28 the first round raises :class:`OpenUrlRound` (the middleware answers
    it) and the client's retry brings the answer. A client that does not declare URL mode, a 2025-era call
    without a back-channel, or a client that answers with an error: ``"unsupported"`` (nothing was opened).
    """
    if not can_open_urls(ctx):
        return "unsupported"
    if is_modern(ctx):
        answer = (ctx.input_responses or {}).get(key)
        if isinstance(answer, ElicitResult):
            return answer.action
        raise OpenUrlRound(key, message, url)
    if not getattr(ctx.session, "can_send_request", False):
        return "unsupported"
    try:
        result = await ctx.elicit_url(message, url, key)
    except MCPError as exc:  # the client refused the request (some hosts declare URL mode but refuse it)
        logger.info("the client did not take the URL elicitation %s: %s", key, exc)
        return "unsupported"
    return result.action


async def done(ctx: Context[Any, Any], key: str) -> None:
    """Tell a 2025-era client that what it opened for ``key`` is finished (2026-07-28 has no such notice)."""
    if is_modern(ctx) or not getattr(ctx.session, "can_send_request", False):
        return
    try:
        await ctx.session.send_elicit_complete(key, related_request_id=ctx.request_id)
    except Exception as exc:  # best effort: the call's result says the same
        logger.debug("elicitation complete notice for %s not sent: %s", key, exc)


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    seconds: float,
    ctx: Context[Any, Any],
    message: Callable[[float], str],
    wakeups: Wakeups | None = None,
    key: str | None = None,
) -> T | None:
    """Run ``check`` until it returns a value or ``seconds`` pass (then None).

    Between checks it sleeps up to :data:`POLL_SECONDS`, woken at once by ``wakeups.notify(key)``, and
    sends a progress notification (``message(seconds_left)``; progress = seconds waited, total = ``seconds``)
    at the start and every :data:`PROGRESS_SECONDS` -- a client that sent no progress token gets none.
    """
    started = time.monotonic()
    deadline = started + seconds
    last_progress: float | None = None
    while True:
        found = await check()
        if found is not None:
            return found
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            return None
        if last_progress is None or now - last_progress >= PROGRESS_SECONDS:
            last_progress = now
            await _progress(ctx, min(now - started, seconds), seconds, message(left))
        nap = min(POLL_SECONDS, left)
        if wakeups is not None and key is not None:
            await wakeups.wait(key, nap)
        else:
            await anyio.sleep(nap)


async def _progress(ctx: Context[Any, Any], progress: float, total: float, message: str) -> None:
    await report(ctx, progress, total, message)  # never fails the call; increasing within it
