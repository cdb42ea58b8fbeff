"""The dashboard overview shows the account's balances: Infinity and the funding wallet's stablecoins (read-only)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from dashboard.support import in_process, make_app, runtime_of, sign_in
from helpers import sandbox_of
from interlace_mcp.app import fund_as_operator
from interlace_mcp.sandbox import CRYPTO_WALLET_ID, create_sandbox_app

pytestmark = pytest.mark.anyio


def balances_section(page: str) -> str:
    found = re.search(r"<h2>Balances</h2>\s*(<section.*?</section>)", page, re.S)
    assert found, page
    return found.group(1)


async def test_overview_shows_the_infinity_balance_and_the_wallets_stablecoins(tmp_path: Path) -> None:
    """After a deposit and an operator funding, the overview shows both balances as Interlace has them now."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    async with in_process(app) as http:
        rt = runtime_of(app)
        await rt.api.sandbox_deposit(amount=Decimal("0.125"), currency="USDT")
        await fund_as_operator(rt, Decimal("40.00"), currency="USDC", request_id="op-1", by="alice")
        await sign_in(http)
        section = balances_section((await http.get("/dashboard")).text)
    assert "Infinity account" in section and "10040.00" in section
    assert CRYPTO_WALLET_ID in section
    assert re.search(r"<td>USDC</td><td class=\"num\">4960\.00</td>", section), section
    assert re.search(r"<td>USDT</td><td class=\"num\">0\.125</td>", section), section
    assert "<form" not in section  # read-only: nothing to press


async def test_overview_still_loads_when_interlace_cannot_be_read(tmp_path: Path) -> None:
    """The wallet API failing leaves the page up, with the Infinity balance and a note saying what failed."""
    sandbox = create_sandbox_app()
    app = make_app(tmp_path, sandbox)
    async with in_process(app) as http:
        await sign_in(http)
        sandbox_of(sandbox).add_fault("/open-api/v3/cryptoconnect/wallets", "error", status=503, times=8)
        response = await http.get("/dashboard")
    section = balances_section(response.text)
    assert response.status_code == 200
    assert "10000.00" in section and "could not be read" in section and "USDC" not in section
