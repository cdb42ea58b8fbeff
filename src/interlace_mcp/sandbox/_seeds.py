"""The fixed seeds of the sandbox emulator (docs/wire-contract.md, "Emulator seeds")."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

__all__ = [
    "ACCOUNT_ID",
    "ACCOUNT_NAME",
    "BUDGET_BIN",
    "BUDGET_BIN_ID",
    "CARDHOLDER_ID",
    "CARDHOLDER_NAME",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CRYPTO_WALLET_ID",
    "CRYPTO_WALLET_REFERENCE_ID",
    "DEPOSIT_ADDRESS",
    "DEPOSIT_ADDRESS_ID",
    "DEPOSIT_CHAIN",
    "INFINITY_BALANCE_ID",
    "INITIAL_INFINITY_BALANCE",
    "INITIAL_USDC_BALANCE",
    "PAYEE_ACCOUNT_ID",
    "PAYEE_ACCOUNT_NAME",
    "PAYEE_BALANCE_ID",
    "PREPAID_BIN",
    "PREPAID_BIN_ID",
    "SEEDS",
]

CLIENT_ID: Final = "sandbox-client"
#: 32 UTF-8 bytes, so it is also a valid AES-256 key for the card-detail encryption.
CLIENT_SECRET: Final = "sandbox-secret-0123456789abcdef!"
ACCOUNT_ID: Final = "6b1f3f7e-0c1a-4d2b-9e61-3a5c0d9e1a01"
ACCOUNT_NAME: Final = "Sandbox Merchant"
INFINITY_BALANCE_ID: Final = "0f4e2a6c-7b1d-4e3a-8c5f-1d2e3f4a5b01"
INITIAL_INFINITY_BALANCE: Final = Decimal("10000.00")
PREPAID_BIN_ID: Final = "1997881966041939972"
PREPAID_BIN: Final = "411111"
BUDGET_BIN_ID: Final = "1997881966041939973"
BUDGET_BIN: Final = "428837"
CARDHOLDER_ID: Final = "1963922322985988097"
CARDHOLDER_NAME: Final = "Agent Holder"
PAYEE_ACCOUNT_ID: Final = "7c2e4f8a-1b3d-4c5e-9f60-4b6d1e0f2a02"
PAYEE_ACCOUNT_NAME: Final = "Sandbox Payee"
PAYEE_BALANCE_ID: Final = "1a5f3b7d-8c2e-4f4b-9d60-2e3f4a5b6c02"
#: The account's CryptoConnect (master) wallet: 5,000.00 USDC, 0 USDT, one ETH deposit address.
CRYPTO_WALLET_ID: Final = "3d8a6c2e-5f1b-4a7d-9c0e-6b2f4d8e1a03"
CRYPTO_WALLET_REFERENCE_ID: Final = "9e4b2d6f-1a3c-4e5b-8d7f-0c2a4e6b8d03"
INITIAL_USDC_BALANCE: Final = Decimal("5000.00")
DEPOSIT_CHAIN: Final = "ETH"
DEPOSIT_ADDRESS_ID: Final = "5b7d9f1a-3c5e-4a7b-9d1f-2e4a6c8e0b03"
#: A fixed, well-formed EVM address (not a real wallet: never send real funds to it).
DEPOSIT_ADDRESS: Final = "0x5a9dbb0e1c3f4a6b8d0e2f4a6c8e0a2b4d6f8a03"

#: What ``interlace-mcp sandbox`` prints (all strings).
SEEDS: Final[dict[str, str]] = {
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "account_id": ACCOUNT_ID,
    "infinity_balance_id": INFINITY_BALANCE_ID,
    "initial_infinity_balance": f"{INITIAL_INFINITY_BALANCE:f}",
    "prepaid_bin_id": PREPAID_BIN_ID,
    "budget_bin_id": BUDGET_BIN_ID,
    "cardholder_id": CARDHOLDER_ID,
    "payee_account_id": PAYEE_ACCOUNT_ID,
    "payee_balance_id": PAYEE_BALANCE_ID,
    "crypto_wallet_id": CRYPTO_WALLET_ID,
    "initial_usdc_balance": f"{INITIAL_USDC_BALANCE:f}",
    "deposit_chain": DEPOSIT_CHAIN,
    "deposit_address": DEPOSIT_ADDRESS,
}
