"""Progress notifications of one tool call: while it waits on Interlace (a slow answer, each retry) and while it
waits for a human (tools/_human.py).

:func:`reporting` wraps every tool call (tools/_registry.py): it makes the call's :class:`CallProgress` current
and sets the client's listener (``interlace_mcp.client.upstream_waits``), so the client -- which knows nothing of
MCP -- tells this call, and only this call, about its own requests. Notifications go out through
``ctx.report_progress``: the SDK sends them only when the client sent a progress token (a client that sent none
gets none). Progress always increases within a call (the spec requires it): it counts seconds since the call
began unless a wait reports its own (approval waits: seconds waited of the wait's total). Nothing is sent once
the call has returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mcp.server.mcpserver import Context
from mcp_types.version import is_version_at_least

from interlace_mcp.client import UpstreamWait, upstream_waits

__all__ = ["CallProgress", "report", "reporting", "upstream_message"]

logger = logging.getLogger("interlace_mcp.tools")

#: The smallest step between two notifications of one call (progress must increase).
_STEP = 0.1


class CallProgress:
    """One call's progress notifications, in increasing order, until the call returns."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self.ctx = ctx
        self.started = time.monotonic()
        self.last: float | None = None
        self.open = True

    async def send(self, message: str, *, progress: float | None = None, total: float | None = None) -> None:
        if not self.open:
            return
        value = round(time.monotonic() - self.started if progress is None else progress, 1)
        if self.last is not None and value <= self.last:
            value = round(self.last + _STEP, 1)
        self.last = value
        await _send(self.ctx, value, total, message)

    async def upstream(self, event: UpstreamWait) -> None:
        await self.send(upstream_message(event))


_current: ContextVar[CallProgress | None] = ContextVar("interlace_call_progress", default=None)


@contextmanager
def reporting(ctx: Context[Any, Any]) -> Iterator[CallProgress]:
    """For the duration of one tool call: its progress notifications, including its waits on Interlace."""
    call = CallProgress(ctx)
    token = _current.set(call)
    try:
        if _may_want_progress(ctx):
            with upstream_waits(call.upstream):
                yield call
        else:
            yield call
    finally:
        call.open = False
        _current.reset(token)


def _may_want_progress(ctx: Context[Any, Any]) -> bool:
    """False when the request shows it carries no progress token (a 2025-era request: its ``_meta`` is read
    here), so the client's requests are not watched for nothing. A 2026-07-28 request may reach the tool without
    its token in sight (in memory the SDK keeps the client's callback instead): it is watched, and the SDK drops
    what no one asked for."""
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        return True
    meta = ctx.request_context.meta
    return meta is not None and meta.get("progress_token") is not None


async def report(ctx: Context[Any, Any], progress: float, total: float | None, message: str) -> None:
    """A progress notification for this call (through its :class:`CallProgress` where the call has one)."""
    call = _current.get()
    if call is not None and call.ctx is ctx:
        await call.send(message, progress=progress, total=total)
    else:
        await _send(ctx, round(progress, 1), total, message)


def upstream_message(event: UpstreamWait) -> str:
    """What a client shows while the call waits on Interlace."""
    request = f"{event.method} {event.path}"
    attempt = f"attempt {event.attempt} of {event.attempts}"
    if event.kind == "waiting":
        return f"waiting for Interlace to answer {request} ({attempt}, {event.seconds:.0f} s so far)"
    when = "now" if event.seconds < 0.05 else f"in {event.seconds:.1f} s"
    return f"Interlace failed {request} ({event.reason}); retrying {when} ({attempt})"


async def _send(ctx: Context[Any, Any], progress: float, total: float | None, message: str) -> None:
    try:
        await ctx.report_progress(progress, total, message)
    except Exception as exc:  # a progress notice is never worth failing a call for
        logger.debug("progress notification not sent: %s", exc)
