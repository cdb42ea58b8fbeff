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
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.types import CallToolResult, TextContent

from interlace_mcp.audit import AuditWriteError
from interlace_mcp.client import InterlaceError
from interlace_mcp.operations import Refusal, refusal_from_upstream

__all__ = ["as_refusal", "refusal_code", "refusal_result", "returns_refusals"]

logger = logging.getLogger("interlace_mcp.tools")

P = ParamSpec("P")
R = TypeVar("R")


def refusal_result(refusal: Refusal) -> CallToolResult:
    """The error result: the ``[code] ...`` text only (no structured content; see the module doc)."""
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=str(refusal))])


_CODE = re.compile(r"\[([a-z_]+)\]")


def refusal_code(result: CallToolResult) -> str:
    """The code an error result's text starts with (``[daily_limit] ...`` -> ``daily_limit``), else ``error``."""
    first = result.content[0] if result.content else None
    match = _CODE.match(first.text) if isinstance(first, TextContent) else None
    return match.group(1) if match else "error"


def as_refusal(exc: Exception, *, what: str) -> Refusal | None:
    """The refusal an exception from a tool stands for (None: a bug, left to the SDK's generic error)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, InterlaceError):
        # A read (or a non-money action) that Interlace failed: a coded refusal, never a bare crash.
        # Money movements never get here: the runner settles their errors itself.
        return refusal_from_upstream(exc, what=what)
    if isinstance(exc, AuditWriteError):
        return Refusal.one(
            "audit_unavailable", "the audit log cannot be written, so nothing was done; an operator must fix it"
        )
    return None


def returns_refusals(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn a raised Refusal (or client / audit failure) into a returned error result. Keeps the signature."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (Refusal, InterlaceError, AuditWriteError) as exc:
            refusal = as_refusal(exc, what=fn.__name__.replace("_", " "))
            assert refusal is not None
            return refusal_result(refusal)  # type: ignore[return-value]  # error results skip output validation

    return wrapper
