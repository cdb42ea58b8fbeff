"""Telling a caller what a request to Interlace is waiting for: a slow answer, a retry and why.

The client knows nothing of who listens (it never imports ``mcp``): a caller sets a listener for its own task
with :func:`upstream_waits` (a context variable, so concurrent calls each hear only their own requests), and
the client calls it while a request is slow -- after :data:`WAIT_NOTICE_AFTER` seconds, then every
:data:`WAIT_NOTICE_EVERY` -- and before each retry. Without a listener nothing extra runs per request.
A listener that fails or is slow never fails or delays the request: failures are logged and dropped, and the
request does not wait for a reminder to be delivered before it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

__all__ = ["WAIT_NOTICE_AFTER", "WAIT_NOTICE_EVERY", "UpstreamListener", "UpstreamWait", "upstream_waits"]

logger = logging.getLogger("interlace_mcp.client")

#: A request still unanswered after this many seconds is announced ...
WAIT_NOTICE_AFTER = 1.0
#: ... and again every this many seconds while it stays unanswered.
WAIT_NOTICE_EVERY = 5.0


@dataclass(frozen=True)
class UpstreamWait:
    """One thing worth telling about a request to Interlace.

    ``kind="waiting"``: attempt ``attempt`` of ``attempts`` has waited ``seconds`` so far.
    ``kind="retrying"``: attempt ``attempt - 1`` failed for ``reason`` (``"HTTP 503"``, ``"timeout"``, ...);
    attempt ``attempt`` of ``attempts`` follows in ``seconds``. ``path`` is the API path without the
    ``/open-api/v3`` prefix or the query (no account id, nothing secret).
    """

    kind: Literal["waiting", "retrying"]
    method: str
    path: str
    attempt: int
    attempts: int
    seconds: float
    reason: str | None = None


UpstreamListener = Callable[[UpstreamWait], Awaitable[None]]

_listener: ContextVar[UpstreamListener | None] = ContextVar("interlace_upstream_listener", default=None)


@contextmanager
def upstream_waits(listener: UpstreamListener) -> Iterator[None]:
    """Within this block (this task and tasks it starts), ``listener`` hears about slow requests and retries."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def current_listener() -> UpstreamListener | None:
    return _listener.get()


async def tell(listener: UpstreamListener, event: UpstreamWait) -> None:
    """Deliver ``event``; a listener's failure is the listener's problem, never the request's."""
    try:
        await listener(event)
    except Exception as exc:
        logger.debug("upstream wait listener failed: %s", exc)
