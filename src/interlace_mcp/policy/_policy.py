"""The policy file (DESIGN section 7): what each agent may spend, and on what.

Strict by design: an unknown key, a bad amount or a bad timezone stops startup with the file, the
key and the reason (:class:`PolicyError`). A key missing from an agent section takes the
``[defaults]`` value; a key missing from ``[defaults]`` takes the built-in default.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from interlace_mcp.money import CENT, MAX_AMOUNT

__all__ = [
    "AGENT_NAME_PATTERN",
    "AGENT_NAME_RULE",
    "BUILTIN_DEFAULTS",
    "SANDBOX_PAYEE",
    "AgentPolicy",
    "CardSpendLimit",
    "Payee",
    "Policy",
    "PolicyError",
    "builtin_policy",
    "file_stamp",
    "is_agent_name",
    "load_policy",
    "parse_policy",
    "token_digest",
]

SANDBOX_PAYEE = "sandbox-payee"
VELOCITY_WINDOWS = ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "TRANSACTION", "LIFETIME", "NA")
LIMIT_KEYS = ("per_transaction", "daily", "weekly", "monthly", "lifetime")
#: Agent names, everywhere (policy sections, CLI, INTERLACE_AGENT_ID, JWT ``sub``, tokens, dashboard URLs):
#: safe in a URL path segment, a file name, a TOML key and a log line, with no dot segments or case games.
AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
AGENT_NAME_RULE = (
    f"agent names must match {AGENT_NAME_PATTERN} (1-63 characters: lower-case letters, digits, _ and -, "
    "starting with a letter or digit)"
)
_AGENT_NAME = re.compile(AGENT_NAME_PATTERN[1:-1], re.ASCII)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class PolicyError(ValueError):
    """The policy file cannot be used: names the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass(frozen=True)
class CardSpendLimit:
    """Interlace's own per-card velocity control, set on every new card (a second line)."""

    window: str
    amount: Decimal


@dataclass(frozen=True)
class Payee:
    """An operator-defined transfer destination; agents refer to it by name only."""

    name: str
    account_id: str
    balance_id: str
    currency: str = "USD"


