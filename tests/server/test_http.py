"""Remote transports: bearer identity, 401s, JWT audience, isolation between agents, host/origin checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from helpers import call, sandbox_of, serving
from interlace_mcp.config import ConfigError, Settings
from interlace_mcp.policy import token_digest
from interlace_mcp.sandbox import create_sandbox_app
from interlace_mcp.server import build_http_app

pytestmark = pytest.mark.anyio
TOKENS = {"alice": "tok-alice-0123456789", "bob": "tok-bob-0123456789"}


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        **extra,
    )


def make_app(
    tmp_path: Path, sandbox: Starlette, transport: str = "http", auth: str = "token", **extra: Any
) -> Starlette:
    app = build_http_app(
        settings(tmp_path, **extra),
        transport=transport,
        auth=auth,
        sandbox_app=sandbox,
        backoff=False,  # type: ignore[arg-type]
    )
    for agent, token in TOKENS.items():
        app.state.interlace_runtime.ledger.add_token(agent, token_digest(token))
    return app


@asynccontextmanager
async def agent_client(base: str, transport: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    if transport == "http":
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
                yield c
    else:
        async with Client(sse_client(f"{base}/sse", headers=headers)) as c:
            yield c


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_both_transports_run_the_flow_as_the_token_agent(tmp_path: Path, transport: str) -> None:
    """The same flow over streamable HTTP and SSE with a bearer header; the token decides the agent."""
    sandbox = create_sandbox_app()
    async with serving(make_app(tmp_path, sandbox, transport)) as base:
        async with agent_client(base, transport, TOKENS["alice"]) as c:
            issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "i"})
            card_id = issued["card"]["card_id"]
            topped = await call(c, "top_up_card", {"card_id": card_id, "amount": "5.00", "request_id": "t"})
            status = await call(c, "get_spend_status", {})
        async with httpx2.AsyncClient() as raw:
            health = await raw.get(f"{base}/healthz")
            anonymous = await raw.post(f"{base}/mcp" if transport == "http" else f"{base}/messages/", json={})
            bad = await raw.get(f"{base}/sse", headers={"Authorization": "Bearer nope"}) if transport == "sse" else None
    assert topped["card"]["balance"] == "15.00"
    assert status["agent"] == "alice"
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    if bad is not None:
        assert bad.status_code == 401


@asynccontextmanager
async def in_process(app: Starlette, token: str | None, **headers: str) -> AsyncIterator[httpx2.AsyncClient]:
    hdrs = dict(headers)
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765", headers=hdrs
        ) as http:
            yield http


async def test_missing_and_unknown_tokens_get_401(tmp_path: Path) -> None:
    """No token or a wrong token: 401 with a Bearer challenge, and the official client cannot start."""
    app = make_app(tmp_path, create_sandbox_app())
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with in_process(app, None) as http:
        missing = await http.post("/mcp", json=body)
        wrong = await http.post("/mcp", json=body, headers={"Authorization": "Bearer wrong"})
        with pytest.raises((MCPError, BaseExceptionGroup)):
            async with Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)):
                pass
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "resource_metadata" not in response.headers["www-authenticate"]  # static tokens: no OAuth metadata


async def test_revocation_takes_effect_without_restart(tmp_path: Path) -> None:
    """A token works, is revoked through the ledger, and the very next request is 401."""
    app = make_app(tmp_path, create_sandbox_app())
    ledger = app.state.interlace_runtime.ledger
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
    async with in_process(app, TOKENS["bob"], **headers) as http:
        before = await http.post("/mcp", json=ping)
        assert ledger.revoke_tokens("bob") == 1
        after = await http.post("/mcp", json=ping)
    assert before.status_code != 401
    assert after.status_code == 401


def _rsa_keys(tmp_path: Path) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "jwt.pub.pem"
    path.write_bytes(pem)
    return key, path


async def test_jwt_mode_maps_sub_to_agent_and_rejects_wrong_audience(tmp_path: Path) -> None:
    """A JWT for our audience works as its `sub`; a wrong audience, issuer or an expired one gets 401."""
    key, pub = _rsa_keys(tmp_path)
    app = make_app(
        tmp_path,
        create_sandbox_app(),
        auth="jwt",
        jwt_issuer="https://idp.example.com",
        jwt_audience="interlace-mcp",
        jwt_public_key_file=pub,
    )

    def token(**claims: Any) -> str:
        base = {"iss": "https://idp.example.com", "aud": "interlace-mcp", "sub": "carol", "exp": int(time.time()) + 300}
        return jwt.encode({**base, **claims}, key, algorithm="RS256")

    ping = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with in_process(app, None, **headers) as http:
        codes = {}
        for name, tok in {
            "wrong_aud": token(aud="someone-else"),
            "wrong_iss": token(iss="https://evil.example.com"),
            "expired": token(exp=int(time.time()) - 10),
            "static_token": TOKENS["alice"],
        }.items():
            codes[name] = (await http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {tok}"})).status_code
        good = token()
        async with Client(
            streamable_http_client(
                "http://127.0.0.1:8765/mcp",
                http_client=httpx2.AsyncClient(
                    transport=httpx2.ASGITransport(app=app),
                    base_url="http://127.0.0.1:8765",
                    headers={"Authorization": f"Bearer {good}"},
                ),
            )
        ) as c:
            status = await call(c, "get_spend_status", {})
    assert codes == {"wrong_aud": 401, "wrong_iss": 401, "expired": 401, "static_token": 401}
    assert status["agent"] == "carol"


async def test_agent_b_cannot_see_or_touch_agent_a_objects(tmp_path: Path) -> None:
    """Every id-taking tool with A's ids answers B "not found" (same text as a random id); nothing changes."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    async with app.router.lifespan_context(app):

        def client(token: str) -> Client:
            http = httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app),
                base_url="http://127.0.0.1:8765",
                headers={"Authorization": f"Bearer {token}"},
            )
            return Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http))

        async with client(TOKENS["alice"]) as a:
            card_id = (await call(a, "issue_card", {"amount": "6.00", "request_id": "a-1"}))["card"]["card_id"]
        before = sandbox_of(sandbox).snapshot()
        attempts = successes = 0
        async with client(TOKENS["bob"]) as b:
            for tool, args in [
                ("get_card", {"card_id": card_id}),
                ("get_card", {"card_id": card_id, "reveal": True}),
                ("top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "b-1"}),
                ("withdraw_from_card", {"card_id": card_id, "amount": "1.00", "request_id": "b-2"}),
                ("close_card", {"card_id": card_id, "request_id": "b-3"}),
                ("freeze_card", {"card_id": card_id}),
                ("unfreeze_card", {"card_id": card_id}),
                ("get_card_transactions", {"card_id": card_id}),
                ("simulate_purchase", {"card_id": card_id, "amount": "1.00"}),
                ("get_request_status", {"request_id": "a-1"}),
            ]:
                attempts += 1
                result = await b.call_tool(tool, args)
                if not result.is_error:
                    successes += 1
                    continue
                text = result.content[0].text  # type: ignore[union-attr]
                assert text.startswith("[not_found]"), (tool, text)
                unknown = await b.call_tool(
                    tool, {**args, **({"card_id": "f" * 36} if "card_id" in args else {"request_id": "zz"})}
                )
                other = unknown.content[0].text  # type: ignore[union-attr]
                assert text.replace(card_id, "ID").replace("a-1", "ID") == other.replace("f" * 36, "ID").replace(
                    "zz", "ID"
                )
            listed = await call(b, "list_cards", {})
        after = sandbox_of(sandbox).snapshot()
    assert (attempts, successes) == (10, 0)
    assert listed["cards"] == []
    assert after["movements"] == before["movements"] and after["cards"] == before["cards"]


async def test_bad_host_and_origin_are_refused(tmp_path: Path) -> None:
    """DNS-rebinding protection: a foreign Host gets 421, a foreign Origin 403."""
    app = make_app(tmp_path, create_sandbox_app())
    ping = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {TOKENS['alice']}"}
    async with in_process(app, None) as http:
        host = await http.post("/mcp", json=ping, headers={**headers, "Host": "evil.example.com"})
        origin = await http.post("/mcp", json=ping, headers={**headers, "Origin": "http://evil.example.com"})
    assert host.status_code == 421
    assert origin.status_code == 403


def test_beyond_loopback_needs_allowed_hosts_and_auth(tmp_path: Path) -> None:
    """--host 0.0.0.0 needs INTERLACE_ALLOWED_HOSTS; --auth none is refused off loopback."""
    with pytest.raises(ConfigError, match="INTERLACE_ALLOWED_HOSTS"):
        build_http_app(settings(tmp_path), host="0.0.0.0")
    with pytest.raises(ConfigError, match="loopback"):
        build_http_app(settings(tmp_path, allowed_hosts="mcp.example.com:443"), host="0.0.0.0", auth="none")
    app = build_http_app(settings(tmp_path, allowed_hosts="mcp.example.com:443"), host="0.0.0.0")
    assert app.state.interlace_runtime is not None
