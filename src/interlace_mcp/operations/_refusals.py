"""Refusals the operations raise: unknown objects, and Interlace's definite answers in words.

There is one refusal type (:class:`interlace_mcp.policy.Refusal`); these build it. They never echo raw
upstream bodies, secrets or card data: client errors are already sanitized, and only their code and
message are added.
"""

from __future__ import annotations

from interlace_mcp.client import (
    AuthenticationError,
    CardStateError,
    InsufficientFundsError,
    InterlaceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from interlace_mcp.policy import Refusal

__all__ = ["not_found", "refusal_from_upstream"]


def not_found(kind: str, ident: str) -> Refusal:
    """Byte-identical for "does not exist" and "belongs to another agent" (no existence oracle)."""
    return Refusal.one("not_found", f"{kind} {ident!r} not found among this agent's {kind}s", id=ident)


def refusal_from_upstream(exc: InterlaceError, *, what: str) -> Refusal:
    """A definite Interlace failure, in words, with Interlace's code."""
    code = f" (Interlace code {exc.code})" if exc.code else ""
    if isinstance(exc, InsufficientFundsError):
        return Refusal.one(
            "insufficient_funds",
            f"{what} failed: not enough funds{code}: {exc.message}. Nothing moved",
            upstream_code=exc.code,
        )
    if isinstance(exc, CardStateError):
        return Refusal.one(
            "card_frozen",
            f"{what} failed: the card's status does not allow it{code}; unfreeze_card it first if you froze it",
            upstream_code=exc.code,
        )
    if isinstance(exc, NotFoundError):
        return Refusal.one(
            "not_found", f"{what} failed: Interlace does not know that object{code}", upstream_code=exc.code
        )
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return Refusal.one(
            "upstream_error",
            f"{what} failed: Interlace refused this server's credentials{code}; an operator must check"
            " INTERLACE_CLIENT_ID/SECRET (interlace-mcp doctor)",
            upstream_code=exc.code,
        )
    if isinstance(exc, RateLimitError):
        wait = f" for about {exc.retry_after:.0f} s" if exc.retry_after else ""
        return Refusal.one(
            "upstream_error",
            f"{what}: Interlace is rate-limiting this server{wait}{code}; nothing moved. Retry later "
            "(the same request_id is fine)",
            upstream_code=exc.code,
        )
    if exc.unknown_outcome:
        return Refusal.one(
            "upstream_error",
            f"{what}: Interlace did not give a usable answer{code}; try again in a moment",
            upstream_code=exc.code,
        )
    return Refusal.one("upstream_error", f"{what} failed at Interlace{code}: {exc.message}", upstream_code=exc.code)
