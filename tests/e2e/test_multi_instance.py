"""Issue-6 acceptance: two HTTP server processes sharing one PostgreSQL database never exceed a limit together.

One emulator on a loopback port, two ``interlace-mcp serve --transport http`` processes on the same
PostgreSQL schema, one agent token minted with ``interlace-mcp agents token``. 200 concurrent
``top_up_card`` calls of 5.00 split across both servers against 100.00 of daily room: exactly 20 complete,
the rest are ``[daily_limit]`` refusals, and the emulator's loads equal the ledger's committed total. Both
instances wrote one audit chain, which verifies.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from e2e.support import Emulator, free_port, interlace_command, wait_for_port
from helpers import call
from interlace_mcp.audit import AuditLog
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import ACCOUNT_ID

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]

# The card is issued with 0.01 under the same agent, leaving exactly 100.00 of daily room.
POLICY = """\
[defaults]
per_transaction = "50.00"
daily = "100.01"
monthly = "none"
max_active_cards = 5
"""
AGENT = "fleet"
CALLS = 200
TOP_UP = "5.00"
EXPECTED_OK = 20


def _env(emulator: Emulator, state_dir: Path, database_url: str, policy: Path) -> dict[str, str]:
    return emulator.server_env(
        state_dir,
        INTERLACE_DATABASE_URL=database_url,
        INTERLACE_POLICY_FILE=str(policy),
        INTERLACE_RATE_LIMIT_PER_MINUTE="100000",
        INTERLACE_LOG_LEVEL="WARNING",
    )


def _mint_token(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        interlace_command("agents", "token", AGENT),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[0]
    assert token.startswith("itl_agent_"), done.stdout
    return token


@pytest.fixture
def servers(tmp_path: Path, emulator: Emulator, database_url: str) -> Iterator[tuple[str, list[str]]]:
    """(token, [base URL of server A, of server B]): two HTTP servers on one PostgreSQL schema."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    token = _mint_token(_env(emulator, tmp_path / "state-cli", database_url, policy), tmp_path)
    with ExitStack() as stack:
        bases: list[str] = []
        procs: list[subprocess.Popen[bytes]] = []
        for name in ("a", "b"):
            port = free_port()
            output = tmp_path / f"server-{name}.out"
            out = stack.enter_context(output.open("wb"))
            proc = subprocess.Popen(
                interlace_command("serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(emulator, tmp_path / f"state-{name}", database_url, policy),
                cwd=tmp_path,
            )
            procs.append(proc)
            stack.callback(_stop, proc)
            wait_for_port(port, proc, output, timeout=30)
            bases.append(f"http://127.0.0.1:{port}")
        yield token, bases


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@asynccontextmanager
async def connect(base: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            yield client


async def _top_up(c: Client, card_id: str, request_id: str, outcomes: list[tuple[str, Any]]) -> None:
    result = await c.call_tool("top_up_card", {"card_id": card_id, "amount": TOP_UP, "request_id": request_id})
    if result.is_error:
        outcomes.append(("refused", result.content[0].text))  # type: ignore[union-attr]
    else:
        outcomes.append(("ok", result.structured_content))


async def test_two_http_servers_sharing_postgresql_never_exceed_the_daily_limit(
    servers: tuple[str, list[str]], emulator: Emulator, database_url: str
) -> None:
    """200 concurrent top-ups of 5.00 through two servers: exactly 20 complete; upstream and ledger agree."""
    token, (base_a, base_b) = servers
    outcomes: list[tuple[str, Any]] = []
    with anyio.fail_after(120):
        async with connect(base_a, token) as a, connect(base_b, token) as b:
            issued = await call(a, "issue_card", {"amount": "0.01", "request_id": "fleet-issue"})
            card_id = issued["card"]["card_id"]
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(_top_up, a if i % 2 == 0 else b, card_id, f"fleet-{i:03d}", outcomes)
            card = await call(b, "get_card", {"card_id": card_id})
            status = await call(a, "get_spend_status", {})

    assert len(outcomes) == CALLS
    done = [payload for kind, payload in outcomes if kind == "ok"]
    refused = [payload for kind, payload in outcomes if kind == "refused"]
    assert all(r["status"] == "completed" and r["amount"] == TOP_UP for r in done), done[:3]
    odd = [text for text in refused if not text.startswith("[daily_limit] daily limit 100.01 USD")]
    assert not odd, odd[:3]
    assert (len(done), len(refused)) == (EXPECTED_OK, CALLS - EXPECTED_OK)
    assert card["balance"] == "100.01"
    day = next(w for w in status["windows"] if w["window"] == "day")
    assert (status["agent"], day["spent"], day["reserved"], day["remaining"]) == (AGENT, "100.01", "0.00", "0.00")

    state = emulator.state()
    assert Decimal(state["loaded_total"]) == Decimal("100.01")
    assert state["cards"][card_id]["available"] == "100.01"
    ledger = Ledger.from_url(database_url)
    try:
        scope = f"{emulator.base_url}#{ACCOUNT_ID}"
        assert ledger.committed_total(scope) == Decimal(state["loaded_total"])
        assert ledger.committed_total(scope, AGENT) == Decimal("100.01")
        assert ledger.reserved_total(scope) == Decimal("0")
    finally:
        ledger.close()
    with AuditLog.from_url(database_url) as audit:
        verified = audit.verify()
        top_ups = audit.count(agent=AGENT)
    assert verified.ok, verified
    assert top_ups >= CALLS  # every call of both instances is in the one chain
