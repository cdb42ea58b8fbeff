"""The shared runtime: building and opening it (one way for server, dashboard and CLI), recovery and
reconciliation (with the same operation objects the tools run), and the operators' actions."""

from interlace_mcp.app._open import (
    PURGE_INTERVAL_SECONDS,
    build_runtime,
    interlace_client,
    maintain,
    open_runtime,
    sandbox_state_path,
)
from interlace_mcp.app._operator import (
    OPERATOR_AGENT,
    FreezeReport,
    decide_approval,
    decide_approval_sync,
    fund_as_operator,
    set_agent_frozen,
)
from interlace_mcp.app._recovery import Difference, ReconcileReport, RecoveryReport, reconcile, recover
from interlace_mcp.app._runtime import PolicyStore, RateLimiter, RevealLimiter, Runtime

__all__ = [
    "OPERATOR_AGENT",
    "PURGE_INTERVAL_SECONDS",
    "Difference",
    "FreezeReport",
    "PolicyStore",
    "RateLimiter",
    "ReconcileReport",
    "RecoveryReport",
    "RevealLimiter",
    "Runtime",
    "build_runtime",
    "decide_approval",
    "decide_approval_sync",
    "fund_as_operator",
    "interlace_client",
    "maintain",
    "open_runtime",
    "reconcile",
    "recover",
    "sandbox_state_path",
    "set_agent_frozen",
]
