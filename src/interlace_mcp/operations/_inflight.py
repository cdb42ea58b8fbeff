"""Requests executing in this process right now: a retry waits for the first call instead of running beside it.

Across processes the ledger's execution lease does the same (a retry meanwhile is told the request is
busy); this registry only saves a concurrent retry in the same process from answering "in progress"
when waiting a moment gives it the real result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from interlace_mcp.policy import RequestKey

__all__ = ["InFlight"]


class InFlight:
    """Per-process registry of executing requests (event-loop only: no locks needed)."""

    def __init__(self) -> None:
        self._running: dict[RequestKey, anyio.Event] = {}

    async def wait(self, key: RequestKey, timeout: float) -> bool:
        """Wait until no call of this process holds ``key``; False when ``timeout`` ran out first."""
        if key not in self._running:
            return True  # the usual case: no timer, no cancel scope
        with anyio.move_on_after(timeout):
            while (event := self._running.get(key)) is not None:
                await event.wait()
            return True
        return False

    @contextmanager
    def hold(self, key: RequestKey) -> Iterator[None]:
        """Mark ``key`` as executing here until the block ends (call right after :meth:`wait`)."""
        event = anyio.Event()
        self._running[key] = event
        try:
            yield
        finally:
            if self._running.get(key) is event:
                del self._running[key]
            event.set()
