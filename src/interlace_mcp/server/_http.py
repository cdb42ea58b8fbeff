"""Remote transports: streamable HTTP at ``/mcp`` (both protocol eras) and legacy SSE at ``/sse``.

Identity comes only from a verified bearer token (the SDK's ``TokenVerifier``): per-agent static
tokens (``interlace-mcp agents token NAME``, stored as sha256; or ``token_sha256`` in the policy file)
or JWTs from the team's identity provider (``sub`` -> agent). A missing or bad token gets 401 with
``WWW-Authenticate: Bearer``. ``--auth none`` is accepted only on loopback; the agent is then
``INTERLACE_AGENT_ID``. The client's token is never forwarded to Interlace (the Interlace client has
its own OAuth credentials and no access to request headers).

DNS-rebinding protection stays on: loopback hosts and origins are allowed; binding anywhere else
requires ``INTERLACE_ALLOWED_HOSTS`` (and ``INTERLACE_ALLOWED_ORIGINS`` for browsers).

The operator dashboard (``interlace_mcp.dashboard``) is served at ``/dashboard`` beside them, behind its
own operator sign-in (never an agent's bearer token).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import httpx
import jwt
from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from interlace_mcp import __version__
from interlace_mcp._logging import configure_logging
from interlace_mcp.app import Runtime, build_runtime, open_runtime
from interlace_mcp.config import ConfigError, Settings
from interlace_mcp.dashboard import Dashboard
from interlace_mcp.policy import AGENT_NAME_RULE, is_agent_name, token_digest, tokens
from interlace_mcp.server._build import build_server, drop_sandbox_tools
from interlace_mcp.server._webhooks import webhook_handler

__all__ = [
    "AgentTokenVerifier",
    "AuthMode",
    "JwtVerifier",
    "WorkerOptions",
    "build_http_app",
    "is_loopback",
    "transport_security",
    "worker_app",
]

logger = logging.getLogger("interlace_mcp.server")

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AuthMode = Literal["token", "jwt", "none"]


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


class AgentTokenVerifier(TokenVerifier):
    """Static per-agent bearer tokens: sha256 looked up in the database (revocable live) and the policy file."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = token_digest(token)
        agent = await self.runtime.store.read(tokens.owner_of_token, "agent", digest)
        if agent is None:
            agent = self.runtime.policies.current().agent_for_token_hash(digest)
        if agent is None:
            return None
        if not is_agent_name(agent):  # minted before the rule: the dashboard and CLI could not manage it
            logger.warning("bearer token refused: its agent %r breaks the rule (%s)", agent[:80], AGENT_NAME_RULE)
            return None
        # subject as well as client_id: the SDK binds sessions and request state to the principal.
        return AccessToken(token=token, client_id=agent, subject=agent, scopes=[])


class JwtVerifier(TokenVerifier):
    """JWTs from an identity provider: signature (JWKS URL or a public key), issuer, audience, expiry; sub -> agent."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        public_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not jwks_url and not public_key:
            raise ConfigError("--auth jwt needs INTERLACE_JWT_JWKS_URL or INTERLACE_JWT_PUBLIC_KEY_FILE")
        self.issuer, self.audience = issuer, audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._key = public_key
        self._clock = clock

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            if self._jwks is not None:
                key: Any = (await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)).key
            else:
                key = self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError):
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_agent_name(subject):
            logger.warning("JWT refused: its sub %r is not an agent name (%s)", str(subject)[:80], AGENT_NAME_RULE)
            return None
        scopes = claims.get("scope", "")
        return AccessToken(
            token=token,
            client_id=subject,
            subject=subject,
            scopes=scopes.split() if isinstance(scopes, str) else [],
            expires_at=int(claims["exp"]),
        )


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings:
    """Loopback by default; anything else only with explicit allowed hosts (DNS-rebinding protection on)."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    extra_hosts = _split(settings.allowed_hosts)
    if not is_loopback(host) and not extra_hosts:
        raise ConfigError(
            f"--host {host} is beyond loopback: set INTERLACE_ALLOWED_HOSTS (e.g. mcp.example.com:443) and, "
            "for browsers, INTERLACE_ALLOWED_ORIGINS, so DNS-rebinding protection knows which names are yours"
        )
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + extra_hosts,
        allowed_origins=origins + _split(settings.allowed_origins),
    )