@dataclass(frozen=True)
class AgentPolicy:
    """The effective policy of one agent (defaults merged with its own section)."""

    agent: str
    currency: str = "USD"
    per_transaction: Decimal | None = Decimal("20.00")
    daily: Decimal | None = Decimal("50.00")
    weekly: Decimal | None = None
    monthly: Decimal | None = Decimal("200.00")
    lifetime: Decimal | None = None
    max_active_cards: int | None = 2
    confirm_above: Decimal | None = None
    approval_above: Decimal | None = None
    #: A call that would take the day's spent + reserved above this needs a human's approval, whatever its
    #: own size (splitting a payment does not dodge approval).
    approval_daily_above: Decimal | None = None
    #: Daily limit on funding the Infinity account from CryptoConnect wallets (fund_account; not spend).
    #: 0.00 by default: funding is refused until an operator grants it.
    fund_daily: Decimal | None = Decimal("0.00")
    #: get_card reveal=true: False (refused), True (number + CVV: PCI DSS L1 setups only), "token"
    #: (a one-time Interlace private-info token for its card widget, never the number), or "human" (a
    #: one-time dashboard link that shows the number to a signed-in operator, never to the model).
    reveal: bool | str = False
    transfer_payees: tuple[str, ...] = ()
    tools: tuple[str, ...] = ("*",)
    timezone: str = "UTC"
    card_spend_limit: CardSpendLimit | None = None
    cardholder_id: str | None = None
    bin_id: str | None = None
    token_sha256: str | None = None
    #: Every card of this agent is single-use (closed, balance swept back, after its first settled purchase).
    single_use_cards: bool = False
    #: The longest a card of this agent may live (minutes): caps issue_card's expires_in_minutes, and is the
    #: expiry of a card issued without one. None: no limit.
    card_max_ttl_minutes: int | None = None
    #: Merchant categories (4-digit MCCs): pushed to each new card as Interlace spend controls, and enforced
    #: by the server (an authorization elsewhere freezes the card). Empty allow list: every category not blocked.
    mcc_allow: tuple[str, ...] = ()
    mcc_block: tuple[str, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def allows_tool(self, tool: str) -> bool:
        """Whether the ``tools`` allow-list (names or glob patterns) lets this agent call ``tool``."""
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.tools)

    def window_limits(self) -> dict[str, Decimal | None]:
        """Calendar-window limits by window name (day, week, month, lifetime)."""
        return {"day": self.daily, "week": self.weekly, "month": self.monthly, "lifetime": self.lifetime}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view (amounts as strings; the token hash shortened)."""

        def amount(value: Decimal | None) -> str:
            return "none" if value is None else f"{value:f}"

        return {
            "agent": self.agent,
            "currency": self.currency,
            **{key: amount(getattr(self, key)) for key in LIMIT_KEYS},
            "max_active_cards": "none" if self.max_active_cards is None else self.max_active_cards,
            "confirm_above": amount(self.confirm_above) if self.confirm_above is not None else None,
            "approval_above": amount(self.approval_above) if self.approval_above is not None else None,
            "fund_daily": amount(self.fund_daily),
            "approval_daily_above": (
                amount(self.approval_daily_above) if self.approval_daily_above is not None else None
            ),
            "reveal": self.reveal,
            "transfer_payees": list(self.transfer_payees),
            "tools": list(self.tools),
            "timezone": self.timezone,
            "card_spend_limit": (
                {"window": self.card_spend_limit.window, "amount": f"{self.card_spend_limit.amount:f}"}
                if self.card_spend_limit
                else None
            ),
            "cardholder_id": self.cardholder_id,
            "bin_id": self.bin_id,
            "token_sha256": (self.token_sha256[:8] + "...") if self.token_sha256 else None,
            "single_use_cards": self.single_use_cards,
            "card_max_ttl_minutes": "none" if self.card_max_ttl_minutes is None else self.card_max_ttl_minutes,
            "mcc_allow": list(self.mcc_allow),
            "mcc_block": list(self.mcc_block),
        }

    def mcc_allowed(self, mcc: str | None) -> bool:
        """Whether an authorization at merchant category ``mcc`` is allowed (without a category: only when there is
        no allow list, as Interlace's whitelist declines it too)."""
        code = (mcc or "").strip()
        if code and code in self.mcc_block:
            return False
        return not self.mcc_allow or code in self.mcc_allow


#: The built-in policy (no file): DESIGN section 7.
BUILTIN_DEFAULTS = AgentPolicy(agent="*")


@dataclass(frozen=True)
class Policy:
    """A parsed policy: defaults, per-agent sections and payees."""

    defaults: AgentPolicy
    agents: Mapping[str, AgentPolicy] = field(default_factory=dict)
    payees: Mapping[str, Payee] = field(default_factory=dict)
    source: str = "built-in policy"
    #: (mtime_ns, size) of the file when it was read, for reload-on-change.
    stamp: tuple[int, int] | None = None

    def for_agent(self, agent: str) -> AgentPolicy:
        """The effective policy of ``agent`` (an agent without a section gets the defaults)."""
        found = self.agents.get(agent)
        return found if found is not None else replace(self.defaults, agent=agent)

    def agent_for_token_hash(self, digest: str) -> str | None:
        """The agent whose ``token_sha256`` is ``digest``, if any."""
        for name, agent in self.agents.items():
            if agent.token_sha256 is not None and agent.token_sha256 == digest:
                return name
        return None

    def known_agents(self) -> list[str]:
        return sorted(self.agents)


def is_agent_name(name: object) -> bool:
    """Whether ``name`` follows :data:`AGENT_NAME_RULE`."""
    return isinstance(name, str) and _AGENT_NAME.fullmatch(name) is not None


def builtin_policy(*, sandbox: bool, sandbox_payee: Payee | None = None) -> Policy:
    """The documented built-in policy; on the embedded emulator reveal is on and the seeded payee allowed."""
    if not sandbox:
        return Policy(defaults=BUILTIN_DEFAULTS)
    defaults = replace(BUILTIN_DEFAULTS, reveal=True, transfer_payees=(SANDBOX_PAYEE,))
    payees = {SANDBOX_PAYEE: sandbox_payee} if sandbox_payee else {}
    return Policy(defaults=defaults, payees=payees, source="built-in policy (embedded sandbox)")


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def load_policy(path: Path, *, extra_payees: Mapping[str, Payee] | None = None) -> Policy:
    """Read and validate a policy TOML file; raise PolicyError naming file, key and reason."""
    source = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise PolicyError(source, "(file)", f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(source, "(file)", f"not valid TOML: {exc}") from None
    stamp = file_stamp(path)
    return parse_policy(raw, source=source, stamp=stamp, extra_payees=extra_payees)


def parse_policy(
    raw: Mapping[str, Any],
    *,
    source: str = "policy",
    stamp: tuple[int, int] | None = None,
    extra_payees: Mapping[str, Payee] | None = None,
) -> Policy:
    """Validate an already-parsed TOML document."""
    _no_unknown(raw, {"defaults", "agents", "payees"}, source, "")
    defaults_raw = _table(raw.get("defaults", {}), source, "defaults")
    defaults = _apply(BUILTIN_DEFAULTS, defaults_raw, source, "defaults", allow_agent_only=False)
    defaults = replace(defaults, agent="*")

    payees: dict[str, Payee] = dict(extra_payees or {})
    for name, body in _table(raw.get("payees", {}), source, "payees").items():
        payees[name] = _payee(name, _table(body, source, f"payees.{name}"), source)

    agents: dict[str, AgentPolicy] = {}
    for name, body in _table(raw.get("agents", {}), source, "agents").items():
        if not is_agent_name(name):
            raise PolicyError(source, f"agents.{name}", AGENT_NAME_RULE)
        section = _table(body, source, f"agents.{name}")
        agents[name] = replace(_apply(defaults, section, source, f"agents.{name}", allow_agent_only=True), agent=name)

    everyone = [defaults, *agents.values()]
    for agent in everyone:
        where = "defaults" if agent.agent == "*" else f"agents.{agent.agent}"
        for payee in agent.transfer_payees:
            if payee not in payees:
                raise PolicyError(source, f"{where}.transfer_payees", f"unknown payee {payee!r} (no [payees.{payee}])")
    hashes: dict[str, str] = {}
    for name, agent in agents.items():
        if agent.token_sha256 is None:
            continue
        if agent.token_sha256 in hashes:
            raise PolicyError(
                source, f"agents.{name}.token_sha256", f"same token as agents.{hashes[agent.token_sha256]}"
            )
        hashes[agent.token_sha256] = name
    return Policy(defaults=defaults, agents=agents, payees=payees, source=source, stamp=stamp)


# ---- field parsing ---------------------------------------------------------------------------

_COMMON_KEYS = {
    "currency",
    *LIMIT_KEYS,
    "max_active_cards",
    "confirm_above",
    "approval_above",
    "fund_daily",
    "approval_daily_above",
    "reveal",
    "transfer_payees",
    "tools",
    "timezone",
    "card_spend_limit",
    "cardholder_id",
    "bin_id",
    "single_use_cards",
    "card_max_ttl_minutes",
    "mcc_allow",
    "mcc_block",
}
#: The longest card_max_ttl_minutes (a year): a card that should live longer needs no expiry at all.
MAX_TTL_MINUTES = 525_600
_MCC = re.compile(r"[0-9]{4}", re.ASCII)
_AGENT_ONLY_KEYS = {"token_sha256"}


def _apply(
    base: AgentPolicy, section: Mapping[str, Any], source: str, where: str, *, allow_agent_only: bool
) -> AgentPolicy:
    allowed = _COMMON_KEYS | (_AGENT_ONLY_KEYS if allow_agent_only else set())
    _no_unknown(section, allowed, source, where)
    changes: dict[str, Any] = {}
    for key, value in section.items():
        path = f"{where}.{key}"
        if key in LIMIT_KEYS:
            changes[key] = _limit(value, source, path)
        elif key in ("confirm_above", "approval_above", "approval_daily_above", "fund_daily"):
            changes[key] = _limit(value, source, path)
        elif key == "currency":
            changes[key] = _currency(value, source, path)
        elif key == "max_active_cards":
            if value == "none":
                changes[key] = None
            elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000:
                changes[key] = value
            else:
                raise PolicyError(source, path, 'must be a whole number 0-1000 or "none"')
        elif key == "reveal":
            if not isinstance(value, bool) and value not in ("token", "human"):
                raise PolicyError(source, path, 'must be true, false, "token" or "human"')
            changes[key] = value
        elif key == "single_use_cards":
            if not isinstance(value, bool):
                raise PolicyError(source, path, "must be true or false")
            changes[key] = value
        elif key == "card_max_ttl_minutes":
            if value == "none":
                changes[key] = None
            elif isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TTL_MINUTES:
                changes[key] = value
            else:
                raise PolicyError(source, path, f'must be a whole number of minutes 1-{MAX_TTL_MINUTES} or "none"')
        elif key in ("mcc_allow", "mcc_block"):
            changes[key] = _mcc_list(value, source, path)
        elif key in ("transfer_payees", "tools"):
            changes[key] = _str_list(value, source, path)
        elif key == "timezone":
            changes[key] = _timezone(value, source, path)
        elif key == "card_spend_limit":
            changes[key] = _velocity(value, source, path)
        elif key in ("cardholder_id", "bin_id"):
            if not isinstance(value, str) or not value.strip():
                raise PolicyError(source, path, "must be a non-empty string")
            changes[key] = value.strip()
        elif key == "token_sha256":
            if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value.lower()):
                raise PolicyError(source, path, "must be 64 hex characters (sha256 of the bearer token)")
            changes[key] = value.lower()
    merged = replace(base, **changes)
    _check_consistency(merged, source, where)
    return merged


def _check_consistency(policy: AgentPolicy, source: str, where: str) -> None:
    if (
        policy.confirm_above is not None
        and policy.approval_above is not None
        and policy.confirm_above >= policy.approval_above
    ):
        raise PolicyError(source, f"{where}.confirm_above", "must be below approval_above (the middle band)")
    both = sorted(set(policy.mcc_allow) & set(policy.mcc_block))
    if both:
        reason = f"{', '.join(both)} also in mcc_allow (a category is allowed or blocked, not both)"
        raise PolicyError(source, f"{where}.mcc_block", reason)


def _limit(value: Any, source: str, path: str) -> Decimal | None:
    if value == "none":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise PolicyError(source, path, 'write amounts as strings, e.g. "50.00" (floats are not exact)')
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,2})?", value.strip()):
            raise PolicyError(source, path, f'{value!r} is not an amount like "50.00" or "none"')
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the pattern already excludes this
            raise PolicyError(source, path, f"{value!r} is not a decimal") from None
    else:
        raise PolicyError(source, path, 'must be an amount string like "50.00" or "none"')
    if amount < 0 or amount > MAX_AMOUNT:
        raise PolicyError(source, path, f"must be between 0 and {MAX_AMOUNT}")
    return amount.quantize(CENT)


