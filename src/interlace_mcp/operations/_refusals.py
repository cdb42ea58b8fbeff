"""Refusals the operations raise: unknown objects, and Interlace's definite answers in words.

There is one refusal type (:class:`interlace_mcp.policy.Refusal`); these build it. A refusal's text is the
server's own sentence, so it never carries text from outside (threats: indirect prompt injection): not
Interlace's message -- which may echo an agent's label or anything else -- only Interlace's error code when
it is code-shaped and the HTTP status (:func:`upstream_ref`). The message goes to the server log, for
operators.
"""

from __future__ import annotations

import logging
import re

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

__all__ = ["not_found", "refusal_from_upstream", "upstream_code", "upstream_ref", "upstream_word"]

logger = logging.getLogger("interlace_mcp.operations")

#: What an Interlace error code looks like (digits, or a short identifier); anything else is not repeated.
_CODE_SHAPE = re.compile(r"^[A-Za-z0-9_.-]{1,24}$")


def upstream_word(value: object) -> str:
    """An upstream status or code as a server sentence may repeat it: only when it is code-shaped."""
    text = str(value) if value is not None else ""
    return text if _CODE_SHAPE.match(text) else "unknown"


def upstream_code(value: str | None, missing: str) -> str:
    """An upstream status or currency as a result field carries it: the code, ``missing`` when there is none,
    ``UNKNOWN`` when it is not code-shaped (such a field is not one the model is told holds untrusted text)."""
    if not value:
        return missing
    return value if _CODE_SHAPE.match(value) else "UNKNOWN"


def upstream_ref(exc: InterlaceError) -> str:
    """`` (Interlace code 100100001, HTTP 400)``: what of an Interlace failure a server sentence may repeat --
    never its message (text from outside)."""
    parts = []
    if exc.code is not None and _CODE_SHAPE.match(exc.code):
        parts.append(f"Interlace code {exc.code}")
    if exc.status_code is not None:
        parts.append(f"HTTP {int(exc.status_code)}")
    return f" ({', '.join(parts)})" if parts else ""


def not_found(kind: str, ident: str) -> Refusal:
    """Byte-identical for "does not exist" and "belongs to another agent" (no existence oracle)."""
    return Refusal.one("not_found", f"{kind} {ident!r} not found among this agent's {kind}s", id=ident)


def refusal_from_upstream(exc: InterlaceError, *, what: str) -> Refusal:
    """A definite Interlace failure, in words, with Interlace's code (its message only in the log)."""
    code = upstream_ref(exc)
    logger.info("%s: Interlace answered %s", what, exc)
    if isinstance(exc, InsufficientFundsError):
        return Refusal.one(
            "insufficient_funds",
            f"{what} failed: not enough funds{code}. Nothing moved",
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
    return Refusal.one(
        "upstream_error",
        f"{what} failed at Interlace{code}; Interlace's message is in the server log for an operator",
        upstream_code=exc.code,
    )
