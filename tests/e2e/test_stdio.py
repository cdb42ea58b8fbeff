"""The issue-2 acceptance flow through the official mcp Client, with the server as a stdio child process."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from e2e.support import EMBEDDED_BANNER, SEED_BALANCE, StdioFactory, acceptance_flow, child_env
from helpers import call

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_acceptance_flow_over_stdio_on_the_embedded_sandbox(tmp_path: Path, stdio_server: StdioFactory) -> None:
    """All 15 tools listed; issue -> top up -> get -> transfer -> transactions -> close; balances add up.

    The server says on stderr that it runs on the embedded sandbox, and stdout stays the clean wire.
    """
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("w", encoding="utf-8") as errlog, anyio.fail_after(30):
        async with stdio_server(child_env(tmp_path / "state"), errlog=errlog) as c:
            await acceptance_flow(c)
    stderr = stderr_path.read_text(encoding="utf-8")
    assert EMBEDDED_BANNER in stderr, stderr
    # Emulator state and the ledger live in the state dir we chose, not in the user's state dir.
    assert (tmp_path / "state" / "sandbox-state.json").is_file()
    assert (tmp_path / "state" / "interlace-mcp.sqlite3").is_file()


async def test_a_restarted_stdio_server_still_knows_the_card_and_its_spend(
    tmp_path: Path, stdio_server: StdioFactory
) -> None:
    """Emulator state and the ledger persist in INTERLACE_STATE_DIR across two stdio sessions."""
    env = child_env(tmp_path / "state")
    with anyio.fail_after(30):
        async with stdio_server(env) as first:
            issued = await call(first, "issue_card", {"amount": "7.00", "request_id": "persist-1"})
            card_id = issued["card"]["card_id"]

        async with stdio_server(env) as second:
            cards = await call(second, "list_cards", {})
            assert card_id in [card["card_id"] for card in cards["cards"]]
            card = await call(second, "get_card", {"card_id": card_id})
            assert card["balance"] == "7.00"
            balance = await call(second, "get_balance", {})
            assert Decimal(balance["available"]) == SEED_BALANCE - Decimal("7.00")
            spend = await call(second, "get_spend_status", {})
            day = next(w for w in spend["windows"] if w["window"] == "day")
            assert Decimal(day["spent"]) == Decimal("7.00")
            # The same request_id after a restart is a replay, not a second card.
            again = await call(second, "issue_card", {"amount": "7.00", "request_id": "persist-1"})
            assert again["replayed"] is True and again["card"]["card_id"] == card_id
            assert len((await call(second, "list_cards", {}))["cards"]) == 1
