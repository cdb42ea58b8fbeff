"""The acceptance flow against ``interlace-mcp sandbox`` on a loopback port: real HTTP, real OAuth."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from e2e.support import EMBEDDED_BANNER, Emulator, StdioFactory, acceptance_flow
from interlace_mcp.sandbox import CLIENT_ID, INFINITY_BALANCE_ID, PAYEE_BALANCE_ID

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

V3 = "/open-api/v3"


async def test_acceptance_flow_through_a_loopback_emulator(
    tmp_path: Path, emulator: Emulator, stdio_server: StdioFactory
) -> None:
    """`interlace-mcp sandbox` on loopback proves it is our emulator (built-in sandbox policy); every movement
    reaches it."""
    banner = emulator.output.read_text(errors="replace")
    assert emulator.base_url in banner and CLIENT_ID in banner

    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("w", encoding="utf-8") as errlog, anyio.fail_after(30):
        async with stdio_server(emulator.server_env(tmp_path / "server-state"), errlog=errlog) as c:
            card_id = await acceptance_flow(c)

    # Not the in-process emulator: the server must not claim it is, nor write an emulator state file.
    assert EMBEDDED_BANNER not in stderr_path.read_text(encoding="utf-8")
    assert not (tmp_path / "server-state" / "sandbox-state.json").exists()
    # ... while `interlace-mcp sandbox` keeps its state in its own INTERLACE_STATE_DIR.
    assert (tmp_path / "emulator-state" / "sandbox-state.json").is_file()

    state = emulator.state()
    assert Decimal(state["loaded_total"]) == Decimal("15.00")  # 10.00 initial load + 5.00 top-up
    assert Decimal(state["unloaded_total"]) == Decimal("15.00")  # close_card swept it all back
    assert Decimal(state["transfers_total"]) == Decimal("3.00")
    assert state["infinity"][INFINITY_BALANCE_ID] == "9997.00"
    assert state["infinity"][PAYEE_BALANCE_ID] == "3.00"
    assert state["cards"][card_id]["status"] == "DELETED"
    assert state["card_count"] == 0

    requests = state["requests"]
    assert requests.get(f"GET {V3}/oauth/authorize", 0) >= 1, requests
    assert requests.get(f"POST {V3}/oauth/access-token", 0) >= 1, requests
    assert requests.get(f"POST {V3}/prepaid-card") == 1, requests
    assert requests.get(f"POST {V3}/cards/transfer-in") == 1, requests
    assert requests.get(f"POST {V3}/business/transfer/external") == 1, requests
