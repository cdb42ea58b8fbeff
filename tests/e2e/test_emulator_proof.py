"""Issue 13 item 5: only an upstream that PROVES it is our emulator gets the sandbox defaults.

Being on loopback proves nothing: a local proxy in front of Interlace production is on loopback too. Here a
loopback upstream that is not our emulator -- the emulator itself, wrapped so that ``/_sandbox/identity`` is
missing (as behind a proxy to production) or answers a forged proof -- gets production defaults: no reveal, no
``sandbox-payee``, results ``sandbox: false``, no sandbox-only tool, and a one-line warning at startup. The real
``interlace-mcp sandbox`` on a loopback port proves itself and keeps the defaults.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server import MCPServer
from starlette.types import Receive, Scope, Send

from e2e.support import Emulator, StdioFactory, child_env, interlace_command
from helpers import Clock, call, refuse, serving
from interlace_mcp.app import Runtime
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import (
    CARDHOLDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    IDENTITY_MARKER,
    SandboxState,
    create_sandbox_app,
    identity_proof,
)
from interlace_mcp.server import build_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

IDENTITY = "/_sandbox/identity"
NOT_PROVEN_WARNING = "is not proven to be the interlace-mcp emulator"


class NotOurEmulator:
    """The emulator behind something that is not it: ``/_sandbox/identity`` answers 404 (``missing``, as
    Interlace behind a proxy would) or a well-formed answer with a proof made without the secret (``forged``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.inner = create_sandbox_app()
        self.challenges = 0

    @property
    def state(self) -> SandboxState:
        state = self.inner.state.sandbox
        assert isinstance(state, SandboxState)
        return state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != IDENTITY:
            await self.inner(scope, receive, send)
            return
        self.challenges += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.mode == "missing":
            status, answer = 404, {"code": "404", "message": "Not Found", "data": None}
        else:
            asked = json.loads(body)
            forged = identity_proof("not-the-secret-" + secrets.token_hex(8), asked["clientId"], asked["nonce"])
            status, answer = (
                200,
                {"code": "000000", "message": "ok", "data": {"emulator": IDENTITY_MARKER, "proof": forged}},
            )
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def loopback_settings(tmp_path: Path, base_url: str, **extra: Any) -> Settings:
    """A server pointed at ``base_url`` with the emulator's credentials and NO policy file."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        base_url=base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        reconcile_interval_seconds=0,
        **extra,
    )


@asynccontextmanager
async def in_process_server(settings: Settings) -> AsyncIterator[tuple[Client, MCPServer[Runtime]]]:
    server = build_server(
        settings, ledger=Ledger(settings.resolved_state_dir().parent / "ledger.sqlite3", clock=Clock()), backoff=False
    )
    rt: Runtime = server.interlace_runtime  # type: ignore[attr-defined]
    try:
        async with Client(server) as c:
            yield c, server
    finally:
        rt.ledger.close()
        rt.audit.close()


async def check_output(env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """``interlace-mcp check`` as a child (async: the upstream may be served by this very event loop)."""
    done = await anyio.run_process(interlace_command("check"), env=env, cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(), done.stderr.decode()


async def production_defaults(c: Client, upstream: NotOurEmulator) -> None:
    """What an agent gets from an upstream that did not prove it is our emulator, with no policy file."""
    tools = {t.name for t in (await c.list_tools()).tools}
    assert "simulate_purchase" not in tools and "issue_card" in tools

    balance = await call(c, "get_balance", {})
    assert balance["sandbox"] is False

    issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "proof-issue-1"})
    assert issued["status"] == "completed" and issued["sandbox"] is False
    card_id = issued["card"]["card_id"]

    text = await refuse(c, "get_card", {"card_id": card_id, "reveal": True})
    assert text.startswith("[reveal_not_allowed]"), text
    pan = upstream.state.cards[card_id].pan
    assert pan not in text
    masked = await call(c, "get_card", {"card_id": card_id})
    assert masked["card_number"] is None and masked["cvv"] is None and masked["sandbox"] is False
    assert pan not in json.dumps(masked)

    paid = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "proof-pay-1"})
    assert paid.startswith("[payee_not_allowed]"), paid
    assert [p["name"] for p in (await call(c, "list_payees", {}))["payees"]] == []
    assert upstream.challenges >= 1  # the server asked, and did not take loopback for an answer


@pytest.mark.parametrize("mode", ["missing", "forged"])
async def test_a_loopback_upstream_that_is_not_our_emulator_gets_production_defaults(tmp_path: Path, mode: str) -> None:
    """In-process server (official client), the upstream on a real loopback port, no policy file."""
    upstream = NotOurEmulator(mode)
    async with serving(upstream) as base_url:  # type: ignore[arg-type]
        settings = loopback_settings(tmp_path, base_url, cardholder_id=CARDHOLDER_ID)
        async with in_process_server(settings) as (c, server):
            await production_defaults(c, upstream)
            rt: Runtime = server.interlace_runtime  # type: ignore[attr-defined]
            assert rt.upstream.emulator is False and rt.upstream.sandbox is False
            assert "not proven" in rt.upstream.why


async def test_a_policy_file_naming_sandbox_payee_starts_but_the_payee_is_withheld_until_proven(
    tmp_path: Path,
) -> None:
    """A policy written for the emulator (naming ``sandbox-payee``) still starts against an upstream that may prove
    itself; when it does not, that payee is refused and never listed."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[defaults]\ntransfer_payees = ["sandbox-payee"]\n', encoding="utf-8")
    upstream = NotOurEmulator("missing")
    async with serving(upstream) as base_url:  # type: ignore[arg-type]
        settings = loopback_settings(tmp_path, base_url, policy_file=policy)
        async with in_process_server(settings) as (c, _):
            assert (await call(c, "list_payees", {}))["payees"] == []
            text = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "p-1"})
            assert text.startswith("[payee_not_allowed]"), text
    assert upstream.state.snapshot()["transfers_total"] in ("0", "0.00")


