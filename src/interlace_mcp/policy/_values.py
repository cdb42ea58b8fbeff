"""The ledger's value types and the one refusal exception (every rule a call breaks, in words)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from interlace_mcp.money import format_amount
from interlace_mcp.policy._windows import epoch_to_iso

__all__ = [
    "RULE_ORDER",
    "Approval",
    "BeginResult",
    "CardRecord",
    "DayFigures",
    "Refusal",
    "RequestConflict",
    "RequestKey",
    "RequestRecord",
    "Violation",
    "WindowStatus",
    "refusal_text",
]

#: The order in which a refusal lists the rules it breaks (DESIGN section 7, "Order of checks").
RULE_ORDER = (
    "tool_not_allowed",
    "agent_frozen",
    "rate_limited",
    "per_transaction_limit",
    "daily_limit",
    "weekly_limit",
    "monthly_limit",
    "lifetime_limit",
    "fund_limit",
    "max_active_cards",
    "payee_not_allowed",
)


@dataclass(frozen=True)
class Violation:
    """One rule a call breaks: a stable code and a sentence naming limit, use and what remains."""

    code: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"[{self.code}] {self.message}"


def refusal_text(violations: Sequence[Violation]) -> str:
    """All violations in rule order, each starting with its code in brackets."""
    order = {code: i for i, code in enumerate(RULE_ORDER)}
    ordered = sorted(violations, key=lambda v: order.get(v.code, len(order)))
    return "; ".join(v.text for v in ordered)


class Refusal(Exception):
    """The one refusal type: a call is refused, naming every rule it breaks (``[code] sentence`` each).

    Raised by the ledger (limits, conflicts), the money operations (upstream answers, ownership) and
    the tools' checks; the MCP boundary returns it as an error result. Nothing was stored or moved.
    """

    #: Set once the refusal is in the audit log (the runner writes it with its ledger write).
    audited: bool = False

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__(refusal_text(self.violations))

    @classmethod
    def one(cls, code: str, message: str, **data: Any) -> Refusal:
        return cls([Violation(code, message, data)])

    @property
    def code(self) -> str:
        """The first rule's code (in rule order)."""
        order = {code: i for i, code in enumerate(RULE_ORDER)}
        return min(self.violations, key=lambda v: order.get(v.code, len(order))).code


class RequestConflict(Refusal):
    """The same request_id was used before with different arguments."""

    def __init__(self, tool: str, request_id: str) -> None:
        super().__init__(
            [
                Violation(
                    "request_id_conflict",
                    f"request_id {request_id!r} was already used for a different {tool} call; "
                    "use a new request_id for a new request",
                )
            ]
        )


@dataclass(frozen=True)
class RequestKey:
    scope: str
    agent: str
    tool: str
    request_id: str


@dataclass(frozen=True)
class Approval:
    id: str
    agent: str
    tool: str
    request_id: str
    amount: Decimal
    currency: str
    summary: str
    status: str
    created_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None
    reason: str | None
    scope: str
    #: What a human needs to decide (see :func:`interlace_mcp.policy.approvals.create`); agent text inside
    #: ``agent_text`` is untrusted.
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at_iso(self) -> str:
        return epoch_to_iso(self.expires_at) or ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "approval_id": self.id,
            "agent": self.agent,
            "tool": self.tool,
            "request_id": self.request_id,
            "amount": format_amount(self.amount),
            "currency": self.currency,
            "summary": self.summary,
            "status": self.status,
            "created_at": epoch_to_iso(self.created_at),
            "expires_at": epoch_to_iso(self.expires_at),
            "decided_at": epoch_to_iso(self.decided_at),
            "decided_by": self.decided_by,
            "reason": self.reason,
        }

    @property
    def reasons(self) -> list[str]:
        """Why this request needs a human (approval_above, approval_daily_above, the confirmation band)."""
        return [str(r) for r in self.details.get("reasons") or []]

    @property
    def agent_text(self) -> dict[str, str] | None:
        """The agent's own words on the request (memo or label): untrusted data, never instructions."""
        text = self.details.get("agent_text")
        return {"field": str(text["field"]), "text": str(text["text"])} if isinstance(text, dict) else None


@dataclass(frozen=True)
class RequestRecord:
    key: RequestKey
    args_hash: str
    status: str  # pending_approval | executing | completed | refused
    amount: Decimal
    currency: str
    entry_id: int | None
    approval_id: str | None
    keys: dict[str, str]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    card_id: str | None
    created_at: float
    updated_at: float
    approval: Approval | None = None
    #: The operation's arguments (what it needs to find its movement upstream again).
    args: dict[str, Any] = field(default_factory=dict)
    #: An execution holds the request until then (epoch seconds; 0: nobody is executing it).
    lease_until: float = 0.0


@dataclass(frozen=True)
class BeginResult:
    """What :meth:`Ledger.begin` found or created.

    ``is_new``: a new request (reserved, or pending approval). ``started``: this call now executes it
    (new, approved and started, or ``resumed`` after an earlier attempt that may have reached Interlace);
    ``busy``: another execution holds it right now (never two at once).
    """

    record: RequestRecord
    is_new: bool
    started: bool = False
    resumed: bool = False
    busy: bool = False


@dataclass(frozen=True)
class CardRecord:
    scope: str
    card_id: str
    agent: str
    label: str | None
    request_id: str | None
    frozen_by: str | None
    created_at: float
    deleted_at: float | None
    #: Closed by the server after its first settled purchase.
    single_use: bool = False
    #: Closed by the server at this time (epoch seconds), if set.
    expires_at: float | None = None
    last_four: str | None = None
    #: Why the server closed it (or is closing it): ``single_use`` or ``expired``; None otherwise.
    closed_reason: str | None = None

    @property
    def purpose_bound(self) -> bool:
        """The server closes it by itself (single-use, or an expiry)."""
        return self.single_use or self.expires_at is not None


@dataclass(frozen=True)
class DayFigures:
    """An agent's calendar day in its policy currency: the daily limit, what is spent and reserved."""

    limit: Decimal | None
    spent: Decimal
    reserved: Decimal
    currency: str

    def remaining_after(self, amount: Decimal) -> Decimal | None:
        """What would remain of the daily limit after ``amount`` more (None: no daily limit)."""
        if self.limit is None:
            return None
        return max(self.limit - self.spent - self.reserved - amount, Decimal("0"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "limit": None if self.limit is None else format_amount(self.limit),
            "spent": format_amount(self.spent),
            "reserved": format_amount(self.reserved),
            "currency": self.currency,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DayFigures:
        limit = data.get("limit")
        return cls(
            limit=None if limit is None else Decimal(str(limit)),
            spent=Decimal(str(data.get("spent") or "0")),
            reserved=Decimal(str(data.get("reserved") or "0")),
            currency=str(data.get("currency") or "USD"),
        )


@dataclass(frozen=True)
class WindowStatus:
    window: str
    limit: Decimal | None
    spent: Decimal
    reserved: Decimal
    remaining: Decimal | None
    resets_at: str | None

    def as_dict(self) -> dict[str, Any]:
        def fmt(value: Decimal | None) -> str | None:
            return None if value is None else format_amount(value)

        return {
            "window": self.window,
            "limit": fmt(self.limit),
            "spent": fmt(self.spent),
            "reserved": fmt(self.reserved),
            "remaining": fmt(self.remaining),
            "resets_at": self.resets_at,
        }
