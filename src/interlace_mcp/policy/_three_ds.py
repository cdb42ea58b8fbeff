"""3-D Secure one-time codes as Interlace notified them (``CARD.3DS.OTP``): the signed resource, stored whole.

The payload's shape is unconfirmed (docs/wire-contract.md), so nothing here reads the code: the resource
is kept as it came, and the tool that hands a code to its card's agent reads it defensively. Codes are
short-lived secrets: never logged, never in an audit record, and purged an hour after they expire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from interlace_mcp.policy._store import Reader, Tx

__all__ = ["PURGE_AFTER_SECONDS", "StoredCode", "codes_for_card", "purge_codes", "record_code"]

#: A code is kept this long after its expiry (then deleted).
PURGE_AFTER_SECONDS = 3600.0


@dataclass(frozen=True)
class StoredCode:
    card_id: str
    resource: dict[str, Any]
    received_at: float
    expires_at: float


def record_code(tx: Tx, code_id: str, *, scope: str, card_id: str, resource: dict[str, Any], expires_at: float) -> bool:
    """Store one notification once (``code_id``: the signed resource's de-duplication key); False for a repeat."""
    cur = tx.execute(
        "INSERT INTO three_ds_codes (id, scope, card_id, resource_json, received_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (code_id, scope, card_id, json.dumps(resource, separators=(",", ":")), tx.now(), expires_at),
    )
    return cur.rowcount > 0


def codes_for_card(rx: Reader, scope: str, card_id: str) -> list[StoredCode]:
    """The card's codes that have not expired yet, newest first."""
    rows = rx.all(
        "SELECT card_id, resource_json, received_at, expires_at FROM three_ds_codes"
        " WHERE scope = ? AND card_id = ? AND expires_at > ? ORDER BY received_at DESC",
        (scope, card_id, rx.now()),
    )
    return [
        StoredCode(row["card_id"], json.loads(row["resource_json"]), row["received_at"], row["expires_at"])
        for row in rows
    ]


def purge_codes(tx: Tx, keep_after_expiry: float = PURGE_AFTER_SECONDS) -> int:
    """Delete codes that expired more than ``keep_after_expiry`` seconds ago; returns how many."""
    return tx.execute("DELETE FROM three_ds_codes WHERE expires_at < ?", (tx.now() - keep_after_expiry,)).rowcount
