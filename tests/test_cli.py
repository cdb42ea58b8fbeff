"""The operator's CLI: check, tokens, approvals and the kill switch, on the persisted embedded emulator."""

from __future__ import annotations

import json
from pathlib import Path

import anyio.to_thread
import pytest
from mcp import Client

from helpers import call, refuse
from interlace_mcp.app import sandbox_state_path
from interlace_mcp.cli import main
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger, token_digest
from interlace_mcp.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("USER", "alice")
    return tmp_path / "state"


def server(policy: Path | None = None) -> object:
    return build_server(Settings(_env_file=None, policy_file=policy), backoff=False)  # type: ignore[call-arg]


def test_check_prints_effective_policy_and_rejects_a_bad_file(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check shows each agent's limits and tools; a bad policy stops with file, key and reason (exit 2)."""
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert 'daily = "50.00"' in out and "enabled tools = issue_card" in out and out.strip().endswith("ok")
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\ndaily = "1e3"\n', encoding="utf-8")
    monkeypatch.setenv("INTERLACE_POLICY_FILE", str(bad))
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "defaults.daily" in err


def test_agents_token_prints_once_and_stores_only_the_hash(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed token maps to its agent; the database holds its sha256, never the token; revoke works."""
    assert main(["agents", "token", "shopper"]) == 0
    token = capsys.readouterr().out.strip()
    ledger = Ledger(state / "interlace-mcp.sqlite3")
    assert token.startswith("itl_agent_") and ledger.agent_for_token(token_digest(token)) == "shopper"
    assert token.encode() not in (state / "interlace-mcp.sqlite3").read_bytes()
    assert main(["agents", "revoke", "shopper"]) == 0
    assert ledger.agent_for_token(token_digest(token)) is None


async def test_approve_from_the_cli_then_the_retry_executes(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """approvals list shows the pending request; approve records the operator; the agent's retry runs once."""
    policy = tmp_path / "p.toml"
    policy.write_text('[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "25.00"\n', "utf-8")
    async with Client(server(policy)) as c:
        pending = await call(c, "issue_card", {"amount": "30.00", "request_id": "big"})
    approval = pending["approval_id"]
    monkeypatch.setenv("INTERLACE_POLICY_FILE", str(policy))
    assert main(["approvals", "list"]) == 0
    assert approval in capsys.readouterr().out
    assert main(["approvals", "approve", approval, "--reason", "ok"]) == 0
    assert "approved" in capsys.readouterr().out
    assert main(["approvals", "deny", approval]) == 1  # already decided
    async with Client(server(policy)) as c:
        done = await call(c, "issue_card", {"amount": "30.00", "request_id": "big"})
    assert done["status"] == "completed"
    assert main(["audit", "tail", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    decision = next(r for r in records if r["event"] == "approval_decision")
    assert decision["actor"] == "alice" and decision["decision"] == "approved"
    assert main(["audit", "verify"]) == 0


async def test_kill_switch_freezes_cards_upstream_and_blocks_money_tools(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """agents freeze: every card FROZEN at Interlace, money tools refused naming the freeze; unfreeze undoes it."""
    async with Client(server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
    # main() runs its own event loop: call it from a worker thread, as a separate process would.
    assert await anyio.to_thread.run_sync(main, ["agents", "freeze", "default", "--reason", "test"]) == 0
    emulator = json.loads(sandbox_state_path(Settings(_env_file=None)).read_text("utf-8"))  # type: ignore[call-arg]
    assert json.dumps(emulator).count('"FROZEN"') >= 1
    async with Client(server()) as c:
        text = await refuse(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
        unfreeze = await refuse(c, "unfreeze_card", {"card_id": card_id})
        card = await call(c, "get_card", {"card_id": card_id})
    assert text.startswith("[agent_frozen]") and "alice" in text and "test" in text
    assert unfreeze.startswith("[agent_frozen]")
    assert card["card_status"] == "FROZEN" and card["frozen_by"] == "operator"
    assert await anyio.to_thread.run_sync(main, ["agents", "unfreeze", "default"]) == 0
    async with Client(server()) as c:
        done = await call(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
    assert done["card"]["card_status"] == "ACTIVE"


async def test_audit_hmac_key_setting_macs_every_record(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With INTERLACE_AUDIT_HMAC_KEY the records carry a MAC: verify passes with the key, fails with another."""
    monkeypatch.setenv("INTERLACE_AUDIT_HMAC_KEY", "key-kept-outside-the-database")
    async with Client(server()) as c:
        await call(c, "issue_card", {"amount": "2.00", "request_id": "m"})
    assert b"key-kept-outside" not in (state / "interlace-mcp.sqlite3").read_bytes()
    assert main(["audit", "verify"]) == 0
    monkeypatch.setenv("INTERLACE_AUDIT_HMAC_KEY", "some-other-key")
    assert main(["audit", "verify"]) == 1
    assert "TAMPERED" in capsys.readouterr().out


async def test_spend_reports_each_window_as_a_table_and_as_json(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spend --json: per agent, limit/spent/reserved/remaining per window; the table shows the same numbers."""
    async with Client(server()) as c:
        await call(c, "issue_card", {"amount": "7.50", "request_id": "s"})
    assert await anyio.to_thread.run_sync(main, ["spend", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    day = next(w for w in report["default"]["windows"] if w["window"] == "day")
    assert day == {**day, "limit": "50.00", "spent": "7.50", "reserved": "0.00", "remaining": "42.50"}
    assert await anyio.to_thread.run_sync(main, ["spend", "--agent", "default"]) == 0
    table = capsys.readouterr().out
    assert "agent default" in table and "42.50" in table


def test_serve_workers_refuses_the_embedded_sandbox_and_a_bad_count(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--workers N needs an upstream the processes can share (not the in-process emulator) and N >= 1."""
    assert main(["serve", "--transport", "http", "--workers", "2"]) == 2
    assert "--workers needs a shared upstream" in capsys.readouterr().err
    assert main(["serve", "--transport", "http", "--workers", "0"]) == 2
    assert "--workers must be 1 or more" in capsys.readouterr().err
