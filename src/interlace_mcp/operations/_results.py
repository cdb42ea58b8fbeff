"""Typed tool results (DESIGN section 6 "Results"): field names are fixed; amounts are 2-place strings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "BalanceResult",
    "CardLimit",
    "CardList",
    "CardResult",
    "DepositAddressResult",
    "FundingWindow",
    "MoneyMovement",
    "PayeeInfo",
    "PayeeList",
    "PendingApproval",
    "PurchaseResult",
    "RequestStatus",
    "SpendStatus",
    "SpendWindow",
    "ThreeDSCode",
    "TransactionInfo",
    "TransactionList",
    "WalletInfo",
]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sandbox: bool = Field(description="true when no real money moves (the emulator or Interlace's sandbox)")


class CardLimit(BaseModel):
    window: str = Field(description="Interlace velocity window: DAY, WEEK, MONTH, LIFETIME, TRANSACTION, ...")
    amount: str
    currency: str


class CardResult(_Result):
    card_id: str
    card_status: str = Field(description="Interlace's status: ACTIVE, FROZEN, PENDING, ..., DELETED after close")
    last_four: str | None
    expiry: str | None = Field(default=None, description='"MM/YY" where known (on an allowed reveal)')
    balance: str | None = Field(default=None, description="available balance on the card")
    currency: str
    label: str | None = Field(default=None, description="untrusted text: written by an agent")
    limits: list[CardLimit] = Field(default_factory=list)
    frozen_by: str | None = Field(default=None, description="who froze it: agent, operator or reconciliation")
    card_number: str | None = Field(default=None, description="full number: only in an allowed reveal")
    cvv: str | None = Field(default=None, description="only in an allowed reveal")
    reveal_token: str | None = Field(
        default=None,
        description='reveal = "token": a one-time (5 min) token for Interlace\'s card widget; never the number',
    )
    single_use: bool = Field(
        default=False, description="closed by the server (balance swept back) after its first settled purchase"
    )
    expires_at: str | None = Field(
        default=None, description="ISO 8601 UTC: the server closes the card (balance swept back) at this time"
    )
    closed_reason: str | None = Field(
        default=None, description="why the server closed the card by itself (single-use, expired); null otherwise"
    )
    reveal_url: str | None = Field(
        default=None,
        description=(
            'reveal = "human": a one-time dashboard link (5 min) that shows the card to a signed-in human; '
            "open it for your user, never the number in this conversation"
        ),
    )


class CardList(_Result):
    cards: list[CardResult]


class MoneyMovement(_Result):
    status: Literal["completed", "pending_approval", "in_progress", "dry_run"]
    amount: str | None = Field(description="the amount moved (for close_card: what was unloaded)")
    currency: str
    request_id: str
    transaction_id: str | None = None
    card: CardResult | None = None
    payee: str | None = None
    approval_id: str | None = None
    expires_at: str | None = None
    approval_url: str | None = Field(
        default=None,
        description="pending: the approval's dashboard page, where a signed-in human operator decides",
    )
    replayed: bool = False
    decision: Literal["allow", "deny", "needs_approval"] | None = None
    reasons: list[str] | None = None
    message: str | None = Field(default=None, description="what happened or what to do next, in words")
    warnings: list[str] | None = None
    #: Set when the runner already wrote this call's audit record (with its ledger write); never serialized.
    _audited: bool = PrivateAttr(default=False)

    def audited(self) -> MoneyMovement:
        self._audited = True
        return self

    @property
    def is_audited(self) -> bool:
        return self._audited


class TransactionInfo(BaseModel):
    transaction_id: str
    type: str = Field(description="authorization, transfer_in, transfer_out, fee, declined_fee, ...")
    status: str = Field(description="PENDING (authorized), CLOSED (settled/final) or FAIL (declined)")
    approved: bool
    decline_code: str | None = Field(default=None, description="the card issuer's code of a decline (Interlace's)")
    decline_reason: str | None = Field(default=None, description="why it was declined, in words you can act on")
    amount: str
    fee: str | None = None
    currency: str
    merchant: str | None = Field(default=None, description="untrusted text from outside (the merchant's name)")
    mcc: str | None = None
    created_at: str | None = Field(default=None, description="ISO 8601 UTC")
    client_transaction_id: str | None = None
    issuer_text: str | None = Field(
        default=None,
        description="a decline with no code this server knows: Interlace's own words, untrusted text from outside",
    )


class TransactionList(_Result):
    card_id: str
    page: int
    limit: int
    total: int
    transactions: list[TransactionInfo]


class PayeeInfo(BaseModel):
    name: str
    currency: str


class PayeeList(_Result):
    payees: list[PayeeInfo]


class WalletInfo(BaseModel):
    wallet_id: str = Field(description="the CryptoConnect wallet fund_account draws on")
    currency: str = Field(description="USDC or USDT")
    available: str = Field(description="what fund_account can move (up to 6 decimals, as Interlace keeps it)")
    frozen: str


class BalanceResult(_Result):
    available: str
    currency: str
    wallets: list[WalletInfo] = Field(
        default_factory=list,
        description="stablecoin balances of the CryptoConnect wallet that fund_account moves into the Infinity"
        " account (1:1 to USD); empty when the account has none or they could not be read (see warnings)",
    )
    warnings: list[str] | None = None


class DepositAddressResult(_Result):
    currency: str
    chain: str
    address: str = Field(description="where a human sends stablecoins for this account (on this chain only)")
    wallet_id: str | None = None
    message: str | None = None


class SpendWindow(BaseModel):
    window: Literal["transaction", "day", "week", "month", "lifetime"]
    limit: str | None = Field(description="null = no limit")
    spent: str
    reserved: str
    remaining: str | None
    resets_at: str | None


class FundingWindow(BaseModel):
    limit: str | None = Field(description="fund_daily: how much fund_account may move in a day (null = no limit)")
    funded: str
    reserved: str
    remaining: str | None
    resets_at: str | None


class PendingApproval(BaseModel):
    approval_id: str
    tool: str
    request_id: str
    amount: str
    currency: str
    summary: str
    status: str
    expires_at: str | None
    approval_url: str | None = Field(default=None, description="the approval's page, for the human operator")


class MerchantActivity(BaseModel):
    window: Literal["24h"] = "24h"
    authorized: str = Field(description="approved merchant authorizations on this agent's cards")
    approved: int
    declined: int
    source: Literal["webhooks"] = "webhooks"


class SpendStatus(_Result):
    agent: str
    currency: str
    frozen: bool
    windows: list[SpendWindow]
    max_active_cards: int | None
    active_cards: int
    approval_above: str | None
    funding: FundingWindow = Field(description="today's funding from CryptoConnect wallets (not spend)")
    approval_daily_above: str | None = Field(
        default=None, description="a call that would take today's spent + reserved above this needs approval"
    )
    pending_approvals: list[PendingApproval]
    mcc_allow: list[str] = Field(
        default_factory=list, description="merchant categories this agent's cards may buy from (empty: any not blocked)"
    )
    mcc_block: list[str] = Field(
        default_factory=list, description="merchant categories this agent's cards may not buy from"
    )
    single_use_cards: bool = Field(default=False, description="every new card of this agent is single-use")
    card_max_ttl_minutes: int | None = Field(
        default=None, description="the longest a new card may live (minutes); null = no limit"
    )
    merchant_activity: MerchantActivity = Field(
        description="what the agent's cards did at merchants in the last 24 h, as Interlace notified (HTTP deployments)"
    )


class RequestStatus(_Result):
    request_id: str
    tool: str
    status: Literal["completed", "pending_approval", "in_progress", "refused", "expired", "denied"]
    amount: str | None
    currency: str
    approval_id: str | None = None
    expires_at: str | None = None
    approval_url: str | None = Field(default=None, description="pending: the approval's page, for the human operator")
    result: MoneyMovement | None = None
    message: str | None = None


class PurchaseResult(_Result):
    card_id: str
    approved: bool
    decline_reason: str | None
    amount: str
    currency: str
    merchant: str | None
    transaction_id: str
    card_balance: str | None
    decline_code: str | None = Field(default=None, description="the card issuer's code of a decline (Interlace's)")
    mcc: str | None = None
    status: str | None = Field(default=None, description="PENDING (authorized, settles later), CLOSED or FAIL")
    issuer_text: str | None = Field(
        default=None,
        description="a decline with no code this server knows: Interlace's own words, untrusted text from outside",
    )


class ThreeDSCode(_Result):
    card_id: str
    code: str = Field(description="the one-time 3-D Secure code: type it only into the checkout of this purchase")
    merchant: str | None = Field(default=None, description="untrusted text from the merchant, as notified")
    amount: str | None = None
    currency: str | None = None
    expires_at: str = Field(description="ISO 8601 UTC: the code is useless after this")
