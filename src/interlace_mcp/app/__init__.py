"""The shared runtime: building and opening it (one way for server, dashboard and CLI), recovery and
reconciliation (with the same operation objects the tools run), and the operators' actions."""

from interlace_mcp.app._checkout import (
    AUTO_CLOSE_PREFIX,
    CheckoutReport,
    auto_close_request_id,
    check_cards,
    close_card_now,
    police,
    run_checkout,
)
from interlace_mcp.app._notes import RefusalNote, RefusalNotes
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
from interlace_mcp.app._proof import emulator_payee, prove_emulator
from interlace_mcp.app._recovery import Difference, ReconcileReport, RecoveryReport, reconcile, recover
from interlace_mcp.app._reveal import (
    DEFAULT_DASHBOARD_URL,
    REVEAL_PATH,
    create_reveal_link,
    dashboard_base,
    open_reveal_link,
)
from interlace_mcp.app._runtime import PolicyStore, RateLimiter, RevealLimiter, Runtime, Wakeups
from interlace_mcp.app._watcher import CardWatcher
from interlace_mcp.app._webhooks import (
    MAX_AGE_SECONDS,
    OTP_EVENT,
    Answer,
    dedup_key,
    receive_webhook,
    sign_resource,
    webhook_amount,
    webhook_sink,
)

__all__ = [
    "AUTO_CLOSE_PREFIX",
    "DEFAULT_DASHBOARD_URL",
    "MAX_AGE_SECONDS",
    "OPERATOR_AGENT",
    "OTP_EVENT",
    "PURGE_INTERVAL_SECONDS",
    "REVEAL_PATH",
    "Answer",
    "CardWatcher",
    "CheckoutReport",
    "Difference",
    "FreezeReport",
    "PolicyStore",
    "RateLimiter",
    "ReconcileReport",
    "RecoveryReport",
    "RefusalNote",
    "RefusalNotes",
    "RevealLimiter",
    "Runtime",
    "Wakeups",
    "auto_close_request_id",
    "build_runtime",
    "check_cards",
    "close_card_now",
    "create_reveal_link",
    "dashboard_base",
    "decide_approval",
    "decide_approval_sync",
    "dedup_key",
    "emulator_payee",
    "fund_as_operator",
    "interlace_client",
    "maintain",
    "open_reveal_link",
    "open_runtime",
    "police",
    "prove_emulator",
    "receive_webhook",
    "reconcile",
    "recover",
    "run_checkout",
    "sandbox_state_path",
    "set_agent_frozen",
    "sign_resource",
    "webhook_amount",
    "webhook_sink",
]