def _auth(settings: Settings, runtime: Runtime, mode: AuthMode) -> tuple[TokenVerifier | None, AuthSettings | None]:
    if mode == "none":
        return None, None
    if mode == "token":
        # No authorization server: the issuer URL is required by AuthSettings but never served.
        return AgentTokenVerifier(runtime), AuthSettings(
            issuer_url=AnyHttpUrl("https://unused.invalid"), resource_server_url=None
        )
    if not settings.jwt_issuer or not settings.jwt_audience:
        raise ConfigError("--auth jwt needs INTERLACE_JWT_ISSUER and INTERLACE_JWT_AUDIENCE")
    key = None
    if settings.jwt_public_key_file is not None:
        key = Path(settings.jwt_public_key_file).read_text(encoding="utf-8")
    verifier = JwtVerifier(
        issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwt_jwks_url, public_key=key
    )
    resource = f"{settings.public_url.rstrip('/')}/mcp" if settings.public_url else None
    return verifier, AuthSettings(
        issuer_url=AnyHttpUrl(settings.jwt_issuer),
        resource_server_url=AnyHttpUrl(resource) if resource else None,
        # The verifier checks `aud` itself (INTERLACE_JWT_AUDIENCE).
        validate_token_resource=False,
    )


def build_http_app(
    settings: Settings,
    *,
    transport: Literal["http", "sse"] = "http",
    auth: AuthMode = "token",
    host: str = "127.0.0.1",
    runtime: Runtime | None = None,
    sandbox_app: Starlette | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    backoff: bool = True,
    with_dashboard: bool = True,
) -> Starlette:
    """The ASGI app for ``serve --transport http|sse``; its lifespan opens the Interlace client once."""
    if auth == "none" and not is_loopback(host):
        raise ConfigError("--auth none is only allowed when bound to loopback (127.0.0.1, localhost, ::1)")
    security = transport_security(settings, host)
    runtime = runtime or build_runtime(
        settings, sandbox_app=sandbox_app, upstream_transport=upstream_transport, backoff=backoff
    )
    verifier, auth_settings = _auth(settings, runtime, auth)
    server = build_server(runtime=runtime, token_verifier=verifier, auth=auth_settings)
    _add_health(server, runtime)
    # Not behind bearer auth: Interlace signs each notification (HMAC) instead.
    server.custom_route("/webhooks/interlace", methods=["POST"])(webhook_handler(runtime))
    # Not behind bearer auth either: operators sign in with their own tokens (sessions + CSRF). Its sessions
    # live in one process, so `serve --workers N` leaves it to `interlace-mcp dashboard`.
    dashboard = Dashboard(runtime, security=security) if with_dashboard else None
    for path, methods, endpoint in dashboard.routes() if dashboard is not None else []:
        server.custom_route(path, methods=methods)(endpoint)
    if transport == "http":
        app = server.streamable_http_app(transport_security=security)
    else:
        app = server.sse_app(transport_security=security, host=host)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(starlette: Starlette) -> AsyncIterator[Any]:
        async with open_runtime(runtime, background=True):
            drop_sandbox_tools(server)  # an upstream that did not prove it is our emulator: no sandbox tools
            async with inner(starlette) as state:
                logger.info("serving %s transport (auth: %s)", transport, auth)
                yield state

    app.router.lifespan_context = lifespan
    app.state.interlace_runtime = runtime
    app.state.mcp_server = server
    app.state.interlace_dashboard = dashboard
    return app


def _add_health(server: MCPServer[Runtime], runtime: Runtime) -> None:
    async def healthz(request: Request) -> Response:
        ready = runtime.client is not None
        return JSONResponse(
            {"status": "ok" if ready else "starting", "version": __version__, "sandbox": runtime.sandbox},
            status_code=200 if ready else 503,
        )

    # Custom routes are never authenticated: /healthz says only whether the upstream client is open.
    server.custom_route("/healthz", methods=["GET"])(healthz)


#: How ``serve --workers N`` tells each worker process what to build (JSON, set by the parent).
WORKER_OPTIONS_ENV = "INTERLACE_SERVE_WORKER_OPTIONS"


@dataclass(frozen=True)
class WorkerOptions:
    """What every ``serve --workers N`` process builds: the same app as a single process would serve."""

    transport: Literal["http", "sse"]
    auth: AuthMode
    host: str
    #: Settings given as flags (they win over env and .env).
    overrides: dict[str, Any] = field(default_factory=dict)

    def export(self) -> str:
        """Hand the options to the workers through the environment; returns the app factory's import path.

        The workers share one key for the SDK's request state (unless INTERLACE_REQUEST_STATE_KEY names
        one), so the second round of a 2026-07-28 call may be answered by any of them.
        """
        os.environ[WORKER_OPTIONS_ENV] = json.dumps(asdict(self))
        if not os.environ.get("INTERLACE_REQUEST_STATE_KEY"):
            os.environ["INTERLACE_REQUEST_STATE_KEY"] = secrets.token_hex(32)
        return "interlace_mcp.server:worker_app"


def worker_app() -> Starlette:
    """The app factory uvicorn calls in each ``serve --workers N`` process: its own runtime, same database."""
    options = WorkerOptions(**json.loads(os.environ[WORKER_OPTIONS_ENV]))
    settings = Settings(**options.overrides)
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    configure_logging(settings.log_level, settings.log_format, secrets=[secret])
    return build_http_app(
        settings, transport=options.transport, auth=options.auth, host=options.host, with_dashboard=False
    )
