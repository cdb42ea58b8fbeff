"""The shared runtime: settings, the upstream, the ledger and its store, the policy, the audit log, limiters.

Server, dashboard and CLI all build it with :func:`~interlace_mcp.app.build_runtime` and open it with
:meth:`Runtime.open` (the Interlace client, discovery, recovery and the maintenance timer). Nothing here
knows MCP: the tools layer finds the calling agent and hands it in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from interlace_mcp.app._notes import RefusalNotes
from interlace_mcp.app._watcher import CardWatcher
from interlace_mcp.audit import AuditLog, AuditWriteError
from interlace_mcp.client import CryptoWallet, InterlaceClient, NotFoundError
from interlace_mcp.config import Settings, Upstream
from interlace_mcp.metrics import Metrics
from interlace_mcp.operations import CardCache, Deps, InFlight, approval_notice
from interlace_mcp.policy import (
    SANDBOX_PAYEE,
    AgentPolicy,
    Ledger,
    Payee,
    Policy,
    PolicyError,
    RequestRecord,
    Store,
    builtin_policy,
    file_stamp,
    load_policy,
)

__all__ = ["PolicyStore", "RateLimiter", "RevealLimiter", "Runtime", "Wakeups"]

logger = logging.getLogger("interlace_mcp.app")


class PolicyStore:
    """The current policy; re-read when the file changes. A broken edit fails closed (money tools refuse)."""

    def __init__(self, path: Path | None, *, emulator: bool, sandbox_payee: Payee | None) -> None:
        """``emulator``: the upstream is our emulator (the built-in policy's sandbox defaults; the file may name
        ``sandbox-payee``). Not the emulator but ``sandbox_payee`` given: an upstream still to prove it is (see
        app.prove_emulator) -- a file naming ``sandbox-payee`` is accepted, the payee withheld until proven."""
        self.path = path
        self._emulator = emulator
        self._extra = {SANDBOX_PAYEE: sandbox_payee} if (emulator and sandbox_payee) else {}
        self._withheld = None if emulator else sandbox_payee
        self._lock = threading.Lock()
        self.error: PolicyError | None = None
        self._policy = self._load()  # a broken file at startup raises: startup stops with file/key/reason

    def _load(self) -> Policy:
        if self.path is None:
            return builtin_policy(sandbox=self._emulator, sandbox_payee=self._extra.get(SANDBOX_PAYEE))
        if self._withheld is None:
            return load_policy(self.path, extra_payees=self._extra)
        # Checked as if the emulator's payee were there (a file written for it starts), but without it: a payee
        # the file names and does not define is refused (payee_not_allowed) until the upstream proves itself.
        policy = load_policy(self.path, extra_payees={SANDBOX_PAYEE: self._withheld})
        if policy.payees.get(SANDBOX_PAYEE) is self._withheld:
            policy = replace(policy, payees={k: v for k, v in policy.payees.items() if k != SANDBOX_PAYEE})
        return policy

    def use_emulator_defaults(self, sandbox_payee: Payee) -> None:
        """The upstream proved it is our emulator (app.prove_emulator): the built-in policy turns on its sandbox
        defaults (reveal, ``sandbox-payee``) and a policy file may name ``sandbox-payee``."""
        with self._lock:
            self._emulator = True
            self._extra = {SANDBOX_PAYEE: sandbox_payee}
            self._withheld = None
            try:
                self._policy = self._load()
                self.error = None
            except PolicyError as exc:
                logger.error("policy file edit rejected, money tools refuse until fixed: %s", exc)
                self.error = exc

    def current(self) -> Policy:
        if self.path is None:
            return self._policy
        stamp = file_stamp(self.path)
        if stamp == self._policy.stamp and self.error is None:
            return self._policy
        with self._lock:
            if stamp != self._policy.stamp or self.error is not None:
                try:
                    self._policy = self._load()
                    if self.error is not None:
                        logger.warning("policy file %s is valid again; reloaded", self.path)
                    else:
                        logger.info("policy file %s changed; reloaded", self.path)
                    self.error = None
                except PolicyError as exc:
                    if self.error is None or str(self.error) != str(exc):
                        logger.error("policy file edit rejected, money tools refuse until fixed: %s", exc)
                    self.error = exc
        return self._policy

    def for_agent(self, agent: str) -> AgentPolicy:
        return self.current().for_agent(agent)


class RateLimiter:
    """Per-agent token bucket: ``per_minute`` calls a minute, refilling continuously."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, agent: str, now: float) -> float:
        tokens, last = self._buckets.get(agent, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)

    def peek(self, agent: str) -> float | None:
        """Whether a call would be allowed now, taking nothing: None, else the seconds until it would."""
        with self._lock:
            tokens = self._level(agent, self._clock())
        return None if tokens >= 1.0 else (1.0 - tokens) / (self.per_minute / 60.0)

    def check(self, agent: str) -> float | None:
        """Take one token; None when allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            tokens = self._level(agent, now)
            if tokens >= 1.0:
                self._buckets[agent] = (tokens - 1.0, now)
                return None
            self._buckets[agent] = (tokens, now)
            return (1.0 - tokens) / (self.per_minute / 60.0)


class RevealLimiter:
    """At most ``per_hour`` reveals per agent and card in any sliding hour."""

    def __init__(self, per_hour: int = 5, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._seen: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def check(self, agent: str, card_id: str) -> float | None:
        """Record one reveal; None when allowed, else seconds until the oldest one leaves the window."""
        with self._lock:
            now = self._clock()
            recent = [t for t in self._seen.get((agent, card_id), []) if now - t < 3600]
            if len(recent) >= self.per_hour:
                self._seen[(agent, card_id)] = recent
                return 3600 - (now - recent[0])
            recent.append(now)
            self._seen[(agent, card_id)] = recent
            return None


class Wakeups:
    """Wake-ups by key inside this process (event loop only): a decision made here -- on this server's
    dashboard -- wakes the calls waiting for it at once. Decisions made elsewhere (the CLI, another
    process's dashboard) reach the waiters through the database, which they also poll."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[anyio.Event]] = {}

    async def wait(self, key: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`notify` of ``key``; True when notified."""
        event = anyio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            with anyio.move_on_after(max(timeout, 0.0)):
                await event.wait()
            return event.is_set()
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[key]

    def notify(self, key: str) -> None:
        for event in self._waiting.pop(key, set()):
            event.set()


@dataclass
class Runtime:
    """Per-process state. The client is opened by :meth:`open` (one httpx client per lifetime)."""

    settings: Settings
    upstream: Upstream
    ledger: Ledger
    policies: PolicyStore
    rate_limiter: RateLimiter
    audit: AuditLog
    reveal_limiter: RevealLimiter = field(default_factory=RevealLimiter)
    #: Prometheus metrics when INTERLACE_METRICS_PORT is set (else a no-op); one registry per runtime.
    metrics: Metrics = field(default_factory=Metrics)
    client: InterlaceClient | None = None
    account_id: str = ""
    default_bin_id: str | None = None
    default_cardholder_id: str | None = None
    cards: CardCache = field(default_factory=CardCache)
    inflight: InFlight = field(default_factory=InFlight)
    #: Calls waiting for a human (an approval's decision) are woken by this process's decisions at once.
    wakeups: Wakeups = field(default_factory=Wakeups)
    #: How the client reaches the upstream: the embedded emulator's ASGI app, or any transport (tests).
    sandbox_app: Any = None
    upstream_transport: httpx.AsyncBaseTransport | None = None
    backoff: bool = True
    #: Last retention purge (the ledger's clock).
    last_purge: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: Wakes the checkout loop (purpose-bound cards, merchant-category enforcement): webhooks and tools nudge it.
    watcher: CardWatcher = field(default_factory=CardWatcher)
    #: The last refusals of money calls by request_id, for get_request_status (this process only, not binding).
    refusals: RefusalNotes = field(default_factory=RefusalNotes)

    @property
    def store(self) -> Store:
        """The ledger's async facade: every storage call of the server goes through it."""
        return self.ledger.store

    @property
    def sandbox(self) -> bool:
        return self.upstream.sandbox

    @property
    def scope(self) -> str:
        """Ledger scope: base URL + accountId, so sandbox spend never mixes with real spend."""
        return f"{self.upstream.scope}#{self.account_id}"

    @property
    def api(self) -> InterlaceClient:
        if self.client is None:
            raise RuntimeError("the Interlace client is not open (runtime not opened)")
        return self.client

    @property
    def lease_seconds(self) -> float:
        """How long one execution may hold a request: every step's attempts, timeouts and backoff, with room."""
        attempts = self.settings.max_retries + 1
        return 4 * attempts * (self.settings.http_timeout_seconds + 8.0) + 30.0

    def deps(self) -> Deps:
        """What the money runner needs, handed in (never the MCP context)."""
        return Deps(
            store=self.store,
            audit=self.audit,
            client=self.api,
            scope=self.scope,
            sandbox=self.sandbox,
            cards=self.cards,
            inflight=self.inflight,
            approval_ttl=float(self.settings.approval_ttl_seconds),
            lease=self.lease_seconds,
            card_product=self.card_product,
            notify_approval=self.notify_approval,
            metrics=self.metrics,
            approval_url=self.approval_url,
        )

    def approval_url(self, approval_id: str) -> str | None:
        """The approval's page on the dashboard (where only a signed-in operator can act), when
        INTERLACE_PUBLIC_URL says where this server is reachable; else None."""
        public = self.settings.public_url
        if not public:
            return None
        return f"{public.rstrip('/')}/dashboard/approvals/{quote(approval_id, safe='')}"

    async def card_product(self) -> tuple[str | None, str | None]:
        """The default BIN and cardholder for new cards: settings, else discovered once (first prepaid BIN;
        on a sandbox, the first active cardholder -- a real upstream must name its cardholder)."""
        if self.default_bin_id is None:
            prepaid = [b for b in await self.api.list_bins() if b.type == 1]
            self.default_bin_id = prepaid[0].id if prepaid else None
        if self.default_cardholder_id is None and self.upstream.sandbox:
            holders = [h for h in await self.api.list_cardholders() if (h.status or "").upper() == "ACTIVE"]
            self.default_cardholder_id = holders[0].id if holders else None
        return self.default_bin_id, self.default_cardholder_id

    async def funding_wallet(self) -> CryptoWallet | None:
        """The CryptoConnect wallet fund_account draws on: INTERLACE_CRYPTO_WALLET_ID, else the account's master
        wallet; None when the account has none (a configured id that Interlace does not know raises)."""
        if self.settings.crypto_wallet_id:
            return await self.api.get_crypto_wallet(self.settings.crypto_wallet_id)
        try:
            return await self.api.default_crypto_wallet()
        except NotFoundError:
            return None

    async def notify_approval(self, record: RequestRecord) -> None:
        """POST a JSON notice for a new pending approval to INTERLACE_APPROVAL_NOTIFY_URL (best effort)."""
        self.metrics.approval_event(agent=record.key.agent, event="requested")
        url = self.settings.approval_notify_url
        if not url or record.approval is None:
            return
        notice = approval_notice(record.approval, self.approval_url(record.approval.id))
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                await http.post(url, json=notice)
        except httpx.HTTPError as exc:
            logger.warning("approval notice to INTERLACE_APPROVAL_NOTIFY_URL failed: %s", type(exc).__name__)

    async def notify_operators(self, notice: dict[str, Any]) -> bool:
        """POST a JSON notice (``{"event": ..., ...}``) to INTERLACE_APPROVAL_NOTIFY_URL, best effort."""
        url = self.settings.approval_notify_url
        if not url:
            return False
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                response = await http.post(url, json=notice)
        except httpx.HTTPError as exc:
            logger.warning(
                "%s notice to INTERLACE_APPROVAL_NOTIFY_URL failed: %s", notice.get("event"), type(exc).__name__
            )
            return False
        return response.status_code < 300

    async def record(self, *, required: bool = False, **fields: Any) -> bool:
        """Append one audit record (scoped to this upstream) through the store's writer. ``required``: raise
        AuditWriteError on failure (money tools fail closed); otherwise log loudly and go on."""
        try:
            await self.store.write(self.audit.append_in, scope=self.scope, **fields)
            return True
        except AuditWriteError:
            if required:
                raise
            logger.critical("audit record could not be written: %s", fields.get("event"))
            return False

    def close(self) -> None:
        """Close the ledger and the audit log (the client is closed by :meth:`open`'s exit)."""
        self.ledger.close()
        self.audit.close()
