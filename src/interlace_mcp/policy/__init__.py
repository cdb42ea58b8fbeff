"""Policy rules, the spend ledger, approvals, and the storage under them. Never imports ``mcp`` or anything above.

The ledger's jobs are plain functions over a transaction (writes) or a reader (reads), grouped by what
they touch -- :mod:`requests`, :mod:`approvals`, :mod:`cards`, :mod:`tokens`, :mod:`activity`,
:mod:`reports`, :mod:`three_ds`, :mod:`reveals` -- and run by a :class:`Store` (async, group commit) or
by the synchronous :class:`Ledger`.
"""

from interlace_mcp.policy import _activity as activity
from interlace_mcp.policy import _approvals as approvals
from interlace_mcp.policy import _cards as cards
from interlace_mcp.policy import _funding as funding
from interlace_mcp.policy import _reports as reports
from interlace_mcp.policy import _requests as requests
from interlace_mcp.policy import _reveals as reveals
from interlace_mcp.policy import _three_ds as three_ds
from interlace_mcp.policy import _tokens as tokens
from interlace_mcp.policy._db import (
    Cursor,
    Database,
    Migration,
    database_errors,
    is_postgres_url,
    private_dir,
    private_file,
    redact_url,
)
from interlace_mcp.policy._funding import FUND_CURRENCY, FundStatus
from interlace_mcp.policy._ledger import Ledger
from interlace_mcp.policy._policy import (
    AGENT_NAME_PATTERN,
    AGENT_NAME_RULE,
    BUILTIN_DEFAULTS,
    SANDBOX_PAYEE,
    AgentPolicy,
    CardSpendLimit,
    Payee,
    Policy,
    PolicyError,
    builtin_policy,
    file_stamp,
    is_agent_name,
    load_policy,
    parse_policy,
    token_digest,
)
from interlace_mcp.policy._reservations import day_figures
from interlace_mcp.policy._rules import (
    approval_above_reason,
    confirmation_band_reason,
    daily_approval_reason,
    frozen_violation,
    payee_violation,
    per_transaction_violation,
    tool_violation,
)
from interlace_mcp.policy._store import WRITE_LOCK, Reader, Store, Tx
from interlace_mcp.policy._values import (
    Approval,
    BeginResult,
    CardRecord,
    DayFigures,
    Refusal,
    RequestConflict,
    RequestKey,
    RequestRecord,
    Violation,
    WindowStatus,
    refusal_text,
)
from interlace_mcp.policy._windows import epoch_to_iso, iso_utc, window_keys

__all__ = [
    "AGENT_NAME_PATTERN",
    "AGENT_NAME_RULE",
    "BUILTIN_DEFAULTS",
    "FUND_CURRENCY",
    "SANDBOX_PAYEE",
    "WRITE_LOCK",
    "AgentPolicy",
    "Approval",
    "BeginResult",
    "CardRecord",
    "CardSpendLimit",
    "Cursor",
    "Database",
    "DayFigures",
    "FundStatus",
    "Ledger",
    "Migration",
    "Payee",
    "Policy",
    "PolicyError",
    "Reader",
    "Refusal",
    "RequestConflict",
    "RequestKey",
    "RequestRecord",
    "Store",
    "Tx",
    "Violation",
    "WindowStatus",
    "activity",
    "approval_above_reason",
    "approvals",
    "builtin_policy",
    "cards",
    "confirmation_band_reason",
    "daily_approval_reason",
    "database_errors",
    "day_figures",
    "epoch_to_iso",
    "file_stamp",
    "frozen_violation",
    "funding",
    "is_agent_name",
    "is_postgres_url",
    "iso_utc",
    "load_policy",
    "parse_policy",
    "payee_violation",
    "per_transaction_violation",
    "private_dir",
    "private_file",
    "redact_url",
    "refusal_text",
    "reports",
    "requests",
    "reveals",
    "three_ds",
    "token_digest",
    "tokens",
    "tool_violation",
    "window_keys",
]
