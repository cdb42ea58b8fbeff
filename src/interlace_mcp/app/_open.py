"""Building and opening the runtime: the one way server, dashboard and CLI get theirs.

``build_runtime(settings)`` resolves the upstream, opens the ledger (and its store) and the audit log and
loads the policy -- nothing touches the network. ``async with open_runtime(runtime)`` opens the Interlace
client (one per process), decides whether a custom upstream is our emulator (``prove_emulator``), discovers the
accountId, settles unfinished requests (recovery), purges request
records past their retention, and -- for a server -- keeps doing the last two on a timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from interlace_mcp.app._checkout import check_cards, run_checkout
from interlace_mcp.app._proof import emulator_payee, prove_emulator
from interlace_mcp.app._recovery import recover
from interlace_mcp.app._runtime import PolicyStore, RateLimiter, Runtime
from interlace_mcp.app._webhooks import webhook_sink
from interlace_mcp.audit import AuditLog
from interlace_mcp.client import InterlaceClient, InterlaceError
from interlace_mcp.config import Settings, Upstream, resolve_upstream
from interlace_mcp.metrics import Metrics
from interlace_mcp.policy import Ledger, approvals, private_dir, requests, three_ds
from interlace_mcp.sandbox import ACCOUNT_ID, SandboxState, create_sandbox_app

__all__ = [
    "PURGE_INTERVAL_SECONDS",
    "build_runtime",
    "interlace_client",
    "maintain",
    "open_runtime",
    "sandbox_state_path",
]

logger = logging.getLogger("interlace_mcp.app")

#: Request records past their retention are purged at startup and then once a day.
PURGE_INTERVAL_SECONDS = 24 * 3600


def sandbox_state_path(settings: Settings) -> Path:
    """Where the embedded emulator keeps its state (cards survive a restart of the client)."""
    return settings.resolved_state_dir() / "sandbox-state.json"


def build_runtime(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    ledger: Ledger | None = None,
    clock: Callable[[], float] | None = None,
    sandbox_app: Any = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    backoff: bool = True,
) -> Runtime:
    """Settings -> upstream, ledger, audit log and policy (raises ConfigError / PolicyError on bad config).

    ``sandbox_app`` / ``upstream_transport``: how the client reaches the upstream (tests inject the
    emulator); ``backoff=False`` makes retries immediate (tests).
    """
    upstream = upstream or resolve_upstream(settings)
    private_dir(settings.resolved_state_dir())  # 0700 whatever the umask: ledger, anchor, emulator state
    if ledger is None:
        ledger = Ledger.from_url(settings.resolved_database_url(), clock=clock or time.time)
    # A custom base URL starts with production defaults; prove_emulator switches them when it proves itself.
    payee = emulator_payee() if (upstream.emulator or upstream.unproven) else None
    try:
        policies = PolicyStore(settings.policy_file, emulator=upstream.emulator, sandbox_payee=payee)
        audit = AuditLog.from_url(
            settings.resolved_database_url(), clock=clock or time.time, hmac_key=settings.audit_key()
        )
    except BaseException:
        ledger.close()
        raise
    return Runtime(
        settings=settings,
        upstream=upstream,
        ledger=ledger,
        policies=policies,
        rate_limiter=RateLimiter(settings.rate_limit_per_minute),
        audit=audit,
        account_id=settings.account_id or (ACCOUNT_ID if upstream.embedded else ""),
        sandbox_app=sandbox_app,
        upstream_transport=upstream_transport,
        backoff=backoff,
        metrics=Metrics.for_port(settings.metrics_port),
    )


def interlace_client(runtime: Runtime) -> InterlaceClient:
    """The Interlace client for this runtime's upstream; on the embedded emulator, an in-process transport
    to it (its state file in the state dir, so the CLI and a restarted server see the same cards)."""
    settings, upstream = runtime.settings, runtime.upstream
    transport = runtime.upstream_transport
    if transport is None and upstream.embedded:
        if runtime.sandbox_app is None:
            runtime.sandbox_app = create_sandbox_app(state_path=sandbox_state_path(settings))
        transport = httpx.ASGITransport(app=runtime.sandbox_app)
    return InterlaceClient(
        base_url=upstream.base_url,
        client_id=upstream.client_id,
        client_secret=upstream.client_secret,
        account_id=runtime.account_id or None,
        transport=transport,
        timeout=settings.http_timeout_seconds,
        max_retries=settings.max_retries,
        backoff=runtime.backoff,
        metrics=runtime.metrics,
    )


@asynccontextmanager
async def open_runtime(runtime: Runtime, *, discover: bool = True, background: bool = False) -> AsyncIterator[Runtime]:
    """Open the Interlace client (one per process) for the block.

    ``discover``: find the accountId (needed for the ledger scope), settle unfinished requests and purge
    old request records first. ``background``: keep doing the last two on a timer, and run the checkout
    loop -- close purpose-bound cards, enforce merchant categories (servers). On the embedded emulator its
    webhooks reach the server's own intake in-process. A runtime already open (the HTTP app opened it, or
    a concurrent connection did) is shared as it is.
    """
    if runtime.client is not None:
        yield runtime
        return
    if runtime.upstream_transport is None and runtime.upstream.embedded:
        logger.warning(
            "embedded sandbox: no real money moves (emulator state in %s)", sandbox_state_path(runtime.settings)
        )
    async with interlace_client(runtime) as client:
        runtime.client = client
        try:
            await prove_emulator(runtime)  # before anything reads the policy or the sandbox mark
        except BaseException:
            runtime.client = None
            raise
        stop_metrics = _serve_metrics(runtime) if background else None
        emulator = _embedded_emulator(runtime)
        sink = webhook_sink(runtime) if emulator is not None else None
        if emulator is not None and sink is not None:
            emulator.add_webhook_sink(sink)  # its notifications reach our intake without HTTP
        try:
            if discover:
                await _start(runtime, checkout=background)
            async with anyio.create_task_group() as tasks:
                if background and runtime.settings.reconcile_interval_seconds > 0:
                    tasks.start_soon(_maintain_periodically, runtime)
                if background:
                    tasks.start_soon(run_checkout, runtime)
                try:
                    yield runtime
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            if emulator is not None and sink is not None:
                emulator.remove_webhook_sink(sink)
            runtime.client = None
            if stop_metrics is not None:
                await anyio.to_thread.run_sync(stop_metrics)


def _embedded_emulator(runtime: Runtime) -> SandboxState | None:
    """The in-process emulator's state, when the runtime runs on the embedded one (else None)."""
    if not runtime.upstream.embedded or runtime.upstream_transport is not None or runtime.sandbox_app is None:
        return None
    state = getattr(getattr(runtime.sandbox_app, "state", None), "sandbox", None)
    return state if isinstance(state, SandboxState) else None


