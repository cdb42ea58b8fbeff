"""Account toolset: the Infinity account balance (and the wallets that fund it), and where one of this agent's
requests stands."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Resolve

from interlace_mcp.client import STABLECOINS, CryptoWallet, InterlaceError
from interlace_mcp.money import format_amount, format_exact_amount
from interlace_mcp.operations import (
    BalanceResult,
    MoneyMovement,
    RequestStatus,
    WalletInfo,
    not_found,
    pending_message,
    refusal_from_upstream,
    upstream_code,
    upstream_ref,
)
from interlace_mcp.policy import approvals, requests
from interlace_mcp.tools._caller import Caller, resolve_caller
from interlace_mcp.tools._params import RequestId

__all__ = ["get_balance", "get_request_status"]


async def get_balance(caller: Annotated[Caller, Resolve(resolve_caller)]) -> BalanceResult:
    """Show the Infinity account's available USD balance (what card loads and transfers are paid from) and its wallets.

    Shared by every agent of the account: this agent's limits (get_spend_status) say what it may spend. wallets:
    USDC/USDT balances (up to 6 decimals) that fund_account moves in 1:1; unreadable ones give a warning.
    """
    rt = caller.runtime
    try:
        balance = await rt.api.infinity_balance()
    except InterlaceError as exc:
        raise refusal_from_upstream(exc, what="reading the balance") from None
    warnings = None
    try:
        wallet = await rt.funding_wallet()
        wallets = wallet_infos(wallet) if wallet is not None else []
    except InterlaceError as exc:
        wallets = []
        warnings = [
            f"the CryptoConnect wallet balances could not be read{upstream_ref(exc)}; the Infinity balance above is"
            " current. Try again later"
        ]
    return BalanceResult(
        available=format_amount(balance.available),
        currency=upstream_code(balance.currency, "USD"),
        wallets=wallets,
        warnings=warnings,
        sandbox=rt.sandbox,
    )


def wallet_infos(wallet: CryptoWallet) -> list[WalletInfo]:
    """The wallet's stablecoin balances as results (exact: up to 6 decimals)."""
    return [
        WalletInfo(
            wallet_id=wallet.id,
            currency=b.currency.upper(),
            available=format_exact_amount(b.available),
            frozen=format_exact_amount(b.frozen),
        )
        for b in wallet.balances
        if b.currency.upper() in STABLECOINS
    ]


async def get_request_status(
    request_id: RequestId, caller: Annotated[Caller, Resolve(resolve_caller)]
) -> RequestStatus:
    """Show where one of this agent's money requests stands, by its request_id.

    status: completed (result), pending_approval, in_progress (retry the call), denied or expired (the approval),
    or refused: a refusal stores nothing, but this server process remembers an agent's recent refusals for a
    day (not after a restart, nor on other instances): message is the refusal's text. Else not_found.
    """
    rt = caller.runtime
    if await rt.store.read(approvals.any_due):
        await rt.store.write(approvals.expire_due)
    records = await rt.store.read(requests.find_requests, rt.scope, caller.agent, request_id)
    if not records:
        noted = rt.refusals.find(rt.scope, caller.agent, request_id, now=rt.store.now())
        if noted is None:
            raise not_found("request", request_id)
        return RequestStatus(
            request_id=request_id,
            tool=noted.tool,
            status="refused",
            amount=noted.amount,
            currency=noted.currency,
            message=noted.text + " (a refusal stores nothing: this request_id may be used again)",
            sandbox=rt.sandbox,
        )
    record = records[0]
    approval = record.approval
    result = None
    message = None
    status: str
    if record.status == "completed":
        status = "completed"
        result = MoneyMovement.model_validate({**(record.result or {}), "replayed": True})
    elif record.status == "pending_approval":
        status = "pending_approval"
        url = rt.approval_url(record.approval_id) if record.approval_id else None
        message = pending_message(record, replayed=True, url=url)
    elif record.status == "refused":
        code = str((record.result or {}).get("code", ""))
        status = {"approval_denied": "denied", "approval_expired": "expired"}.get(code, "refused")
        message = str((record.result or {}).get("message", ""))
    else:
        status = "in_progress"
        message = "Interlace has not confirmed the outcome yet; call the same tool again with the same request_id"
    return RequestStatus(
        request_id=request_id,
        tool=record.key.tool,
        status=status,
        amount=format_amount(record.amount) if record.amount > 0 else (result.amount if result else None),
        currency=record.currency,
        approval_id=record.approval_id,
        expires_at=approval.expires_at_iso if approval and status == "pending_approval" else None,
        approval_url=(
            rt.approval_url(record.approval_id) if record.approval_id and status == "pending_approval" else None
        ),
        result=result,
        message=message,
        sandbox=rt.sandbox,
    )
