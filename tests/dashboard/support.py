"""Dashboard test helpers: an HTTP app on the in-process emulator, tokens, a signed-in httpx client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from interlace_mcp.app import Runtime
from interlace_mcp.config import Settings
from interlace_mcp.policy import token_digest
from interlace_mcp.server import build_http_app

OPERATOR_TOKEN = "itl_op_test-operator-token-0123456789"
AGENT_TOKEN = "itl_agent_test-agent-token-0123456789"
POLICY = '[defaults]\nper_transaction = "100.00"\ndaily = "200.00"\napproval_above = "25.00"\n'


def dash_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        **extra,
    )


def make_app(tmp_path: Path, sandbox: Starlette, *, policy: str | None = POLICY, **extra: Any) -> Starlette:
    """The HTTP server app (streamable HTTP + dashboard) with an operator `alice` and an agent `shopper`."""
    if policy is not None:
        path = tmp_path / "policy.toml"
        path.write_text(policy, encoding="utf-8")
        extra["policy_file"] = path
    app = build_http_app(dash_settings(tmp_path, **extra), sandbox_app=sandbox, backoff=False)
    rt = runtime_of(app)
    rt.ledger.add_operator_token("alice", token_digest(OPERATOR_TOKEN))
    rt.ledger.add_token("shopper", token_digest(AGENT_TOKEN))
    return app


def runtime_of(app: Starlette) -> Runtime:
    rt = app.state.interlace_runtime
    assert isinstance(rt, Runtime)
    return rt


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def browser_like(app: Starlette, base_url: str = "http://127.0.0.1:8765") -> httpx.AsyncClient:
    """An httpx client on the app in-process (cookies kept, redirects not followed); one per "browser"."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@asynccontextmanager
async def in_process(app: Starlette, base_url: str = "http://127.0.0.1:8765") -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan running, and a client on it."""
    async with app.router.lifespan_context(app):
        async with browser_like(app, base_url) as http:
            yield http


async def sign_in(http: httpx.AsyncClient, token: str = OPERATOR_TOKEN) -> str:
    """Sign in; return the session's CSRF token."""
    response = await http.post("/dashboard/login", data={"token": token})
    assert response.status_code == 303, response.text
    page = await http.get("/dashboard")
    assert page.status_code == 200
    return csrf_of(page.text)