def _serve_metrics(runtime: Runtime) -> Callable[[], None] | None:
    """INTERLACE_METRICS_PORT: Prometheus text on loopback for this runtime (pending approvals from the database)."""
    port = runtime.settings.metrics_port
    if port is None:
        return None
    ledger = runtime.ledger
    runtime.metrics.count_pending_approvals_with(lambda: len(ledger.list_approvals(status="pending")))
    return runtime.metrics.serve(port)


async def _start(runtime: Runtime, *, checkout: bool = False) -> None:
    """Discover what settings left out (accountId), then settle and purge once."""
    try:
        runtime.account_id = await runtime.api.ensure_account_id()
    except InterlaceError as exc:
        raise RuntimeError(
            f"could not discover the Interlace accountId ({exc}); set INTERLACE_ACCOUNT_ID or check the credentials"
        ) from None
    # BIN and cardholder are discovered on the first issue_card (Runtime.card_product), not here:
    # startup stays fast and does not fail when Interlace is briefly unreachable.
    runtime.default_bin_id = runtime.settings.bin_id
    runtime.default_cardholder_id = runtime.settings.cardholder_id
    await maintain(runtime, checkout=checkout)


async def maintain(runtime: Runtime, *, checkout: bool = False) -> None:
    """One round of upkeep: settle unfinished requests by lookup (no money moves), expire overdue approvals,
    and -- at most once a day by the ledger's clock -- purge request records past their retention (90 days).

    ``checkout`` (servers): also look at every watched card at Interlace -- close purpose-bound cards that are
    due (money returns to the Infinity account, through the runner, once) and freeze cards used at a merchant
    category policy does not allow. CLI commands leave it out (``reconcile`` never moves money)."""
    await recover(runtime, grace=runtime.settings.recovery_grace_seconds)
    if checkout:
        await check_cards(runtime)
    await runtime.store.write(three_ds.purge_codes)
    if await runtime.store.read(approvals.any_due):
        await runtime.store.write(approvals.expire_due)
    now = runtime.store.now()
    if runtime.last_purge is None or now - runtime.last_purge >= PURGE_INTERVAL_SECONDS:
        purged = await runtime.store.write(requests.purge_old_requests)
        runtime.last_purge = now
        if purged:
            logger.info("purged %d request record(s) older than 90 days", purged)


async def _maintain_periodically(runtime: Runtime) -> None:
    while True:
        await anyio.sleep(runtime.settings.reconcile_interval_seconds)
        try:
            await maintain(runtime, checkout=True)
        except Exception:  # the timer must survive any one failure; the next round retries
            logger.exception("periodic recovery failed")
