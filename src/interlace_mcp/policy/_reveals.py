"""One-time reveal links (policy ``reveal = "human"``): the card's number is shown to a signed-in human on
the dashboard, never to the model.

Only the sha256 of a link's token is stored. A link works once, for one card, until it expires
(:data:`REVEAL_LINK_SECONDS`); taking it is one conditional UPDATE, so two operators (or two instances)
racing for the same link get it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlace_mcp.policy._store import Reader, Tx

__all__ = ["REVEAL_LINK_SECONDS", "RevealLink", "create_link", "peek_link", "take_link"]

#: How long a reveal link stays usable.
REVEAL_LINK_SECONDS = 300.0


@dataclass(frozen=True)
class RevealLink:
    scope: str
    agent: str
    card_id: str
    created_at: float
    expires_at: float
    used_at: float | None
    used_by: str | None

    def usable(self, now: float) -> bool:
        return self.used_at is None and now < self.expires_at


def create_link(
    tx: Tx, digest: str, *, scope: str, agent: str, card_id: str, ttl: float = REVEAL_LINK_SECONDS
) -> float:
    """Store a new link (by its token's sha256); returns when it expires."""
    now = tx.now()
    tx.execute(
        "INSERT INTO reveal_links (token_sha256, scope, agent, card_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (digest, scope, agent, card_id, now, now + ttl),
    )
    tx.execute("DELETE FROM reveal_links WHERE expires_at < ?", (now - 86400.0,))  # a day's history is enough
    return now + ttl


def _link(rx: Reader, digest: str) -> RevealLink | None:
    row = rx.one("SELECT * FROM reveal_links WHERE token_sha256 = ?", (digest,))
    if row is None:
        return None
    return RevealLink(
        row["scope"], row["agent"], row["card_id"], row["created_at"], row["expires_at"], row["used_at"], row["used_by"]
    )


def peek_link(rx: Reader, digest: str) -> RevealLink | None:
    """The link, used or not (None: no such token)."""
    return _link(rx, digest)


def take_link(tx: Tx, digest: str, *, by: str) -> RevealLink | None:
    """Use the link once: the link when this call took it, None when it is unknown, used or expired."""
    cur = tx.execute(
        "UPDATE reveal_links SET used_at = ?, used_by = ?"
        " WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ?",
        (tx.now(), by, digest, tx.now()),
    )
    return _link(tx, digest) if cur.rowcount > 0 else None
