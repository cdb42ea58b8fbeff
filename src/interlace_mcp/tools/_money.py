"""Running a money tool: the caller (checked by its resolver) and the human's answer, handed to the runner."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from interlace_mcp.operations import MoneyMovement, run_money
from interlace_mcp.tools._caller import Caller
from interlace_mcp.tools._confirm import Confirmation, needs_out_of_band

__all__ = ["run_tool"]


async def run_tool(caller: Caller, ctx: Context[Any, Any], confirmation: Confirmation | None = None) -> MoneyMovement:
    """The money call as the runner sees it: what policy refused already, or the operation to run."""
    if caller.refusal is not None:
        raise caller.refusal
    op = caller.operation
    assert op is not None, "a money tool's resolver always sets the operation"
    force_approval = needs_out_of_band(caller, ctx, confirmation)
    return await run_money(
        caller.runtime.deps(),
        caller.agent,
        caller.policy,
        op,
        stateless=caller.stateless,
        dry_run=caller.dry_run,
        force_approval=force_approval,
        known=caller.known is not None,
    )
