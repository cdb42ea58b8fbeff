"""Transfers toolset: business transfers to operator-defined payees, and the list of them."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, Resolve

from interlace_mcp.operations import (
    CreateTransfer,
    MoneyMovement,
    PayeeInfo,
    PayeeList,
    Refusal,
    check_currency,
    clean_text,
)
from interlace_mcp.tools._caller import Caller, resolve_caller
from interlace_mcp.tools._confirm import Confirmation, confirmation_for
from interlace_mcp.tools._money import run_tool
from interlace_mcp.tools._params import Amount, Currency, DryRun, Memo, PayeeName, RequestId

__all__ = ["create_transfer", "list_payees"]


async def _transfer_caller(
    payee: PayeeName,
    amount: Amount,
    request_id: RequestId,
    caller: Annotated[Caller, Resolve(resolve_caller)],
    currency: Currency = "USD",
    memo: Memo | None = None,
    dry_run: DryRun = False,
) -> Caller:
    target = caller.payees.get(payee)
    try:
        if target is not None:
            check_currency(currency, target.currency, what=f"payee {payee}")
        else:
            check_currency(currency)
    except Refusal as refusal:
        return caller.refused(refusal)
    op = CreateTransfer(payee, amount, request_id, currency, clean_text(memo, 140) if memo else None, target)
    return await caller.evaluate(op, dry_run=dry_run)


_confirm_transfer = confirmation_for(_transfer_caller)


async def create_transfer(
    payee: PayeeName,
    amount: Amount,
    request_id: RequestId,
    ctx: Context[Any, Any],
    caller: Annotated[Caller, Resolve(_transfer_caller)],
    confirmation: Annotated[Confirmation, Resolve(_confirm_transfer)],
    currency: Currency = "USD",
    memo: Memo | None = None,
    dry_run: DryRun = False,
) -> MoneyMovement:
    """Pay `amount` from the Infinity account to a payee from list_payees (spend; irreversible once done).

    currency (USD) must be the payee's. memo is kept with the transfer and shown to a human who approves it.
    Refusals to expect: payee_not_allowed, the spend limits, insufficient_funds. The same request_id never
    pays twice.
    """
    return await run_tool(caller, ctx, confirmation)


async def list_payees(caller: Annotated[Caller, Resolve(resolve_caller)]) -> PayeeList:
    """List the payees this agent may pay with create_transfer: name and currency, set by an operator (empty: none)."""
    known = caller.payees
    return PayeeList(
        payees=[
            PayeeInfo(name=name, currency=known[name].currency)
            for name in caller.policy.transfer_payees
            if name in known
        ],
        sandbox=caller.runtime.sandbox,
    )
