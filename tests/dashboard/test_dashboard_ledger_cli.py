"""The ledger's dashboard queries (operator tokens, daily spend) and the `operators` / `dashboard` commands."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from dashboard.support import dash_settings
from helpers import Clock
from interlace_mcp.cli import _parser, main
from interlace_mcp.config import ConfigError
from interlace_mcp.dashboard import build_dashboard_app
from interlace_mcp.policy import Ledger, RequestKey, builtin_policy, token_digest
from interlace_mcp.sandbox import create_sandbox_app
from interlace_mcp.server import transport_security

pytestmark = pytest.mark.anyio
DAY = 86400.0


def test_operator_tokens_are_separate_from_agent_tokens(tmp_path: Path) -> None:
    """Only sha256 stored; an agent token never maps to an operator (nor the reverse); revoke is per operator."""
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.add_operator_token("alice", token_digest("op-1"))
    ledger.add_operator_token("alice", token_digest("op-2"))
    ledger.add_operator_token("bob", token_digest("op-3"))
    ledger.add_token("shopper", token_digest("agent-1"))
    assert ledger.operator_for_token(token_digest("op-1")) == "alice"
    assert ledger.operator_for_token(token_digest("agent-1")) is None
    assert ledger.agent_for_token(token_digest("op-1")) is None
    assert ledger.operator_names() == {"alice": 2, "bob": 1}
    assert ledger.revoke_operator_tokens("alice") == 2
    assert ledger.operator_for_token(token_digest("op-2")) is None
    assert ledger.operator_for_token(token_digest("op-3")) == "bob"
    assert ledger.revoke_operator_tokens("alice") == 0
    assert b"op-3" not in (tmp_path / "l.sqlite3").read_bytes()


def test_daily_spend_groups_committed_entries_by_day(tmp_path: Path) -> None:
    """Committed spend per day_key, dense over the last N days (zeros kept), per agent or all; reserved and
    released amounts never count."""
    clock = Clock(1_795_000_000.0)  # 2026-11-18T... UTC
    ledger = Ledger(tmp_path / "l.sqlite3", clock=clock)
    policy = builtin_policy(sandbox=False).for_agent("a")
    scope = "test#acct"

    def spend(agent: str, rid: str, amount: str, *, commit: bool = True) -> RequestKey:
        key = RequestKey(scope, agent, "issue_card", rid)
        ledger.begin(key, args_hash=rid, policy=policy, spend=Decimal(amount), currency="USD")
        if commit:
            ledger.complete(key, {"ok": True})
        return key

    spend("a", "1", "5.00")
    spend("b", "2", "7.50")
    clock.advance(2 * DAY)
    spend("a", "3", "1.25")
    spend("a", "4", "9.00", commit=False)  # reserved only
    ledger.abandon(spend("a", "5", "3.00", commit=False))  # released
    clock.advance(40 * DAY)
    spend("a", "6", "2.00")

    recent = ledger.daily_spend(scope, 30)
    assert len(recent) == 30 and recent[-1][1] == Decimal("2.00") and sum(v for _, v in recent) == Decimal("2.00")
    wide = ledger.daily_spend(scope, 60)
    assert len(wide) == 60
    totals = {k: v for k, v in wide if v}
    assert list(totals.values()) == [Decimal("12.50"), Decimal("1.25"), Decimal("2.00")]
    only_a = {k: v for k, v in ledger.daily_spend(scope, 60, agent="a") if v}
    assert list(only_a.values()) == [Decimal("5.00"), Decimal("1.25"), Decimal("2.00")]
    assert ledger.daily_spend("other#scope", 7) == [(k, Decimal("0.00")) for k, _ in ledger.daily_spend(scope, 7)]
    keys = [k for k, _ in wide]
    assert keys == sorted(keys) and len(set(keys)) == 60
    assert ledger.daily_spend(scope, 0) == []


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_operators_token_revoke_list(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`operators token` prints an itl_op_ token once (only its hash is stored); list and revoke."""
    assert main(["operators", "token", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    db = state / "interlace-mcp.sqlite3"
    ledger = Ledger(db)
    assert token.startswith("itl_op_") and ledger.operator_for_token(token_digest(token)) == "alice"
    assert ledger.agent_for_token(token_digest(token)) is None
    assert token.encode() not in db.read_bytes()
    assert main(["operators", "list"]) == 0
    assert "alice" in capsys.readouterr().out
    assert main(["operators", "token", "bad name!"]) == 2
    assert main(["operators", "revoke", "alice"]) == 0
    assert ledger.operator_for_token(token_digest(token)) is None
    assert main(["operators", "revoke", "alice"]) == 1


def test_dashboard_command_parses_and_refuses_a_public_host_without_allowed_hosts(state: Path) -> None:
    """Defaults 127.0.0.1:8767; binding beyond loopback needs INTERLACE_ALLOWED_HOSTS (DNS rebinding)."""
    args = _parser().parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8767)
    assert main(["dashboard", "--host", "0.0.0.0"]) == 2


async def test_dashboard_alone_serves_only_the_dashboard_on_the_shared_database(tmp_path: Path) -> None:
    """The standalone app (for stdio deployments) signs in with an operator token and has no /mcp."""
    settings = dash_settings(tmp_path)
    app = build_dashboard_app(
        settings, security=transport_security(settings, "127.0.0.1"), sandbox_app=create_sandbox_app(), backoff=False
    )
    Ledger(tmp_path / "ledger.sqlite3").add_operator_token("carol", token_digest("itl_op_c"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8767") as http:
            root = await http.get("/")
            before = await http.get("/dashboard")
            login = await http.post("/dashboard/login", data={"token": "itl_op_c"})
            page = await http.get("/dashboard")
            mcp = await http.post("/mcp", json={})
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    assert before.status_code == 303 and login.status_code == 303
    assert page.status_code == 200 and "Signed in as <strong>carol</strong>" in page.text
    assert mcp.status_code == 404
    with pytest.raises(ConfigError):
        transport_security(settings, "0.0.0.0")