async def test_stdio_server_on_a_loopback_upstream_that_is_not_our_emulator_warns_and_keeps_production_defaults(
    tmp_path: Path, stdio_server: StdioFactory
) -> None:
    """The reported case, end to end: ``python -m interlace_mcp`` over stdio pointed at a loopback upstream that
    is not our emulator; ``check`` says what it decided and why."""
    upstream = NotOurEmulator("missing")
    async with serving(upstream) as base_url:  # type: ignore[arg-type]
        env = child_env(
            tmp_path / "server-state",
            INTERLACE_BASE_URL=base_url,
            INTERLACE_CLIENT_ID=CLIENT_ID,
            INTERLACE_CLIENT_SECRET=CLIENT_SECRET,
            INTERLACE_CARDHOLDER_ID=CARDHOLDER_ID,
        )
        stderr_path = tmp_path / "server.stderr"
        with stderr_path.open("w", encoding="utf-8") as errlog, anyio.fail_after(60):
            async with stdio_server(env, errlog=errlog) as c:
                await production_defaults(c, upstream)
        out, _ = await check_output(env, tmp_path)
    warnings = [line for line in stderr_path.read_text(encoding="utf-8").splitlines() if NOT_PROVEN_WARNING in line]
    assert len(warnings) == 1, stderr_path.read_text(encoding="utf-8")
    assert base_url in warnings[0] and "HTTP 404" in warnings[0]
    assert CLIENT_SECRET not in stderr_path.read_text(encoding="utf-8")
    assert "[PRODUCTION: real money]" in out
    assert "emulator: no (not proven to be the interlace-mcp emulator" in out
    assert CLIENT_SECRET not in out


async def test_the_real_emulator_on_a_loopback_port_proves_itself_and_keeps_the_sandbox_defaults(
    tmp_path: Path, emulator: Emulator
) -> None:
    """``interlace-mcp sandbox`` on a loopback port: no policy file, and reveal, ``sandbox-payee``, the sandbox
    mark and ``simulate_purchase`` are all there."""
    settings = loopback_settings(tmp_path, emulator.base_url)
    async with in_process_server(settings) as (c, server):
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "simulate_purchase" in tools
        issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "real-issue-1"})
        assert issued["sandbox"] is True
        card_id = issued["card"]["card_id"]
        revealed = await call(c, "get_card", {"card_id": card_id, "reveal": True})
        assert isinstance(revealed["card_number"], str) and len(revealed["card_number"]) >= 13
        assert revealed["sandbox"] is True
        sent = await call(
            c, "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "real-pay-1"}
        )
        assert sent["status"] == "completed" and sent["sandbox"] is True
        rt: Runtime = server.interlace_runtime  # type: ignore[attr-defined]
        assert rt.upstream.emulator is True and rt.upstream.why.startswith("proved")
    out, _ = await check_output(emulator.server_env(tmp_path / "check-state"), tmp_path)
    assert f"upstream: {emulator.base_url} [sandbox]" in out
    assert "emulator: yes (proved it is the interlace-mcp emulator" in out


