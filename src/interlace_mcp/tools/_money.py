"""Running a money tool: the caller (checked by its resolver) and the human's answer, handed to the runner;
a request that waits for a human's approval is shown to them where the client can (tools/_approval.py)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from interlace_mcp.operations import MoneyMovement, run_money
from interlace_mcp.tools._approval import await_human
from interlace_mcp.tools._caller import Caller
from interlace_mcp.tools._confirm import Confirmation, needs_out_of_band, skipped_for_approval

__all__ = ["run_tool"]


async def run_tool(caller: Caller, ctx: Context[Any, Any], confirmation: Confirmation | None = None) -> MoneyMovement:
    """The money call as the runner sees it: what policy refused already, or the operation to run."""
    if caller.refusal is not None:
        raise caller.refusal
    op = caller.operation
    assert op is not None, "a money tool's resolver always sets the operation"
    force_approval = needs_out_of_band(caller, ctx, confirmation)
    deps = caller.runtime.deps()
    movement = await run_money(
        deps,
        caller.agent,
        caller.policy,
        op,
        stateless=caller.stateless,
        dry_run=caller.dry_run,
        force_approval=force_approval,
        known=caller.known is not None,
        unconfirmed=skipped_for_approval(caller),
    )
    if movement.status != "pending_approval":
        return movement

    async def rerun() -> MoneyMovement:
        # The request is known now: its stored state and the human's decision decide -- under the policy as
        # it is now (an approved request runs only if the current policy still allows it).
        fresh = await caller.refreshed()
        if fresh.refusal is not None:
            raise fresh.refusal
        return await run_money(deps, fresh.agent, fresh.policy, op, stateless=fresh.stateless, known=True)

    return await await_human(caller, ctx, movement, rerun)
