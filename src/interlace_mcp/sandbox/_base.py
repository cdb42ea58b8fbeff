"""What every part of :class:`~._state.SandboxState` shares: its tables, the clock, ids and lookups.

The state is assembled from mixins (auth, faults, cards, authorizations, transfers, wallets,
webhooks, views, persistence); each one reads and writes the tables declared here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._records import (
    Account,
    Balance,
    Bin,
    Card,
    Cardholder,
    CardTransaction,
    CryptoDeposit,
    CryptoWallet,
    FaultRule,
    Grant,
    Movement,
    SandboxConfig,
    SandboxError,
    SpendRule,
    Transfer,
    not_found,
)

if TYPE_CHECKING:
    from ._webhooks import WebhookEnvelope, WebhookSink

__all__ = ["ClientTxnKey", "IdempotencyScope", "StateBase"]

IdempotencyScope = tuple[str, str, str]  # (accountId, Idempotency-Key, path)
ClientTxnKey = tuple[str, str, str]  # (accountId, endpoint, clientTransactionId)


class StateBase:
    """The tables and helpers the state's parts share. Not thread-safe: the app serialises access."""

    clock: Callable[[], float]
    config: SandboxConfig
    accounts: dict[str, Account]
    balances: dict[str, Balance]
    bins: dict[str, Bin]
    cardholders: dict[str, Cardholder]
    cards: dict[str, Card]
    card_transactions: dict[str, CardTransaction]
    transfers: dict[str, Transfer]
    wallets: dict[str, CryptoWallet]
    deposits: list[CryptoDeposit]
    spend_rules: dict[int, SpendRule]
    #: finished records hold the first success's ``data`` as JSON text; None = in progress.
    idempotency: dict[IdempotencyScope, str | None]
    client_txn: dict[ClientTxnKey, str]
    access_tokens: dict[str, Grant]
    refresh_tokens: dict[str, Grant]
    auth_codes: dict[str, Grant]
    private_info_tokens: dict[str, Grant]
    requests: dict[str, int]
    movements: list[Movement]
    faults: list[FaultRule]
    #: every webhook emitted (newest last, bounded), with what became of each delivery
    webhooks: list[WebhookEnvelope]
    #: emitted, not yet handed to the delivery task
    webhook_outbox: list[WebhookEnvelope]
    webhook_sinks: list[WebhookSink]
    #: approved authorizations not yet settled, by id (rebuilt whenever card_transactions is replaced)
    _pending_by_id: dict[str, CardTransaction]
    _pending_source: object
    #: the earliest settlement deadline among them (inf = none)
    _next_due: float
    _seq: int

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        """Empty tables; :class:`~._state.SandboxState` then fills them with the seeds."""
        self.clock = clock or time.time
        self.config = SandboxConfig()
        self.accounts = {}
        self.balances = {}
        self.bins = {}
        self.cardholders = {}
        self.cards = {}
        self.card_transactions = {}
        self.transfers = {}
        self.wallets = {}
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
        self.webhook_sinks = []
        self._pending_by_id = {}
        self._pending_source = None
        self._next_due = float("inf")
        self._seq = 0

    # ---- clock and ids ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_snowflake(self) -> str:
        taken = self.card_transactions.keys() | self.transfers.keys()
        while True:
            candidate = str(10**18 + secrets.randbelow(9 * 10**18))
            if candidate not in taken:
                return candidate

    def count_request(self, label: str) -> None:
        self.requests[label] = self.requests.get(label, 0) + 1

    # ---- lookups --------------------------------------------------------------------------------

    def infinity_balance(self, account_id: str) -> Balance:
        for balance in self.balances.values():
            if balance.account_id == account_id and balance.object_type == 0:
                return balance
        raise SandboxError(400, "010021", "account balance does not exist")

    def get_card(self, account_id: str, card_id: str) -> Card:
        card = self.cards.get(card_id)
        if card is None or card.deleted or card.account_id != account_id:
            raise not_found("card")
        return card

    def card_balance(self, card: Card) -> Balance:
        return self.balances[card.balance_id]

    def get_wallet(self, account_id: str, wallet_id: str) -> CryptoWallet:
        wallet = self.wallets.get(wallet_id)
        if wallet is None or wallet.account_id != account_id:
            raise not_found("wallet")
        return wallet

    def _dedupe(self, key: ClientTxnKey) -> str | None:
        return self.client_txn.get(key)
