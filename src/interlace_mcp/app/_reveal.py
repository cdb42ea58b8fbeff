"""``reveal = "human"``: a one-time dashboard link that shows a card to a signed-in operator, not to the model.

The link is ``<dashboard>/dashboard/reveal/<token>``: the token is random (256 bits), only its sha256 is
stored, and it works once, for one card, for five minutes (:mod:`interlace_mcp.policy.reveals`). The page
behind it needs an operator's sign-in, and shows the number fetched live from Interlace, never cached.
"""

from __future__ import annotations

import secrets

from interlace_mcp.app._runtime import Runtime
from interlace_mcp.config import Settings
from interlace_mcp.policy import reveals, token_digest

__all__ = ["DEFAULT_DASHBOARD_URL", "REVEAL_PATH", "create_reveal_link", "dashboard_base", "open_reveal_link"]

#: Where the reveal page lives (the dashboard serves it).
REVEAL_PATH = "/dashboard/reveal/"
#: Where `interlace-mcp dashboard` listens by default (stdio deployments): the link's base without
#: INTERLACE_PUBLIC_URL.
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8767"


def dashboard_base(settings: Settings) -> str:
    """The dashboard's base URL as a human's browser reaches it: INTERLACE_PUBLIC_URL, else the local default."""
    return (settings.public_url or DEFAULT_DASHBOARD_URL).rstrip("/")


async def create_reveal_link(rt: Runtime, agent: str, card_id: str) -> tuple[str, float]:
    """A new one-time link to show ``card_id`` to a human: (its URL, when it expires in epoch seconds)."""
    token = secrets.token_urlsafe(32)
    expires_at = await rt.store.write(
        reveals.create_link, token_digest(token), scope=rt.scope, agent=agent, card_id=card_id
    )
    return f"{dashboard_base(rt.settings)}{REVEAL_PATH}{token}", expires_at


async def open_reveal_link(rt: Runtime, token: str, agent: str, card_id: str) -> tuple[str, float] | None:
    """The still-usable link of ``token`` for this agent's ``card_id``: (its URL, expiry); None otherwise.

    For a call that comes back with the client's answer (2026-07-28 rounds): it refers to the link it was
    asked to open instead of minting a second one.
    """
    link = await rt.store.read(reveals.peek_link, token_digest(token))
    if link is None or link.scope != rt.scope or link.agent != agent or link.card_id != card_id:
        return None
    if not link.usable(rt.store.now()):
        return None
    return f"{dashboard_base(rt.settings)}{REVEAL_PATH}{token}", link.expires_at
