"""``interlace-mcp sandbox deposit | simulate-purchase | settle`` on the persisted embedded emulator."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from interlace_mcp.app import sandbox_state_path
from interlace_mcp.cli import main
from interlace_mcp.config import Settings
from interlace_mcp.sandbox import (
    ACCOUNT_ID,
    CARDHOLDER_ID,
    CRYPTO_WALLET_ID,
    DEPOSIT_ADDRESS,
    PREPAID_BIN_ID,
    SandboxState,
)


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    path = sandbox_state_path(Settings(_env_file=None))  # type: ignore[call-arg]
    assert path is not None
    return Path(path)


def emulator(path: Path) -> SandboxState:
    return SandboxState.load(path)


def test_sandbox_deposit_credits_the_wallet_in_the_state_file(
    state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deposit --amount 100 adds 100 USDC to the seeded wallet; a bad amount is exit 2 and changes nothing."""
    assert main(["sandbox", "deposit", "--amount", "100"]) == 0
    out = capsys.readouterr().out
    assert "deposited 100.00 USDC on ETH" in out and DEPOSIT_ADDRESS in out and "5100.00 USDC" in out
    assert emulator(state_file).wallets[CRYPTO_WALLET_ID].available["USDC"] == Decimal("5100.00")
    assert main(["sandbox", "deposit", "--amount", "7.5", "--currency", "USDT"]) == 0
    assert emulator(state_file).wallets[CRYPTO_WALLET_ID].available["USDT"] == Decimal("7.50")
    capsys.readouterr()
    assert main(["sandbox", "deposit", "--amount", "-1"]) == 2
    assert "--amount" in capsys.readouterr().err
    assert emulator(state_file).wallets[CRYPTO_WALLET_ID].available["USDC"] == Decimal("5100.00")


def test_simulate_purchase_with_mcc_and_three_ds_then_settle(
    state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """simulate-purchase --mcc --three-ds authorizes (declines name the code); settle clears it now."""
    main(["sandbox", "deposit", "--amount", "1"])  # creates the state file
    state = emulator(state_file)
    card = state.issue_prepaid_card(
        ACCOUNT_ID,
        bin_id=PREPAID_BIN_ID,
        cardholder_id=CARDHOLDER_ID,
        reference_id="cli",
        card_mode="VIRTUAL_CARD",
        amount=Decimal("10"),
    )
    state.config.settle_after_seconds = 3600
    state.save(state_file)
    capsys.readouterr()
    args = ["sandbox", "simulate-purchase", "--card", card.id, "--amount", "4", "--merchant", "Shop"]
    assert main([*args, "--mcc", "5734", "--three-ds"]) == 0
    assert "approved" in capsys.readouterr().out
    assert main([*args, "--amount", "40"]) == 0
    assert "declined: insufficient balance (code 1201)" in capsys.readouterr().out
    (pending,) = [t for t in emulator(state_file).card_transactions.values() if t.status == "PENDING"]
    assert pending.mcc == "5734"
    assert main(["sandbox", "settle", "--card", card.id]) == 0
    assert f"settled 4.00 USD on card {card.id}" in capsys.readouterr().out
    assert emulator(state_file).card_transactions[pending.id].status == "CLOSED"
    assert main(["sandbox", "settle"]) == 0
    assert "nothing was pending" in capsys.readouterr().out