def _currency(value: Any, source: str, path: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise PolicyError(source, path, 'must be an ISO 4217 code like "USD"')
    if value != "USD":
        raise PolicyError(source, path, "Interlace cards and the Infinity account are USD only")
    return value


def _str_list(value: Any, source: str, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyError(source, path, "must be a list of non-empty strings")
    return tuple(value)


def _mcc_list(value: Any, source: str, path: str) -> tuple[str, ...]:
    """4-digit merchant category codes as strings (``["5734", "5045"]``), at most 100, sorted, no repeats."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(source, path, 'must be a list of 4-digit merchant category codes as strings, e.g. ["5734"]')
    bad = [item for item in value if not _MCC.fullmatch(item)]
    if bad:
        raise PolicyError(source, path, f"{bad[0]!r} is not a 4-digit merchant category code (MCC)")
    if len(value) > 100:
        raise PolicyError(source, path, "at most 100 merchant categories")
    return tuple(sorted(set(value)))


def _timezone(value: Any, source: str, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise PolicyError(source, path, 'must be an IANA timezone name like "Europe/Paris"')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(source, path, f"unknown timezone {value!r}") from None
    return value


def _velocity(value: Any, source: str, path: str) -> CardSpendLimit:
    body = _table(value, source, path)
    _no_unknown(body, {"window", "amount"}, source, path)
    window = body.get("window")
    if window not in VELOCITY_WINDOWS:
        raise PolicyError(source, f"{path}.window", f"must be one of {', '.join(VELOCITY_WINDOWS)}")
    amount = _limit(body.get("amount"), source, f"{path}.amount")
    if amount is None:
        raise PolicyError(source, f"{path}.amount", "must be an amount")
    return CardSpendLimit(window=str(window), amount=amount)


def _payee(name: str, body: Mapping[str, Any], source: str) -> Payee:
    where = f"payees.{name}"
    _no_unknown(body, {"account_id", "balance_id", "currency"}, source, where)
    for key in ("account_id", "balance_id"):
        if not isinstance(body.get(key), str) or not body[key].strip():
            raise PolicyError(source, f"{where}.{key}", "is required (a non-empty string)")
    currency = _currency(body.get("currency", "USD"), source, f"{where}.currency")
    return Payee(
        name=name, account_id=body["account_id"].strip(), balance_id=body["balance_id"].strip(), currency=currency
    )


def _table(value: Any, source: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(source, path, "must be a table")
    return value


def _no_unknown(section: Mapping[str, Any], allowed: Iterable[str], source: str, where: str) -> None:
    allowed_set = set(allowed)
    for key in section:
        if key not in allowed_set:
            path = f"{where}.{key}" if where else key
            raise PolicyError(source, path, f"unknown key (allowed: {', '.join(sorted(allowed_set))})")


def token_digest(token: str) -> str:
    """sha256 hex of a bearer token, as stored in ``token_sha256`` and the database."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
