"""What wakes the checkout loop: cards to look at now (a webhook about them, a new card with an expiry), and
a gentle back-off for cards that are due but cannot be closed yet (a purchase still pending)."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

__all__ = ["CardWatcher"]

#: The longest a card due but not closable yet waits between looks (a purchase pending for days).
MAX_BACKOFF_SECONDS = 60.0


class CardWatcher:
    """Per-process: card ids to check at once, and when a card that could not be closed may be looked at again.

    Event-loop only (no locks): :meth:`wake` is called by the webhook intake and the tools, :meth:`wait` by the
    one checkout loop.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: set[str] = set()
        self._all = False
        self._event: anyio.Event | None = None
        self._backoff: dict[str, tuple[float, float]] = {}

    def wake(self, card_id: str | None = None) -> None:
        """Look at ``card_id`` now (None: re-read which cards expire when, e.g. after a new card)."""
        if card_id is None:
            self._all = True
        else:
            self._due.add(card_id)
            self._backoff.pop(card_id, None)  # news about it: look now, whatever the back-off said
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> tuple[set[str], bool]:
        """Until woken or ``timeout`` seconds: (the card ids to check, whether to re-read the expiries)."""
        if not self._due and not self._all:
            self._event = anyio.Event()
            with anyio.move_on_after(max(timeout, 0.0)):
                await self._event.wait()
            self._event = None
        due, everything = self._due, self._all
        self._due, self._all = set(), False
        return due, everything

    def later(self, card_id: str) -> None:
        """``card_id`` was due but could not be closed: look again after a growing pause (1 s, 2 s, ... 60 s)."""
        _, delay = self._backoff.get(card_id, (0.0, 0.5))
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        self._backoff[card_id] = (self._clock() + delay, delay)

    def done(self, card_id: str) -> None:
        self._backoff.pop(card_id, None)

    def resting(self, card_id: str) -> bool:
        """Whether ``card_id`` is still in its back-off pause."""
        entry = self._backoff.get(card_id)
        return entry is not None and self._clock() < entry[0]

    def ready(self) -> set[str]:
        """Cards whose back-off pause is over (look at them again now)."""
        now = self._clock()
        return {card_id for card_id, (at, _) in self._backoff.items() if at <= now}

    def next_look(self) -> float | None:
        """Seconds until the first back-off pause ends (None: no card is resting)."""
        if not self._backoff:
            return None
        return max(0.0, min(at for at, _ in self._backoff.values()) - self._clock())
