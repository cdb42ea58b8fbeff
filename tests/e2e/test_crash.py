"""A money call killed like ``kill -9`` at every crash point: after a restart (recovery at startup) and the
agent's retry with the same request_id, money moved exactly once and ledger == upstream.

The emulator runs as ``interlace-mcp sandbox`` on a loopback port; each server is a stdio child process.
The one with ``INTERLACE_CRASH_AT=<point>`` dies (``os._exit(137)``) inside the call; the next one starts
without it and with ``INTERLACE_RECOVERY_GRACE_SECONDS=0``, so startup recovery settles every unfinished
request by lookup before the agent retries. ``interlace-mcp reconcile`` (same environment) then exits 0.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from e2e.support import Emulator, StdioFactory, interlace_command
from helpers import call
from interlace_mcp._crash import CRASH_POINTS
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import ACCOUNT_ID

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FULL = os.environ.get("INTERLACE_TEST_FULL", "") not in ("", "0")
#: Crashed calls per tool and crash point (each one its own crashed process).
TRIALS = 5 if FULL else 1
SETUP_LOAD = Decimal("10.00")
TOP_UP = Decimal("3.00")
PAY = Decimal("2.00")
POLICY = """\
[defaults]
per_transaction = "100.00"
daily = "1000.00"
monthly = "none"
max_active_cards = 5
transfer_payees = ["sandbox-payee"]
"""


def money_calls(card_id: str, trial: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("top_up_card", {"card_id": card_id, "amount": str(TOP_UP), "request_id": f"crash-top-{trial}"}),
        ("create_transfer", {"payee": "sandbox-payee", "amount": str(PAY), "request_id": f"crash-pay-{trial}"}),
    ]


async def die_in_call(client: Client, tool: str, args: dict[str, Any]) -> None:
    """The server exits inside the call: the client sees the connection end, never a result."""
    try:
        result = await client.call_tool(tool, args)
    except Exception:
        return
    pytest.fail(f"{tool} returned instead of crashing: {result}")


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_crash_restart_retry_moves_money_exactly_once(
    tmp_path: Path, emulator: Emulator, stdio_server: StdioFactory, point: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    database = tmp_path / "ledger.sqlite3"
    env = emulator.server_env(
        tmp_path / "state",
        INTERLACE_DATABASE_URL=f"sqlite:///{database}",
        INTERLACE_POLICY_FILE=str(policy),
        INTERLACE_RECOVERY_GRACE_SECONDS="0",
        INTERLACE_LOG_LEVEL="WARNING",
    )
    stderr_path = tmp_path / "servers.stderr"
    with stderr_path.open("a", encoding="utf-8") as errlog, anyio.fail_after(60 * TRIALS):
        async with stdio_server(env, errlog=errlog) as c:
            issued = await call(c, "issue_card", {"amount": str(SETUP_LOAD), "request_id": "crash-setup"})
            card_id = issued["card"]["card_id"]

        calls = [c for trial in range(TRIALS) for c in money_calls(card_id, trial)]
        for tool, args in calls:
            async with stdio_server({**env, "INTERLACE_CRASH_AT": point}, errlog=errlog) as crashing:
                await die_in_call(crashing, tool, args)

        # Restart without the crash point: recovery runs at startup, then the agent retries each request.
        async with stdio_server(env, errlog=errlog) as c:
            settled = [await c.call_tool("get_request_status", {"request_id": a["request_id"]}) for _, a in calls]
            results = [await call(c, tool, args) for tool, args in calls]
            card = await call(c, "get_card", {"card_id": card_id})

    stderr = stderr_path.read_text(encoding="utf-8")
    assert stderr.count(f"crash point {point} reached") == len(calls), stderr[-2000:]
    # Startup recovery settled every crashed request by lookup before the agent came back: what never
    # reached Interlace was released (and forgotten), what did was committed.
    for status in settled:
        if point in ("after_reserve", "after_intent"):
            assert status.is_error and status.content[0].text.startswith("[not_found]"), status  # type: ignore[union-attr]
        else:
            assert not status.is_error and status.structured_content is not None, status
            assert status.structured_content["status"] == "completed", status
    assert all(r["status"] == "completed" for r in results), results
    # Before the send, the request was released at startup and the retry ran afresh; after it, the
    # retry is a replay of what recovery (or the commit) settled.
    replayed = point in ("after_upstream", "after_commit")
    assert all(r["replayed"] is replayed for r in results), results

    state = emulator.state()
    top_ups = Decimal(TRIALS) * TOP_UP
    assert Decimal(card["balance"]) == SETUP_LOAD + top_ups
    assert Decimal(state["loaded_total"]) == SETUP_LOAD + top_ups
    assert Decimal(state["transfers_total"]) == Decimal(TRIALS) * PAY
    moved = Counter(m["clientTransactionId"] for m in state["movements"] if m["clientTransactionId"])
    assert max(moved.values()) == 1, moved  # no clientTransactionId moved twice
    assert len([m for m in state["movements"] if m["kind"] in ("transfer_in", "transfer_external")]) == len(calls)

    ledger = Ledger(database)
    try:
        scope = f"{emulator.base_url}#{ACCOUNT_ID}"
        assert ledger.reserved_total(scope) == Decimal("0")
        assert ledger.committed_total(scope) == Decimal(state["loaded_total"]) + Decimal(state["transfers_total"])
        assert ledger.open_requests(scope) == []
    finally:
        ledger.close()

    reconciled = subprocess.run(
        interlace_command("reconcile"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "differences: 0" in reconciled.stdout, reconciled.stdout
