"""interlace-mcp fund: the operator funds the Infinity account from the wallet, once, audited under their name."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import anyio.to_thread
import pytest
from mcp import Client

from helpers import call, refuse
from interlace_mcp.app import OPERATOR_AGENT, sandbox_state_path
from interlace_mcp.cli import main
from interlace_mcp.config import Settings
from interlace_mcp.sandbox import CRYPTO_WALLET_ID, INFINITY_BALANCE_ID, SandboxState
from interlace_mcp.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("USER", "alice")
    return tmp_path / "state"


def emulator() -> SandboxState:
    """The embedded emulator's persisted state, as the CLI left it."""
    return SandboxState.load(sandbox_state_path(Settings(_env_file=None)))  # type: ignore[call-arg]


def fundings() -> list[dict[str, str]]:
    return [m for m in emulator().snapshot()["movements"] if m["kind"] == "wallet_to_infinity"]


async def run(*argv: str) -> int:
    # main() runs its own event loop: call it from a worker thread, as a separate process would.
    code: int = await anyio.to_thread.run_sync(main, list(argv))
    return code


async def test_fund_moves_the_amount_once_and_is_audited_with_the_operators_name(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fund 40 prints its request id, moves 40.00 USDC once; the rerun with that id replays; audit says alice."""
    assert await run("fund", "40") == 0
    out = capsys.readouterr().out
    request_id = re.search(r"request id (fund-[0-9a-f]{32}) ", out)
    assert request_id is not None and "funded: 40.00 USDC" in out, out
    snapshot = emulator().snapshot()
    assert snapshot["wallets"][CRYPTO_WALLET_ID]["USDC"] == "4960.00"
    assert snapshot["infinity"][INFINITY_BALANCE_ID] == "10040.00"

    assert await run("fund", "40", "--request-id", request_id.group(1), "--by", "bob") == 0
    again = capsys.readouterr().out
    assert "already done: nothing moved now" in again and "request id" not in again
    assert [m["amount"] for m in fundings()] == ["40.00"]

    assert await run("audit", "tail", "--json") == 0
    records = [r for r in json.loads(capsys.readouterr().out) if r["tool"] == "fund_account"]
    assert {(r["event"], r["agent"], r["actor"]) for r in records} == {
        ("decision", OPERATOR_AGENT, "alice"),
        ("outcome", OPERATOR_AGENT, "alice"),
    }


async def test_the_operators_funding_is_no_agents_spend_or_funding(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator is not an agent: not in spend, not in any agent's windows; an agent is still refused."""
    assert await run("fund", "25.00", "--currency", "USDC") == 0
    capsys.readouterr()
    assert await run("spend", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert OPERATOR_AGENT not in report
    assert report["default"]["funding"] == {**report["default"]["funding"], "limit": "0.00", "funded": "0.00"}
    assert await run("spend", "--agent", "default") == 0
    assert "(fund_daily; not spend)" in capsys.readouterr().out
    server = build_server(Settings(_env_file=None), backoff=False)  # type: ignore[call-arg]
    async with Client(server) as c:
        status = await call(c, "get_spend_status", {})
        text = await refuse(c, "fund_account", {"amount": "1.00", "request_id": "agent"})
    assert status["funding"]["funded"] == "0.00" and all(w["spent"] == "0.00" for w in status["windows"])
    assert text.startswith("[fund_limit]")


async def test_fund_refusals_and_bad_input_are_one_line(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad amounts and ids are usage errors (2); a conflict or too little in the wallet is refused (1)."""
    assert await run("fund", "1.234") == 2
    assert "at most 2 decimals" in capsys.readouterr().err
    assert await run("fund", "10", "--request-id", "bad id") == 2
    assert "--request-id" in capsys.readouterr().err
    assert await run("fund", "9000") == 1
    assert "[insufficient_funds]" in capsys.readouterr().err
    assert await run("fund", "10", "--request-id", "op-1") == 0
    assert await run("fund", "11", "--request-id", "op-1") == 1
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if line.startswith("interlace-mcp: fund refused: ")]
    assert len(refused) == 1 and "[request_id_conflict]" in refused[0], err
    assert [m["amount"] for m in fundings()] == ["10.00"]


async def test_doctor_lists_the_wallet_to_use(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """doctor names the master wallet, its balances and the setting it goes in."""
    assert await run("doctor") == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("CryptoConnect wallet"))
    assert CRYPTO_WALLET_ID in line and "5000.00 USDC" in line and "-> INTERLACE_CRYPTO_WALLET_ID" in line
    assert Decimal("5000.00") == Decimal(emulator().snapshot()["wallets"][CRYPTO_WALLET_ID]["USDC"])
