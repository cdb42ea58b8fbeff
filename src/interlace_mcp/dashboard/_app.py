"""The operator dashboard: routes, sessions, CSRF, and the data each page shows.

Security model (threats I1, I2, I5):

- **Who.** An operator token (``interlace-mcp operators token NAME``; only its sha256 is stored, in
  ``operator_tokens``) is pasted once on the login page. Agent tokens live in another table and never
  match, so no agent can open the dashboard. Revoking an operator's tokens ends their sessions on the
  next request (every request re-checks the token behind the session). Wrong tokens are throttled
  per client address (:class:`LoginThrottle`: 429 after ten in five minutes), the right one never is.
- **Sessions.** A random 256-bit id in a cookie (``HttpOnly; SameSite=Strict; Path=/dashboard``, plus
  ``Secure`` when served over https); the server keeps a map from the id's sha256 to the session, per
  process (a restart signs everyone out). Sessions end after 30 minutes idle or 12 hours.
- **CSRF.** Every state-changing POST carries the session's CSRF token in a hidden field, compared in
  constant time; a POST without a valid session or token is 403. Cross-site POSTs are refused by
  ``Origin`` / ``Sec-Fetch-Site`` as well, and SameSite=Strict keeps the cookie off them anyway.
- **Where.** The ``Host`` header must be one of the server's allowed hosts (loopback unless
  ``INTERLACE_ALLOWED_HOSTS``), as for ``/mcp``: DNS rebinding gets 421.
- **What.** Pages are server-rendered and every value is HTML-escaped; upstream text is sanitized
  first. A strict Content-Security-Policy (per-response nonce, nothing external) and ``frame-ancestors
  'none'`` back this up. Card numbers are fetched for one page only: a one-time reveal link an agent got
  under policy ``reveal = "human"`` (``/dashboard/reveal/<token>``: a signed-in operator confirms with a
  CSRF-checked POST, the link is used up, the number is fetched live and shown once, never cached or
  logged, the access audited with the operator's name). Everywhere else: the masked card (last four).
- **Actions** go through the same code as the CLI: :func:`decide_approval` and :func:`set_agent_frozen`,
  audited with the operator's name.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import anyio.to_thread
import httpx
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from interlace_mcp.app import REVEAL_PATH, Runtime, build_runtime, decide_approval, open_runtime, set_agent_frozen
from interlace_mcp.audit import AuditRecord
from interlace_mcp.client import InterlaceError, NotFoundError
from interlace_mcp.config import Settings
from interlace_mcp.dashboard import _views as views
from interlace_mcp.money import format_amount
from interlace_mcp.operations import card_result, clean_text, transaction_info
from interlace_mcp.policy import AGENT_NAME_RULE, Approval, approvals, day_figures, is_agent_name, reveals, token_digest

__all__ = ["COOKIE", "OPERATOR_TOKEN_PREFIX", "Dashboard", "LoginThrottle", "build_dashboard_app"]

logger = logging.getLogger("interlace_mcp.dashboard")

COOKIE = "interlace_dashboard"
OPERATOR_TOKEN_PREFIX = "itl_op_"
IDLE_SECONDS = 30 * 60
MAX_AGE_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
MAX_FORM_BYTES = 8 * 1024
#: Wrong tokens allowed per client address per LOGIN_WINDOW seconds before further wrong ones get 429
#: (tokens are 256-bit: this only keeps a flood down). The right token is never throttled.
MAX_LOGIN_FAILURES = 10
LOGIN_WINDOW = 300.0
#: Addresses remembered by the throttle; the one whose last failure is oldest is forgotten first.
MAX_TRACKED_ADDRESSES = 10_000
CHART_DAYS = 30
CARD_TRANSACTIONS = 10
AUDIT_RECORDS = 25

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Session:
    operator: str
    digest: str  # sha256 of the operator token behind it: re-checked on every request
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)


class LoginThrottle:
    """Failed sign-ins per client address, in bounded memory.

    After :data:`MAX_LOGIN_FAILURES` wrong tokens within :data:`LOGIN_WINDOW` seconds, further wrong tokens
    from that address are answered 429 (with ``Retry-After``) until the window has passed since the oldest
    of its last ten failures; throttled attempts count as failures, so a steady flood stays throttled. A
    right token is checked and accepted whatever the address's count: operators behind the same address
    (a proxy, an office NAT) are never locked out by someone else's flood. At most ``max_addresses`` are
    tracked, ten timestamps each.
    """

    def __init__(self, max_addresses: int = MAX_TRACKED_ADDRESSES) -> None:
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._max = max_addresses

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str, now: float) -> int:
        """Whole seconds until a wrong token from ``address`` is answered 401 again (0: not throttled)."""
        times = self._failures.get(address)
        if times is None:
            return 0
        while times and now - times[0] >= LOGIN_WINDOW:
            times.popleft()
        if not times:
            del self._failures[address]
            return 0
        if len(times) < MAX_LOGIN_FAILURES:
            return 0
        return max(1, math.ceil(times[0] + LOGIN_WINDOW - now))

    def failed(self, address: str, now: float) -> None:
        times = self._failures.get(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=MAX_LOGIN_FAILURES)
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)


def _sid_key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


def _matches(value: str, patterns: Sequence[str]) -> bool:
    """Exact, or ``base:*`` for any port (the SDK's DNS-rebinding rules)."""
    for pattern in patterns:
        if value == pattern or (pattern.endswith(":*") and value.startswith(pattern[:-2] + ":")):
            return True
    return False


class Dashboard:
    """The dashboard's routes over one runtime. ``routes()`` lists (path, methods, endpoint)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        security: TransportSecuritySettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.security = security
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self.throttle = LoginThrottle()

    def routes(self) -> list[tuple[str, list[str], Endpoint]]:
        return [
            ("/dashboard", ["GET"], self._page(self._overview)),
            ("/dashboard/login", ["GET", "POST"], self._login),
            ("/dashboard/logout", ["POST"], self._action(self._logout)),
            ("/dashboard/approvals", ["GET"], self._page(self._approvals)),
            ("/dashboard/approvals/live", ["GET"], self._fragment(self._approvals_live)),
            ("/dashboard/approvals/{approval_id}", ["GET"], self._page(self._approval, come_back=True)),
            ("/dashboard/approvals/{approval_id}/{decision}", ["POST"], self._action(self._decide)),
            ("/dashboard/agents/{agent}", ["GET"], self._page(self._agent)),
            ("/dashboard/agents/{agent}/{switch}", ["POST"], self._action(self._kill_switch)),
            ("/dashboard/api/pending", ["GET"], self._fragment(self._pending_json)),
            (REVEAL_PATH + "{token}", ["GET", "POST"], self._reveal),
        ]

    def starlette_routes(self) -> list[Route]:
        return [Route(path, endpoint=endpoint, methods=methods) for path, methods, endpoint in self.routes()]

    # ---- guards --------------------------------------------------------------------------------

    def _host_ok(self, request: Request) -> bool:
        if not self.security.enable_dns_rebinding_protection:
            return True
        return _matches(request.headers.get("host", ""), self.security.allowed_hosts)

    def _cross_site(self, request: Request) -> bool:
        """A POST from another site (the browser says so): refused before anything else."""
        if request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
            return True
        origin = request.headers.get("origin")
        if not origin:
            return False
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return origin != own and not _matches(origin, self.security.allowed_origins)

    async def _session(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid or len(sid) > 128:
            return None
        key = _sid_key(sid)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS:
            self._sessions.pop(key, None)
            return None
        owner = await anyio.to_thread.run_sync(self.runtime.ledger.operator_for_token, session.digest)
        if owner != session.operator:  # the operator's token was revoked: the session goes with it
            self._sessions.pop(key, None)
            return None
        session.seen = now
        return session

    def _secure(self, request: Request) -> bool:
        public = self.runtime.settings.public_url or ""
        return request.url.scheme == "https" or public.startswith("https://")

    def _finish(self, response: Response, nonce: str | None = None) -> Response:
        style = f"'nonce-{nonce}'" if nonce else "'none'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src {style}; script-src {style}; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make forms send Origin: null
        response.headers["Cache-Control"] = "no-store"
        return response

    def _misdirected(self) -> Response:
        return self._finish(Response("Invalid Host header", status_code=421, media_type="text/plain"))

    def _page(
        self, handler: Callable[[Request, Session, str], Awaitable[Response]], *, come_back: bool = False
    ) -> Endpoint:
        """GET pages: no session -> redirect to the login page (``come_back``: and back here after it, as for an
        approval page a client opened for its user)."""

        async def endpoint(request: Request) -> Response:
            if not self._host_ok(request):
                return self._misdirected()
            session = await self._session(request)
            if session is None:
                login = "/dashboard/login"
                if come_back and _safe_next(request.url.path):
                    login += "?" + urlencode({"next": request.url.path})
                return self._finish(RedirectResponse(login, status_code=303))
            nonce = secrets.token_urlsafe(16)
            return self._finish(await handler(request, session, nonce), nonce)

        return endpoint

    def _fragment(self, handler: Callable[[Request, Session], Awaitable[Response]]) -> Endpoint:
        """Polled fragments and JSON: no session -> 401 (the page's script then reloads to the login)."""

        async def endpoint(request: Request) -> Response:
            if not self._host_ok(request):
                return self._misdirected()
            session = await self._session(request)
            if session is None:
                return self._finish(JSONResponse({"error": "not signed in"}, status_code=401))
            return self._finish(await handler(request, session))

        return endpoint

    def _action(self, handler: Callable[[Request, Session, dict[str, str]], Awaitable[Response]]) -> Endpoint:
        """State-changing POSTs: same-site only, a live session and its CSRF token, else 403."""

        async def endpoint(request: Request) -> Response:
            if not self._host_ok(request):
                return self._misdirected()
            if self._cross_site(request):
                return self._forbidden("cross-site request refused")
            session = await self._session(request)
            if session is None:
                return self._forbidden("not signed in")
            form = await _form(request)
            if form is None:
                return self._forbidden("malformed form")
            sent = form.get("csrf", "")
            if not hmac.compare_digest(sent.encode("utf-8", "replace"), session.csrf.encode("ascii")):
                logger.warning(
                    "dashboard: %s POST %s with a missing or wrong CSRF token", session.operator, request.url
                )
                return self._forbidden("missing or wrong CSRF token")
            return self._finish(await handler(request, session, form))

        return endpoint

    def _forbidden(self, why: str) -> Response:
        return self._finish(Response(f"403 Forbidden: {why}", status_code=403, media_type="text/plain"))

    def _chrome(self, session: Session, nonce: str, pending: int) -> views.Chrome:
        flashes, session.flashes = list(session.flashes), []
        return views.Chrome(
            operator=session.operator,
            csrf=session.csrf,
            nonce=nonce,
            pending=pending,
            now=self._clock(),
            sandbox=self.runtime.sandbox,
            flashes=flashes,
        )

    # ---- login / logout ------------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._misdirected()
        nonce = secrets.token_urlsafe(16)
        if request.method != "POST":
            after = _safe_next(request.query_params.get("next"))
            if await self._session(request) is not None:
                return self._finish(RedirectResponse(after or "/dashboard", status_code=303))
            return self._finish(HTMLResponse(views.login_page(nonce=nonce, next_path=after)), nonce)
        if self._cross_site(request):
            return self._forbidden("cross-site request refused")
        client = request.client.host if request.client else "-"
        form = await _form(request)
        after = _safe_next((form or {}).get("next"))
        token = (form or {}).get("token", "").strip()
        digest = token_digest(token)
        operator = None
        if token and len(token) <= 256:
            # Checked before the throttle: the right token always signs in, whatever a flood did.
            operator = await anyio.to_thread.run_sync(self.runtime.ledger.operator_for_token, digest)
        now = self._clock()
        if operator is None:
            wait = self.throttle.retry_after(client, now)
            self.throttle.failed(client, now)
            if wait:
                page = views.login_page(
                    nonce=nonce, error="Too many failed sign-ins: wait a few minutes.", next_path=after
                )
                throttled = HTMLResponse(page, status_code=429, headers={"Retry-After": str(wait)})
                return self._finish(throttled, nonce)
            logger.warning("dashboard: failed sign-in from %s", client)
            if self.throttle.retry_after(client, now):
                logger.warning("dashboard: further wrong tokens from %s get 429 for a while", client)
            page = views.login_page(
                nonce=nonce,
                error="That is not a valid operator token (agent tokens do not open the dashboard).",
                next_path=after,
            )
            return self._finish(HTMLResponse(page, status_code=401), nonce)
        sid = secrets.token_urlsafe(32)  # a new id at every sign-in (no fixation)
        self._store(_sid_key(sid), Session(operator, digest, secrets.token_urlsafe(32), now, now))
        await self.runtime.record(agent="-", tool="dashboard", event="operator_login", actor=operator)
        response = RedirectResponse(after or "/dashboard", status_code=303)
        response.set_cookie(
            COOKIE,
            sid,
            max_age=MAX_AGE_SECONDS,
            path="/dashboard",
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return self._finish(response)

    def _store(self, key: str, session: Session) -> None:
        now = self._clock()
        stale = [
            k for k, s in self._sessions.items() if now - s.seen > IDLE_SECONDS or now - s.created > MAX_AGE_SECONDS
        ]
        for key in stale:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:  # drop the least recently used
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]
        self._sessions[key] = session

    async def _logout(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        sid = request.cookies.get(COOKIE, "")
        self._sessions.pop(_sid_key(sid), None)
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(
            COOKIE, path="/dashboard", secure=self._secure(request), httponly=True, samesite="strict"
        )
        return response

    # ---- data ----------------------------------------------------------------------------------

    async def _ledger(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def _agents(self) -> list[str]:
        ledger = self.runtime.ledger
        known = await self._ledger(ledger.known_agents)
        tokens = await self._ledger(ledger.token_agents)
        policy = self.runtime.policies.current()
        return sorted({*known, *tokens, *policy.agents})

    async def _pending(self) -> list[Approval]:
        items: list[Approval] = await self._ledger(self.runtime.ledger.list_approvals, status="pending")
        return items

    async def _agent_row(self, name: str, pending: Sequence[Approval]) -> views.AgentRow:
        rt = self.runtime
        effective = rt.policies.for_agent(name)
        windows = await self._ledger(rt.ledger.window_status, rt.scope, name, effective)
        frozen = await self._ledger(rt.ledger.agent_frozen, name)
        cards = await self._ledger(rt.ledger.agent_cards, rt.scope, name)
        return views.AgentRow(
            name=name,
            currency=effective.currency,
            windows=windows,
            frozen=frozen,
            cards=len(cards),
            pending=sum(1 for a in pending if a.agent == name),
        )

    # ---- pages ---------------------------------------------------------------------------------

    async def _overview(self, request: Request, session: Session, nonce: str) -> Response:
        pending = await self._pending()
        rows = [await self._agent_row(name, pending) for name in await self._agents()]
        chart = await self._ledger(self.runtime.ledger.daily_spend, self.runtime.scope, CHART_DAYS)
        currency = self.runtime.policies.current().defaults.currency
        chrome = self._chrome(session, nonce, len(pending))
        balances = await self._balances()
        return HTMLResponse(views.overview_page(rows, chart, currency, chrome=chrome, balances=balances))

    async def _balances(self) -> views.BalancesView:
        """The Infinity balance and the funding wallet, read from Interlace now; a failure is a note, not an error."""
        rt = self.runtime
        problems: list[str] = []
        infinity = None
        try:
            balance = await rt.api.infinity_balance()
            infinity = (balance.available, balance.currency or "USD")
        except InterlaceError as exc:
            problems.append(f"The Infinity balance could not be read from Interlace: {exc}")
        try:
            wallet = await rt.funding_wallet()
        except InterlaceError as exc:
            problems.append(f"The CryptoConnect wallet could not be read from Interlace: {exc}")
            return views.BalancesView(infinity, problems=problems)
        if wallet is None:
            problems.append("This account has no CryptoConnect wallet (funding from stablecoins is not set up).")
            return views.BalancesView(infinity, problems=problems)
        held = [(b.currency.upper(), b.available, b.frozen) for b in wallet.balances]
        return views.BalancesView(infinity, wallet.id, held, problems)

    def _fragment_html(self, session: Session, pending: Sequence[Approval]) -> str:
        return views.approvals_fragment(pending, csrf=session.csrf, now=self._clock(), scope=self.runtime.scope)

    async def _approvals(self, request: Request, session: Session, nonce: str) -> Response:
        pending = await self._pending()
        everything: list[Approval] = await self._ledger(self.runtime.ledger.list_approvals, status=None)
        recent = sorted(
            (a for a in everything if a.status != "pending"),
            key=lambda a: a.decided_at or a.expires_at,
            reverse=True,
        )[:20]
        page = views.approvals_page(
            self._fragment_html(session, pending), recent, chrome=self._chrome(session, nonce, len(pending))
        )
        return HTMLResponse(page)

    async def _approvals_live(self, request: Request, session: Session) -> Response:
        return HTMLResponse(self._fragment_html(session, await self._pending()))

    async def _approval(self, request: Request, session: Session, nonce: str) -> Response:
        """One approval with everything a human needs to decide on it: the page a client opens for its user."""
        rt = self.runtime
        approval_id = request.path_params["approval_id"]
        pending = await self._pending()
        chrome = self._chrome(session, nonce, len(pending))
        if await rt.store.read(approvals.any_due):
            await rt.store.write(approvals.expire_due)  # never show an approval past its expiry as pending
        approval: Approval | None = await rt.store.read(approvals.get, approval_id)
        if approval is None:
            page = views.error_page("Not found", f"No approval {approval_id!r}.", nonce=nonce, chrome=chrome)
            return HTMLResponse(page, status_code=404)
        policy = rt.policies.for_agent(approval.agent)
        day = await rt.store.read(
            day_figures, approval.scope, approval.agent, policy, approval.currency, rt.store.now()
        )
        return HTMLResponse(
            views.approval_page(approval, day, other_upstream=approval.scope != rt.scope, chrome=chrome)
        )

    async def _pending_json(self, request: Request, session: Session) -> Response:
        pending = await self._pending()
        return JSONResponse({"count": len(pending), "approvals": [a.id for a in pending]})

    async def _agent(self, request: Request, session: Session, nonce: str) -> Response:
        name = request.path_params["agent"]
        pending = await self._pending()
        chrome = self._chrome(session, nonce, len(pending))
        if not is_agent_name(name):
            page = views.error_page("Not an agent name", f"{name!r}: {AGENT_NAME_RULE}.", nonce=nonce, chrome=chrome)
            return HTMLResponse(page, status_code=400)
        if name not in await self._agents():
            page = views.error_page("Not found", f"No agent named {name!r}.", nonce=nonce, chrome=chrome)
            return HTMLResponse(page, status_code=404)
        row = await self._agent_row(name, pending)
        cards = await self._card_views(name)
        audit: list[AuditRecord] = await self._ledger(self.runtime.audit.tail, AUDIT_RECORDS, agent=name)
        mine = [a for a in pending if a.agent == name]
        return HTMLResponse(views.agent_page(row, cards, audit, mine, chrome=chrome))

    async def _card_views(self, agent: str) -> list[views.CardView]:
        """The agent's live cards from Interlace, masked (never the details endpoint), with transactions."""
        rt = self.runtime
        records = await self._ledger(rt.ledger.agent_cards, rt.scope, agent)
        out: list[views.CardView] = []
        for record in records:
            try:
                card = await rt.api.get_card(record.card_id)
                summary = await rt.api.get_card_summary(record.card_id)
            except NotFoundError:
                out.append(views.CardView(record.card_id, None, error="Interlace no longer knows this card"))
                continue
            except (InterlaceError, RuntimeError) as exc:
                out.append(views.CardView(record.card_id, None, error=_upstream_text(exc)))
                continue
            masked = card_result(card, sandbox=rt.sandbox, summary=summary, record=record)
            try:
                page = await rt.api.list_card_transactions(card_id=record.card_id, limit=CARD_TRANSACTIONS)
                txns = [transaction_info(t) for t in page.items]
                out.append(views.CardView(record.card_id, masked, txns))
            except (InterlaceError, RuntimeError) as exc:
                out.append(views.CardView(record.card_id, masked, error=f"transactions: {_upstream_text(exc)}"))
        return out

    # ---- reveal to a human (policy reveal = "human") ------------------------------------------------

    async def _reveal(self, request: Request) -> Response:
        """GET: the confirmation page (sign-in first); POST: use the link once and show the card's details."""
        if not self._host_ok(request):
            return self._misdirected()
        token = request.path_params["token"]
        path = REVEAL_PATH + token
        if not _REVEAL_TOKEN.fullmatch(token):
            return self._finish(Response("not found", status_code=404, media_type="text/plain"))
        if request.method == "POST" and self._cross_site(request):
            return self._forbidden("cross-site request refused")
        session = await self._session(request)
        if session is None:
            if request.method == "POST":
                return self._forbidden("not signed in")
            return self._finish(RedirectResponse("/dashboard/login?next=" + quote(path, safe="/"), status_code=303))
        nonce = secrets.token_urlsafe(16)
        chrome = self._chrome(session, nonce, len(await self._pending()))
        rt = self.runtime
        digest = token_digest(token)
        if request.method != "POST":
            link = await rt.store.read(reveals.peek_link, digest)
            if link is None or link.scope != rt.scope or not link.usable(rt.store.now()):
                return self._finish(self._reveal_gone(chrome), nonce)
            card = None
            try:
                record = await self._ledger(rt.ledger.owned_card, rt.scope, link.agent, link.card_id)
                card = card_result(await rt.api.get_card(link.card_id), sandbox=rt.sandbox, record=record)
            except (InterlaceError, RuntimeError):
                pass  # the confirmation page works without it
            page = views.reveal_confirm_page(
                agent=link.agent, card=card, card_id=link.card_id, expires_at=link.expires_at, action=path,
                chrome=chrome,
            )  # fmt: skip
            return self._finish(HTMLResponse(page), nonce)
        form = await _form(request)
        sent = (form or {}).get("csrf", "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), session.csrf.encode("ascii")):
            return self._forbidden("missing or wrong CSRF token")
        link = await rt.store.write(reveals.take_link, digest, by=session.operator)
        if link is None or link.scope != rt.scope:
            await rt.record(
                agent="-", tool="dashboard", event="card_data_access", actor=session.operator,
                arguments={"mode": "human"}, outcome="refused:link_used_or_expired",
            )  # fmt: skip
            return self._finish(self._reveal_gone(chrome), nonce)
        arguments = {"card_id": link.card_id, "mode": "human"}
        try:
            details = await rt.api.get_card_details(link.card_id)
        except (InterlaceError, RuntimeError) as exc:
            await rt.record(
                agent=link.agent, tool="dashboard", event="card_data_access", actor=session.operator,
                arguments=arguments, outcome="failed:upstream",
            )  # fmt: skip
            page = views.error_page("Not available", f"Interlace did not give the card: {_upstream_text(exc)}",
                                    nonce=nonce, chrome=chrome)  # fmt: skip
            return self._finish(HTMLResponse(page, status_code=502), nonce)
        # Audited before it is shown (no record, no card data); fetched live, in memory for this response only.
        await rt.record(
            required=True, agent=link.agent, tool="dashboard", event="card_data_access", actor=session.operator,
            arguments=arguments, outcome="revealed_to_human",
        )  # fmt: skip
        number, cvv = details.reveal()
        logger.info("dashboard: card %s of %s shown to operator %s", link.card_id, link.agent, session.operator)
        page = views.reveal_page(
            agent=link.agent, last_four=details.card_last_four, number=number, cvv=cvv,
            expiry=details.expiry_date, chrome=chrome,
        )  # fmt: skip
        return self._finish(HTMLResponse(page), nonce)

    def _reveal_gone(self, chrome: views.Chrome) -> Response:
        page = views.error_page(
            "Link used or expired",
            "This reveal link was used already, has expired (links last 5 minutes) or never existed. Ask the agent"
            " for a new one if it still needs it.",
            nonce=chrome.nonce,
            chrome=chrome,
        )
        return HTMLResponse(page, status_code=410)

    # ---- actions -------------------------------------------------------------------------------

    async def _decide(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        approval_id = request.path_params["approval_id"]
        decision = request.path_params["decision"]
        if decision not in ("approve", "deny"):
            return Response("not found", status_code=404, media_type="text/plain")
        reason = clean_text(form.get("reason", ""), 200) or None
        approve = decision == "approve"
        try:
            decided = await decide_approval(
                self.runtime, approval_id, approve=approve, by=session.operator, reason=reason
            )
        except (KeyError, ValueError) as exc:
            session.flashes.append(("error", str(exc.args[0]) if exc.args else "cannot decide"))
        except Exception:
            logger.exception("dashboard: deciding %s failed", approval_id)
            session.flashes.append(("error", f"deciding {approval_id} failed: see the server log"))
        else:
            verb = "approved" if approve else "denied"
            text = f"{decided.id} {verb}: {decided.agent} {decided.tool} {format_amount(decided.amount)}"
            text += f" {decided.currency}"
            text += (
                f"; the agent's waiting call, or its retry of request {decided.request_id}, runs it once, until"
                f" {decided.expires_at_iso}"
                if approve
                else "; the reservation was released"
            )
            session.flashes.append(("ok", text))
        if (
            form.get("back") == "page"
            and approval_id.startswith("apr_")
            and _safe_next(f"/dashboard/approvals/{approval_id}")
        ):
            return RedirectResponse(views.BASE + "/approvals/" + quote(approval_id, safe=""), status_code=303)
        return RedirectResponse("/dashboard/approvals", status_code=303)

    async def _kill_switch(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        agent = request.path_params["agent"]
        switch = request.path_params["switch"]
        if not is_agent_name(agent):
            return Response(f"{agent!r}: {AGENT_NAME_RULE}", status_code=400, media_type="text/plain")
        if switch not in ("freeze", "unfreeze") or agent not in await self._agents():
            return Response("not found", status_code=404, media_type="text/plain")
        reason = clean_text(form.get("reason", ""), 200) or None
        freeze = switch == "freeze"
        report = await set_agent_frozen(self.runtime, agent, freeze=freeze, by=session.operator, reason=reason)
        action = "frozen" if freeze else "unfrozen"
        done = report.cards - len(report.failures)
        session.flashes.append(
            ("ok", f"agent {agent} {action}: {done} of {report.cards} card(s) {action} at Interlace")
        )
        for failure in report.failures:
            session.flashes.append(("error", failure))
        return RedirectResponse(views.BASE + "/agents/" + quote(agent, safe=""), status_code=303)


_NEXT = re.compile(r"/dashboard(/[A-Za-z0-9_-]{1,100}){0,4}")
_REVEAL_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}", re.ASCII)


def _safe_next(value: str | None) -> str | None:
    """Where to go after signing in: only a dashboard path of plain segments (never another site)."""
    return value if value is not None and _NEXT.fullmatch(value) else None


def _upstream_text(exc: Exception) -> str:
    return clean_text(str(exc), 200) or type(exc).__name__


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form (first value of each field), or None when it is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in parsed.items() if values}


def build_dashboard_app(
    settings: Settings,
    *,
    security: TransportSecuritySettings,
    runtime: Runtime | None = None,
    sandbox_app: Starlette | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    backoff: bool = True,
) -> Starlette:
    """``interlace-mcp dashboard``: only the dashboard, over the same database as a stdio server.

    Its lifespan opens the Interlace client and discovers the account, as other CLI commands do.
    """
    runtime = runtime or build_runtime(
        settings, sandbox_app=sandbox_app, upstream_transport=upstream_transport, backoff=backoff
    )
    dashboard = Dashboard(runtime, security=security)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(runtime):
            yield

    async def root(request: Request) -> Response:
        return RedirectResponse("/dashboard", status_code=307)

    app = Starlette(routes=[Route("/", root, methods=["GET"]), *dashboard.starlette_routes()], lifespan=lifespan)
    app.state.interlace_runtime = runtime
    app.state.interlace_dashboard = dashboard
    return app
