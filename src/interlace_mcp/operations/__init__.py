"""Money operations as objects, the runner that drives them, their results, and the one refusal type.

No MCP import: the tools layer adapts these to the protocol; the app layer (recovery, reconcile) uses the
same objects. Each operation's spec is the only place its name is written.
"""

from interlace_mcp.operations._base import (
    CardTerms,
    Deps,
    Execution,
    Expected,
    Lookup,
    Operation,
    OperationSpec,
    Outcome,
)
from interlace_mcp.operations._card_ops import CardTransfer, CloseCard, IssueCard
from interlace_mcp.operations._cards import (
    TRANSACTION_TYPES,
    CardCache,
    card_after_movement,
    card_result,
    check_currency,
    closed_card_result,
    decline_words,
    fetch_card,
    transaction_info,
)
from interlace_mcp.operations._describe import (
    UNTRUSTED_NOTE,
    agent_text,
    approval_notice,
    day_of,
    day_text,
    quoted_agent_text,
    what_text,
)
from interlace_mcp.operations._fund_ops import FundAccount
from interlace_mcp.operations._inflight import InFlight
from interlace_mcp.operations._refusals import not_found, refusal_from_upstream
from interlace_mcp.operations._registry import MONEY_OPERATIONS, operation_for
from interlace_mcp.operations._results import (
    BalanceResult,
    CardLimit,
    CardList,
    CardResult,
    DepositAddressResult,
    FundingWindow,
    MerchantActivity,
    MoneyMovement,
    PayeeInfo,
    PayeeList,
    PendingApproval,
    PurchaseResult,
    RequestStatus,
    SpendStatus,
    SpendWindow,
    ThreeDSCode,
    TransactionInfo,
    TransactionList,
    WalletInfo,
)
from interlace_mcp.operations._runner import (
    INFLIGHT_WAIT_SECONDS,
    approval_reasons,
    args_hash,
    pending_message,
    run_money,
)
from interlace_mcp.operations._sanitize import CARD_NUMBER_RULE, clean_text, looks_like_card_number
from interlace_mcp.operations._transfer_ops import CreateTransfer
from interlace_mcp.policy import Refusal

__all__ = [
    "CARD_NUMBER_RULE",
    "INFLIGHT_WAIT_SECONDS",
    "MONEY_OPERATIONS",
    "TRANSACTION_TYPES",
    "UNTRUSTED_NOTE",
    "BalanceResult",
    "CardCache",
    "CardLimit",
    "CardList",
    "CardResult",
    "CardTerms",
    "CardTransfer",
    "CloseCard",
    "CreateTransfer",
    "DepositAddressResult",
    "Deps",
    "Execution",
    "Expected",
    "FundAccount",
    "FundingWindow",
    "InFlight",
    "IssueCard",
    "Lookup",
    "MerchantActivity",
    "MoneyMovement",
    "Operation",
    "OperationSpec",
    "Outcome",
    "PayeeInfo",
    "PayeeList",
    "PendingApproval",
    "PurchaseResult",
    "Refusal",
    "RequestStatus",
    "SpendStatus",
    "SpendWindow",
    "ThreeDSCode",
    "TransactionInfo",
    "TransactionList",
    "WalletInfo",
    "agent_text",
    "approval_notice",
    "approval_reasons",
    "args_hash",
    "card_after_movement",
    "card_result",
    "check_currency",
    "clean_text",
    "closed_card_result",
    "day_of",
    "day_text",
    "decline_words",
    "fetch_card",
    "looks_like_card_number",
    "not_found",
    "operation_for",
    "pending_message",
    "quoted_agent_text",
    "refusal_from_upstream",
    "run_money",
    "transaction_info",
    "what_text",
]
