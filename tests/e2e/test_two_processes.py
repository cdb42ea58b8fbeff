"""Issue-3 acceptance: concurrent top-ups can never push spend past a limit, in one process or two.

100 concurrent ``top_up_card`` calls of 5.00 against 100.00 of daily room: exactly 20 complete and 80 are
``[daily_limit]`` refusals, and the emulator's loads, the card balance and the ledger agree to the cent.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from e2e.support import Emulator, StdioFactory
from helpers import ServerFactory, call, runtime, sandbox_of
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import ACCOUNT_ID

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# The card is issued with 0.01 under the same agent, leaving exactly 100.00 of daily room.
POLICY = """\
[defaults]
per_transaction = "50.00"
daily = "100.01"
monthly = "none"
max_active_cards = 5
"""
AGENT = "burst"
CALLS = 100
TOP_UP = "5.00"
EXPECTED_OK = 20


async def _top_up(c: Client, card_id: str, request_id: str, outcomes: list[tuple[str, Any]]) -> None:
    args = {"card_id": card_id, "amount": TOP_UP, "request_id": request_id}
    result = await c.call_tool("top_up_card", args)
    if result.is_error:
        outcomes.append(("refused", result.content[0].text))  # type: ignore[union-attr]
    else:
        outcomes.append(("ok", result.structured_content))


def _check_outcomes(outcomes: list[tuple[str, Any]]) -> None:
    assert len(outcomes) == CALLS
    done = [payload for kind, payload in outcomes if kind == "ok"]
    refused = [payload for kind, payload in outcomes if kind == "refused"]
    assert all(r["status"] == "completed" and r["amount"] == TOP_UP for r in done), done
    odd = [text for text in refused if not text.startswith("[daily_limit] daily limit 100.01 USD")]
    assert not odd, odd[:3]
    assert (len(done), len(refused)) == (EXPECTED_OK, CALLS - EXPECTED_OK)


async def test_two_server_processes_sharing_one_ledger_never_exceed_the_daily_limit(
    tmp_path: Path, emulator: Emulator, stdio_server: StdioFactory
) -> None:
    """Two stdio servers, one SQLite ledger file, one emulator: 50 concurrent calls through each."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    database = tmp_path / "shared.sqlite3"

    def env(name: str) -> dict[str, str]:
        return emulator.server_env(
            tmp_path / f"state-{name}",
            INTERLACE_DATABASE_URL=f"sqlite:///{database}",
            INTERLACE_POLICY_FILE=str(policy),
            INTERLACE_AGENT_ID=AGENT,
            INTERLACE_RATE_LIMIT_PER_MINUTE="10000",
            INTERLACE_LOG_LEVEL="WARNING",
        )

    outcomes: list[tuple[str, Any]] = []
    with anyio.fail_after(45):
        async with stdio_server(env("a")) as a, stdio_server(env("b")) as b:
            issued = await call(a, "issue_card", {"amount": "0.01", "request_id": "burst-issue"})
            card_id = issued["card"]["card_id"]
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    client = a if i % 2 == 0 else b
                    tg.start_soon(_top_up, client, card_id, f"burst-{i:03d}", outcomes)
            card = await call(b, "get_card", {"card_id": card_id})
    _check_outcomes(outcomes)
    assert card["balance"] == "100.01"

    state = emulator.state()
    assert state["cards"][card_id]["available"] == "100.01"
    assert Decimal(state["loaded_total"]) == Decimal("100.01")

    ledger = Ledger(database)
    try:
        scope = f"{emulator.base_url}#{ACCOUNT_ID}"
        assert ledger.committed_total(scope, AGENT) == Decimal("100.01")
        assert ledger.committed_total(scope) == Decimal(state["loaded_total"])
        assert ledger.reserved_total(scope) == Decimal("0")
    finally:
        ledger.close()


async def test_one_server_in_process_never_exceeds_the_daily_limit(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """The same burst through one in-memory Client: the ledger's atomic check-and-reserve holds."""
    server = make_server(policy=POLICY, agent_id=AGENT, rate_limit_per_minute=10000)
    outcomes: list[tuple[str, Any]] = []
    with anyio.fail_after(30):
        async with Client(server) as c:
            issued = await call(c, "issue_card", {"amount": "0.01", "request_id": "burst-issue"})
            card_id = issued["card"]["card_id"]
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(_top_up, c, card_id, f"burst-{i:03d}", outcomes)
    _check_outcomes(outcomes)

    snapshot = sandbox_of(sandbox_app).snapshot()
    assert snapshot["cards"][card_id]["available"] == "100.01"
    assert Decimal(snapshot["loaded_total"]) == Decimal("100.01")
    rt = runtime(server)
    assert rt.ledger.committed_total(rt.scope, AGENT) == Decimal("100.01")
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