async def test_the_identity_answer_is_a_proof_for_one_nonce_and_never_the_secret() -> None:
    """The emulator's side: a proof for the nonce asked, under the seeded client's secret; unknown clients and
    malformed nonces are refused. The secret itself is never in the answer."""
    app = create_sandbox_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator") as http:
        nonce = secrets.token_hex(32)
        answer = await http.post(IDENTITY, json={"nonce": nonce, "clientId": CLIENT_ID})
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert data == {"emulator": IDENTITY_MARKER, "proof": identity_proof(CLIENT_SECRET, CLIENT_ID, nonce)}
        assert CLIENT_SECRET not in answer.text
        other = await http.post(IDENTITY, json={"nonce": secrets.token_hex(32), "clientId": CLIENT_ID})
        assert other.json()["data"]["proof"] != data["proof"]  # one nonce, one proof: nothing to replay
        unknown = await http.post(IDENTITY, json={"nonce": nonce, "clientId": "someone-else"})
        assert unknown.status_code == 401 and "proof" not in unknown.text
        for bad in ("", "zz" * 32, nonce[:-2], nonce.upper()):
            refused = await http.post(IDENTITY, json={"nonce": bad, "clientId": CLIENT_ID})
            assert refused.status_code == 400, (bad, refused.text)


@pytest.mark.parametrize(
    ("base_url", "env", "sandbox", "unproven"),
    [
        ("http://127.0.0.1:8766", None, False, True),
        ("http://localhost:8766", "sandbox", False, True),  # declaring it proves nothing on loopback either
        ("https://proxy.internal.example", None, False, True),
        ("https://api-sandbox.interlace.money", None, True, False),  # Interlace's own hosts: known by name
        ("https://api.interlace.money", None, False, False),
    ],
)
def test_before_the_challenge_no_custom_url_is_the_emulator(
    base_url: str, env: str | None, sandbox: bool, unproven: bool
) -> None:
    """Resolving settings touches no network and decides nothing in a custom URL's favour."""
    from interlace_mcp.config import resolve_upstream

    settings = Settings(_env_file=None, base_url=base_url, env=env, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)  # type: ignore[call-arg]
    upstream = resolve_upstream(settings)
    assert (upstream.emulator, upstream.sandbox, upstream.unproven) == (False, sandbox, unproven)
    assert CLIENT_SECRET not in repr(upstream)


async def test_over_http_a_loopback_upstream_that_is_not_our_emulator_gets_production_defaults(
    tmp_path: Path,
) -> None:
    """``serve --transport http`` (bearer token, the official client over streamable HTTP): the same production
    defaults, and ``/healthz`` says ``sandbox: false``."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from interlace_mcp.policy import token_digest
    from interlace_mcp.server import build_http_app

    upstream = NotOurEmulator("forged")
    async with serving(upstream) as upstream_url:  # type: ignore[arg-type]
        app = build_http_app(loopback_settings(tmp_path, upstream_url, cardholder_id=CARDHOLDER_ID), backoff=False)
        app.state.interlace_runtime.ledger.add_token("shopper", token_digest("tok-shopper-0123456789"))
        try:
            async with serving(app) as base:
                async with httpx.AsyncClient(timeout=10) as raw:
                    health = (await raw.get(f"{base}/healthz")).json()
                assert health["sandbox"] is False
                headers = {"Authorization": "Bearer tok-shopper-0123456789"}
                async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
                    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
                        await production_defaults(c, upstream)
        finally:
            app.state.interlace_runtime.close()
