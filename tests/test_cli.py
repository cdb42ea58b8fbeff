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
from interlace_mcp.sandbox import SandboxState
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
    monkeypatch.setenv("INTERLACE_AUDIT_HMAC_KEY", "some-other-key-of-16+-chars")
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


# ---- flags: global ones anywhere, contradictions refused, sandbox --reset ---------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--read-only", "check"], "read-only"),
        (["check", "--read-only"], "unknown"),  # check has no --read-only of its own: a usage error
        (["--toolsets", "spend", "check"], "spend"),
    ],
)
def test_global_flags_apply_to_the_command_after_them(
    state: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--read-only / --toolsets before a command configure it; after one other than serve: a usage error."""
    if expected == "unknown":
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "unrecognized arguments: --read-only" in err
        return
    assert main(argv) == 0
    tools = next(line for line in capsys.readouterr().out.splitlines() if "enabled tools" in line)
    if expected == "read-only":
        assert "get_card" in tools and "issue_card" not in tools and "freeze_card" not in tools
    else:
        assert tools.split(" = ")[1] == "get_spend_status"


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--read-only"],
        ["serve", "--read-only"],
        ["--read-only", "serve"],
        ["--toolsets", "spend,account", "--read-only"],
    ],
    ids=" ".join,
)
async def test_global_flags_work_with_or_without_serve(tmp_path: Path, argv: list[str]) -> None:
    """The installed command over stdio: `interlace-mcp --read-only` serves only read-only tools, like serve does."""
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    from e2e.support import child_env, interlace_command

    command = interlace_command(*argv)
    params = StdioServerParameters(command=command[0], args=command[1:], env=child_env(tmp_path / "s"), cwd=tmp_path)
    with (tmp_path / "stderr").open("w") as errlog, anyio.fail_after(30):
        async with Client(stdio_client(params, errlog=errlog)) as c:
            tools = (await c.list_tools()).tools
    assert tools and all(t.annotations and t.annotations.read_only_hint for t in tools)
    names = {t.name for t in tools}
    if "--toolsets" in argv:
        assert names == {"get_spend_status", "get_balance", "get_request_status"}
    else:
        assert {"get_card", "list_cards", "get_spend_status"} <= names and "issue_card" not in names


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["serve", "--port", "19243"], "--port"),
        (["--port", "19243"], "--port"),
        (["serve", "--transport", "stdio", "--port", "19243"], "--port"),
        (["serve", "--host", "0.0.0.0"], "--host"),
        (["serve", "--auth", "none"], "--auth"),
        (["serve", "--workers", "2"], "--workers"),
        (["sandbox", "--reset", "--port", "8766"], "--port"),
        (["sandbox", "--reset", "--fault", "/open-api/v3/cards/transfer-in:error"], "--fault"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_contradictory_flags_are_one_line_errors(
    state: Path, argv: list[str], flags: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags that would be silently ignored (a port on stdio; serving flags with --reset): exit 2, one line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and flags in lines[0], captured.err
    assert not state.exists() or not (state / "interlace-mcp.sqlite3").exists()  # nothing started


def test_usage_errors_are_one_line(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag or command: exit 2 and one line pointing at --help (not argparse's usage block)."""
    for argv in (["--bogus"], ["serv"], ["serve", "--transport", "carrier-pigeon"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--help" in err, err


async def test_sandbox_reset_wipes_the_emulator_state_and_exits(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sandbox --reset: the embedded emulator's cards are gone and the seeds are back; the command returns."""
    async with Client(server()) as c:
        await call(c, "issue_card", {"amount": "9.00", "request_id": "before-reset"})
    path = sandbox_state_path(Settings(_env_file=None))  # type: ignore[call-arg]
    assert SandboxState.load(path).snapshot() != SandboxState().snapshot()
    with anyio.fail_after(30):
        assert await anyio.to_thread.run_sync(main, ["sandbox", "--reset"]) == 0
    assert str(path) in capsys.readouterr().out
    assert SandboxState.load(path).snapshot() == SandboxState().snapshot()


@pytest.mark.slow
def test_sandbox_without_reset_still_serves_the_emulator(tmp_path: Path) -> None:
    """interlace-mcp sandbox --port N keeps serving (the control API answers) until stopped."""
    import subprocess

    import httpx

    from e2e.support import child_env, free_port, interlace_command, wait_for_port

    port = free_port()
    output = tmp_path / "out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("sandbox", "--port", str(port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(tmp_path / "state"),
            cwd=tmp_path,
        )
        try:
            wait_for_port(port, proc, output)
            response = httpx.get(f"http://127.0.0.1:{port}/_sandbox/state", timeout=10)
            assert response.status_code == 200 and proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert f"http://127.0.0.1:{port}" in output.read_text()
