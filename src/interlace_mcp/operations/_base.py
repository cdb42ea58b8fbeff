"""What a money operation is: its spec, what it needs handed in, what it reports back.

An operation (``IssueCard``, ``CardTransfer``, ``CloseCard``, ``CreateTransfer``, ``FundAccount``) is a
small object built from the agent's arguments (or, for recovery and reconciliation, from its stored request
record). It knows its rules beyond the ledger's (``violations``), what it must fix before anything is
reserved (``plan``), how to move the money with the keys stored at the reservation (``send``) and how to
find that movement upstream again (``find``). The runner drives every one of them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Self

from interlace_mcp.audit import AuditLog
from interlace_mcp.client import InterlaceClient
from interlace_mcp.metrics import Metrics
from interlace_mcp.money import format_amount
from interlace_mcp.operations._cards import CardCache
from interlace_mcp.operations._inflight import InFlight
from interlace_mcp.operations._results import CardResult
from interlace_mcp.policy import (
    AgentPolicy,
    CardRecord,
    Payee,
    RequestKey,
    RequestRecord,
    Store,
    Violation,
    per_transaction_violation,
)

__all__ = ["CardTerms", "Deps", "Execution", "Expected", "Lookup", "Operation", "OperationSpec", "Outcome"]


@dataclass(frozen=True)
class OperationSpec:
    """The fixed facts of one operation: its name (the tool's name: written here and nowhere else) and
    how the ledger treats it."""

    name: str
    #: One upstream key per step (clientTransactionId / referenceId and Idempotency-Key), generated and
    #: stored when the request is reserved, reused by every retry and by recovery.
    steps: tuple[str, ...]
    #: Counts as spend (card loads, top-ups, transfers). Unloads and closes return money.
    spends: bool = True
    #: Counts against max_active_cards while it is pending or in flight.
    issues_card: bool = False
    #: Subject to the confirmation band and approval_above.
    needs_consent: bool = True
    #: Funds the Infinity account from a CryptoConnect wallet: not spend, but held in the funding window
    #: (policy ``fund_daily``) the same way.
    funds: bool = False


@dataclass(frozen=True)
class Expected:
    """One movement a completed request should have left upstream, keyed by its clientTransactionId."""

    key: str
    amount: Decimal
    #: Where to look it up: a card's transactions, or the business transfers.
    card_id: str | None = None


@dataclass(frozen=True)
class Deps:
    """What the runner needs, handed in by the runtime (never the MCP context)."""

    store: Store
    audit: AuditLog
    client: InterlaceClient
    #: Ledger scope: upstream base URL + accountId.
    scope: str
    sandbox: bool
    cards: CardCache
    inflight: InFlight
    approval_ttl: float
    #: How long one execution may hold a request (a retry meanwhile never executes it concurrently).
    lease: float
    #: The default BIN and cardholder for new cards (settings, else discovered once).
    card_product: Callable[[], Awaitable[tuple[str | None, str | None]]]
    #: Tell a human about a new pending approval (best effort).
    notify_approval: Callable[[RequestRecord], Awaitable[None]]
    #: Prometheus metrics (a no-op unless INTERLACE_METRICS_PORT is set).
    metrics: Metrics = field(default_factory=Metrics)
    #: The operator acting (an operator's own money action, e.g. ``interlace-mcp fund``): named in its
    #: audit records. None for an agent's call.
    actor: str | None = None
    #: The dashboard page of an approval (INTERLACE_PUBLIC_URL set), where only a signed-in operator can act.
    approval_url: Callable[[str], str | None] = field(default=lambda approval_id: None)


@dataclass(frozen=True)
class CardTerms:
    """What the server itself does with a new card: close it after its first settled purchase
    (``single_use``) or at ``expires_at`` (epoch seconds); and its last four digits, to show it once closed."""

    single_use: bool = False
    expires_at: float | None = None
    last_four: str | None = None


@dataclass
class Outcome:
    """What an operation did upstream, and what the ledger must note with the commit."""

    amount: Decimal | None
    transaction_id: str | None = None
    card: CardResult | None = None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: A card the operation created: registered to the agent in the commit's transaction.
    new_card: tuple[str, str | None] | None = None
    #: The new card's terms (single-use, expiry, last four), stored with its registration.
    card_terms: CardTerms | None = None
    #: A card the operation deleted: marked deleted in the commit's transaction.
    deleted_card: str | None = None
    #: Progress to store with the result (how far each step got).
    progress: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookup:
    """Where an operation's movement stands upstream, found by its stored keys.

    ``absent``: nothing moved (safe to send, or to release); ``done``: every step happened (``outcome``
    says what); ``partial``: money moved but a later step is still to do (the runner's ``send`` finishes
    it; recovery leaves it for the agent's retry).
    """

    state: Literal["absent", "partial", "done"]
    outcome: Outcome | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def absent(cls) -> Lookup:
        return cls("absent")


@dataclass
class Execution:
    """One execution of a reserved request: the stored keys, who asked, and the runtime's services."""

    deps: Deps
    agent: str
    policy: AgentPolicy
    key: RequestKey
    record: RequestRecord
    #: An earlier attempt may have reached Interlace: look the movement up before sending.
    resumed: bool
    #: Set once Interlace confirmed the movement (sent or found): from then on no failure may release
    #: the reservation or forget the request, or a retry would move money again.
    moved: bool = False

    @property
    def client(self) -> InterlaceClient:
        return self.deps.client

    def step_key(self, step: str) -> str:
        """The UUID of one step: its clientTransactionId / referenceId and Idempotency-Key."""
        return self.record.keys[step]

    @property
    def progress(self) -> dict[str, Any]:
        return dict(self.record.progress)


class Operation(ABC):
    """A money operation (see the module docstring). Subclasses set ``spec`` and the fields below."""

    request_id: str
    currency: str
    #: The card it acts on (loads, unloads, close), if any, and the agent's record of it (for results).
    card_id: str | None
    record: CardRecord | None

    @property
    @abstractmethod
    def spec(self) -> OperationSpec:
        """This operation's spec (its tool name, steps and how the ledger treats it)."""

    @property
    @abstractmethod
    def amount(self) -> Decimal | None:
        """The amount shown to the agent (None when only Interlace knows it, e.g. a close's unload)."""

    @property
    def spend(self) -> Decimal:
        """What counts as spend: the amount for loads and transfers, nothing for what returns money."""
        return (self.amount or Decimal("0")) if self.spec.spends else Decimal("0")

    @property
    def fund(self) -> Decimal:
        """What counts in the funding window (``fund_daily``): the amount of a funding, else nothing."""
        return (self.amount or Decimal("0")) if self.spec.funds else Decimal("0")

    @property
    def governed(self) -> Decimal:
        """What ``approval_above`` and the confirmation band compare: the spend, or the funding."""
        return self.spend + self.fund

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The arguments that identify the request (hashed for replay/conflict, stored for recovery)."""

    @abstractmethod
    def summary(self) -> str:
        """What it does, in words (approvals, audit records, dry runs)."""

    def violations(self, policy: AgentPolicy, payees: Mapping[str, Payee]) -> list[Violation]:
        """The rules of this operation beyond the ledger's windows (per-transaction, payee)."""
        if self.spend > 0 and (v := per_transaction_violation(policy, self.spend, self.currency)) is not None:
            return [v]
        return []

    def binding_violations(self, record: RequestRecord) -> list[Violation]:
        """What an approved request bound (at its reservation) that no longer holds now (e.g. the payee's
        account changed): checked with the current policy just before it executes."""
        return []

    def approval_details(self) -> dict[str, Any]:
        """What a human needs to decide on this operation; the agent's own words go under ``agent_text``
        (``{"field": ..., "text": ...}``: untrusted, shown quoted)."""
        return {
            "tool": self.spec.name,
            "amount": self.describe_amount(),
            "currency": self.currency,
            "summary": self.summary(),
        }

    async def plan(self, deps: Deps) -> dict[str, Any]:
        """What must be fixed before anything is reserved (stored as the request's first progress)."""
        return {}

    @abstractmethod
    async def find(self, ex: Execution) -> Lookup:
        """Where this request's movement stands upstream (raises ``InterlaceError`` when Interlace cannot tell)."""

    @abstractmethod
    async def send(self, ex: Execution, found: Lookup | None) -> Outcome:
        """Move the money with the stored keys (``found``: what a resumed execution looked up first)."""

    @classmethod
    @abstractmethod
    def from_record(cls, record: RequestRecord) -> Self:
        """The operation of a stored request (recovery, reconciliation)."""

    def expected(self, record: RequestRecord) -> list[Expected]:
        """The movements a completed request left upstream, for reconciliation."""
        return []

    def describe_amount(self) -> str | None:
        return None if self.amount is None else format_amount(self.amount)
