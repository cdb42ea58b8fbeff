"""The one boundary that turns refusals and client errors into what the model reads.

A refusal is *returned* as an error result (not raised) so its text starts with ``[code]`` exactly,
without the SDK's "Error executing tool X: " prefix (mcp-sdk-notes section 7.3). It never echoes raw
upstream bodies, secrets or card data: client errors are already sanitized, and we add only their
code and message.

An error result carries no ``structuredContent``: strict clients (the MCP Inspector) validate any
structured content against the tool's output schema, which describes a *result*, so a refusal shaped
differently showed as a schema error instead of its text. The text carries the code
(``[code] sentence``; ``refusal_code`` reads it back for the audit log).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from mcp.types import CallToolResult, TextContent

from interlace_mcp.audit import AuditWriteError
from interlace_mcp.client import (
    AuthenticationError,
    CardStateError,
    InsufficientFundsError,
    InterlaceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from interlace_mcp.policy import Refused, RequestConflict, Violation, refusal_text

__all__ = ["Refusal", "not_found", "refusal_code", "refusal_from_upstream", "returns_refusals"]

logger = logging.getLogger("interlace_mcp.tools")

P = ParamSpec("P")
R = TypeVar("R")


class Refusal(Exception):
    """A refusal the model should read: one or more rules, each ``[code] sentence``."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__(refusal_text(self.violations))

    @classmethod
    def one(cls, code: str, message: str, **data: Any) -> Refusal:
        return cls([Violation(code, message, data)])

    def result(self) -> CallToolResult:
        """The error result: the ``[code] ...`` text only (no structured content; see the module doc)."""
        return CallToolResult(is_error=True, content=[TextContent(type="text", text=str(self))])


_CODE = re.compile(r"\[([a-z_]+)\]")


def refusal_code(result: CallToolResult) -> str:
    """The code an error result's text starts with (``[daily_limit] ...`` -> ``daily_limit``), else ``error``."""
    first = result.content[0] if result.content else None
    match = _CODE.match(first.text) if isinstance(first, TextContent) else None
    return match.group(1) if match else "error"


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


def returns_refusals(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn a raised Refusal (and ledger refusals) into a returned error result. Keeps the signature."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Refusal as refusal:
            return refusal.result()  # type: ignore[return-value]  # error results skip output validation
        except Refused as refused:
            return Refusal(refused.violations).result()  # type: ignore[return-value]
        except RequestConflict as conflict:
            return Refusal.one("request_id_conflict", str(conflict)).result()  # type: ignore[return-value]
        except InterlaceError as exc:
            # A read (or a non-money action) that Interlace failed: a coded refusal, never a bare crash.
            # Money movements never get here: run_money settles their errors itself.
            return refusal_from_upstream(exc, what=f"{fn.__name__.replace('_', ' ')}").result()  # type: ignore[return-value]
        except AuditWriteError:
            return Refusal.one(  # type: ignore[return-value]
                "audit_unavailable", "the audit log cannot be written, so nothing was done; an operator must fix it"
            ).result()

    return wrapper
