"""Bearer tokens, stored as sha256 only: one store for the two kinds (agents' ``/mcp`` tokens and operators'
dashboard tokens), each in its own table so a token of one kind can never match the other."""

from __future__ import annotations

from typing import Literal

from interlace_mcp.policy._store import Reader, Tx

__all__ = ["TokenKind", "add_token", "owner_of_token", "revoke_tokens", "token_owners"]

TokenKind = Literal["agent", "operator"]
#: kind -> (table, owner column)
_TABLES: dict[str, tuple[str, str]] = {"agent": ("agent_tokens", "agent"), "operator": ("operator_tokens", "operator")}


def add_token(tx: Tx, kind: TokenKind, owner: str, digest: str) -> None:
    table, column = _TABLES[kind]
    tx.execute(f"INSERT INTO {table} (sha256, {column}, created_at) VALUES (?, ?, ?)", (digest, owner, tx.now()))


def revoke_tokens(tx: Tx, kind: TokenKind, owner: str) -> int:
    """Revoke every live token of ``owner``; returns how many. Takes effect on the next request."""
    table, column = _TABLES[kind]
    cur = tx.execute(f"UPDATE {table} SET revoked_at = ? WHERE {column} = ? AND revoked_at IS NULL", (tx.now(), owner))
    return cur.rowcount


def owner_of_token(rx: Reader, kind: TokenKind, digest: str) -> str | None:
    """Whose live token has this sha256, else None."""
    table, column = _TABLES[kind]
    row = rx.one(f"SELECT {column} FROM {table} WHERE sha256 = ? AND revoked_at IS NULL", (digest,))
    return str(row[0]) if row else None


def token_owners(rx: Reader, kind: TokenKind) -> dict[str, int]:
    """Owners with live tokens, and how many each has."""
    table, column = _TABLES[kind]
    rows = rx.all(
        f"SELECT {column}, COUNT(*) FROM {table} WHERE revoked_at IS NULL GROUP BY {column} ORDER BY {column}"
    )
    return {str(r[0]): int(r[1]) for r in rows}
