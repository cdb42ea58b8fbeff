"""The emulator's database and ledger: :class:`SandboxState`, assembled from its parts.

Every operation is synchronous and either fails with :class:`SandboxError` *before* it mutates
anything, or succeeds completely; the HTTP layer serialises calls with a lock. Amounts are
``Decimal`` with exactly two places (wallet amounts up to six); PAN/CVV never leave the state except
through :meth:`SandboxState.card_details_view` (encrypted) and the state file.

The parts, one module each: records and value types (:mod:`._records`), shared tables and lookups
(:mod:`._base`), OAuth + idempotency (:mod:`._auth`), faults (:mod:`._faults`), cards + velocity +
spend controls (:mod:`._cards`), authorizations + settlement + 3-D Secure (:mod:`._authorizations`),
business transfers (:mod:`._transfers`), CryptoConnect wallets (:mod:`._wallets`), webhooks
(:mod:`._webhooks`), wire views (:mod:`._views`) and the state file (:mod:`._persistence`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _seeds as seeds
from ._auth import AuthMixin
from ._authorizations import AuthorizationsMixin
from ._faults import FaultsMixin
from ._persistence import PersistenceMixin
from ._records import (
    DECLINES,
    FAULT_KINDS,
    LIMIT_TYPES,
    ZERO,
    Account,
    Balance,
    Bin,
    Card,
    Cardholder,
    CardTransaction,
    CryptoDeposit,
    CryptoWallet,
    Decline,
    FaultRule,
    Movement,
    SandboxConfig,
    SandboxError,
    SpendRule,
    Transfer,
    WalletAddress,
    luhn_valid,
)
from ._transfers import TransfersMixin
from ._views import ViewsMixin
from ._wallets import WalletsMixin, seed_wallets
from ._webhooks import WebhookDelivery, WebhookEnvelope, WebhookSink

__all__ = [
    "DECLINES",
    "FAULT_KINDS",
    "LIMIT_TYPES",
    "Account",
    "Balance",
    "Bin",
    "Card",
    "CardTransaction",
    "Cardholder",
    "CryptoDeposit",
    "CryptoWallet",
    "Decline",
    "FaultRule",
    "Movement",
    "SandboxConfig",
    "SandboxError",
    "SandboxState",
    "SpendRule",
    "Transfer",
    "WalletAddress",
    "WebhookDelivery",
    "WebhookEnvelope",
    "WebhookSink",
    "luhn_valid",
]


class SandboxState(
    AuthMixin,
    FaultsMixin,
    AuthorizationsMixin,
    TransfersMixin,
    WalletsMixin,
    ViewsMixin,
    PersistenceMixin,
):
    """All of the emulator's data. Not thread-safe; the app serialises access with a lock."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock=clock)
        self.reset()

    def reset(self) -> None:
        """Back to the seeds (in place, so an app holding this object sees the reset).

        Webhook sinks stay registered (they belong to whoever embeds the emulator); the webhook log is cleared.
        """
        now = self.now_ms()
        self.config = SandboxConfig()
        self.accounts = {
            seeds.ACCOUNT_ID: Account(seeds.ACCOUNT_ID, seeds.ACCOUNT_NAME, "100000001"),
            seeds.PAYEE_ACCOUNT_ID: Account(seeds.PAYEE_ACCOUNT_ID, seeds.PAYEE_ACCOUNT_NAME, "100000002"),
        }
        self.balances = {
            seeds.INFINITY_BALANCE_ID: Balance(
                seeds.INFINITY_BALANCE_ID, seeds.ACCOUNT_ID, 0, seeds.INITIAL_INFINITY_BALANCE, now
            ),
            seeds.PAYEE_BALANCE_ID: Balance(seeds.PAYEE_BALANCE_ID, seeds.PAYEE_ACCOUNT_ID, 0, ZERO, now),
        }
        self.bins = {
            seeds.PREPAID_BIN_ID: Bin(seeds.PREPAID_BIN_ID, seeds.PREPAID_BIN, 1),
            seeds.BUDGET_BIN_ID: Bin(seeds.BUDGET_BIN_ID, seeds.BUDGET_BIN, 0),
        }
        first, last = seeds.CARDHOLDER_NAME.split(" ", 1)
        self.cardholders = {
            seeds.CARDHOLDER_ID: Cardholder(
                seeds.CARDHOLDER_ID,
                seeds.ACCOUNT_ID,
                first,
                last,
                "agent.holder@sandbox.invalid",
                [seeds.PREPAID_BIN_ID, seeds.BUDGET_BIN_ID],
            )
        }
        self.cards = {}
        self.card_transactions = {}
        self.transfers = {}
        self.wallets = seed_wallets(now)
        self.deposits = []
        self.spend_rules = {}
        self.idempotency = {}
        self.client_txn = {}
        self.access_tokens = {}
        self.refresh_tokens = {}
        self.auth_codes = {}
        self.private_info_tokens = {}
        self.requests = {}
        self.movements = []
        self.faults = []
        self.webhooks = []
        self.webhook_outbox = []
        self._seq = 0

    def snapshot(self) -> dict[str, Any]:
        """Totals for tests and the CLI; reading them first settles what is due (as any request does)."""
        self.settle_due()
        return super().snapshot()
