"""Agent names match ``^[a-z0-9][a-z0-9_-]{0,62}$`` everywhere an agent can be named.

Policy file sections, ``interlace-mcp agents token|revoke|freeze|unfreeze NAME``, ``INTERLACE_AGENT_ID``,
a JWT's ``sub`` and a stored bearer token's agent: a name outside the rule is refused with a message that
states the rule (401 for a token). The dashboard never builds a link from such a name and answers 400 for it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from helpers import call
from interlace_mcp.cli import main
from interlace_mcp.config import Settings
from interlace_mcp.policy import PolicyError, parse_policy, token_digest
from interlace_mcp.sandbox import create_sandbox_app
from interlace_mcp.server._http import build_http_app

pytestmark = pytest.mark.anyio
RULE = "^[a-z0-9][a-z0-9_-]{0,62}$"

BAD_NAMES = [".", "..", "Alice", "team.bot", "a:b", "-lead", "_lead", "a b", "a/b", "x" * 64, "", "caf\u00e9", "a\n"]
GOOD_NAMES = ["a", "0", "shopper", "team-bot_2", "x" * 63]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_policy_section_with_a_bad_agent_name_names_the_rule(name: str) -> None:
    """[agents."Alice"] and friends stop the policy load with the key and the rule."""
    with pytest.raises(PolicyError) as caught:
        parse_policy({"agents": {name: {"daily": "1.00"}}})
    assert caught.value.key == f"agents.{name}"
    assert RULE in caught.value.reason


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_policy_sections_with_good_agent_names_load(name: str) -> None:
    """Lower-case letters, digits, _ and -, starting with a letter or digit, up to 63 characters."""
    assert parse_policy({"agents": {name: {"daily": "1.00"}}}).for_agent(name).daily is not None


@pytest.mark.parametrize("name", [".", "Alice", "team.bot", "x" * 64])
def test_the_agent_id_setting_must_follow_the_rule(name: str) -> None:
    """INTERLACE_AGENT_ID outside the rule is a settings error naming the variable and the rule."""
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, agent_id=name)  # type: ignore[call-arg]
    assert "INTERLACE_AGENT_ID" in str(caught.value) and RULE in str(caught.value)
    assert Settings(_env_file=None, agent_id="team-bot_2").agent_id == "team-bot_2"  # type: ignore[call-arg]


@pytest.mark.parametrize("verb", ["token", "revoke", "freeze", "unfreeze"])
@pytest.mark.parametrize("name", [".", "Alice", "team.bot"])
def test_agents_commands_refuse_names_outside_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], verb: str, name: str
) -> None:
    """`interlace-mcp agents token|revoke|freeze|unfreeze NAME`: exit 2 with the rule; nothing stored."""
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    assert main(["agents", verb, name]) == 2
    captured = capsys.readouterr()
    assert RULE in captured.err and "itl_agent_" not in captured.out
    assert main(["agents", "list"]) == 0
    assert name not in capsys.readouterr().out.split()


def _rsa_keys(tmp_path: Path) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp_path / "jwt.pub"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, pub


async def test_bearer_identities_outside_the_rule_get_401(tmp_path: Path) -> None:
    """A JWT whose sub breaks the rule, and a stored token minted for such a name before the rule: 401; a
    good sub works."""
    key, pub = _rsa_keys(tmp_path)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        jwt_issuer="https://idp.example.com",
        jwt_audience="interlace-mcp",
        jwt_public_key_file=pub,
    )
    sandbox = create_sandbox_app()
    jwt_app = build_http_app(settings, auth="jwt", sandbox_app=sandbox, backoff=False)
    token_app = build_http_app(settings, auth="token", sandbox_app=sandbox, backoff=False)
    token_app.state.interlace_runtime.ledger.add_token("Legacy.Bot", token_digest("tok-legacy-0123456789"))

    def token(sub: str) -> str:
        claims = {"iss": "https://idp.example.com", "aud": "interlace-mcp", "sub": sub, "exp": int(time.time()) + 300}
        return jwt.encode(claims, key, algorithm="RS256")

    ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    codes: dict[str, int] = {}
    for app, tokens in (
        (jwt_app, {sub: token(sub) for sub in (".", "Carol", "carol.smith", "a:b", "x" * 64)}),
        (token_app, {"Legacy.Bot": "tok-legacy-0123456789"}),
    ):
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as h:
                for sub, tok in tokens.items():
                    response = await h.post("/mcp", json=ping, headers={**headers, "Authorization": f"Bearer {tok}"})
                    codes[sub] = response.status_code
            if app is jwt_app:
                http = httpx2.AsyncClient(
                    transport=httpx2.ASGITransport(app=jwt_app),
                    base_url="http://127.0.0.1:8765",
                    headers={"Authorization": f"Bearer {token('carol-smith')}"},
                )
                async with Client(streamable_http_client("http://127.0.0.1:8765/mcp", http_client=http)) as c:
                    status = await call(c, "get_spend_status", {})
    assert codes == dict.fromkeys(codes, 401) and len(codes) == 6
    assert status["agent"] == "carol-smith"
