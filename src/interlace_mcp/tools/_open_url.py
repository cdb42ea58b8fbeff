"""Asking the client to open a URL for its user (URL-mode elicitation), as far as the SDK allows.

One small function, so whichever implementation the server settles on (this one, or a shared helper with
waiting and progress) is one place to point at. The SDK sends URL-mode ``elicitation/create`` only on a
connection with a back channel (2025-era sessions); on 2026-07-28 its resolvers render form requests only,
so there the answer is simply False and the URL stays in the tool's result for the agent to pass on.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from mcp.server.elicitation import AcceptedUrlElicitation
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError

__all__ = ["ask_client_to_open"]

logger = logging.getLogger("interlace_mcp.tools")


async def ask_client_to_open(ctx: Context[Any, Any], url: str, message: str) -> bool:
    """Ask the client to open ``url`` for its human (``message`` says why); True when the user accepted.

    False, without asking, when the client did not declare URL-mode elicitation or the protocol era has
    no way to ask mid-call; False too when the user declined or cancelled. Never raises for those.
    """
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None or elicitation.url is None:
        return False
    try:
        answer = await ctx.elicit_url(message, url, elicitation_id=secrets.token_hex(12))
    except MCPError as exc:  # no back channel on this connection (2026-07-28), or the client refused
        logger.info("URL elicitation not possible here (%s); the link stays in the result", type(exc).__name__)
        return False
    return isinstance(answer, AcceptedUrlElicitation)
