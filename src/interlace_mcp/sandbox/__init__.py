"""A stateful emulator of the Interlace Open API v3 sandbox (docs/wire-contract.md)."""

from ._app import SandboxConnectionDropped, create_sandbox_app
from ._crypto import decrypt_card_field, encrypt_card_field
from ._identity import IDENTITY_MARKER, identity_proof
from ._runner import FaultSpec, parse_fault, run_sandbox, sandbox_banner
from ._seeds import (
    ACCOUNT_ID,
    BUDGET_BIN_ID,
    CARDHOLDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    CRYPTO_WALLET_ID,
    DEPOSIT_ADDRESS,
    DEPOSIT_CHAIN,
    INFINITY_BALANCE_ID,
    INITIAL_INFINITY_BALANCE,
    INITIAL_USDC_BALANCE,
    PAYEE_ACCOUNT_ID,
    PAYEE_BALANCE_ID,
    PREPAID_BIN,
    PREPAID_BIN_ID,
    SEEDS,
)
from ._state import DECLINES, Decline, FaultRule, SandboxError, SandboxState, luhn_valid
from ._webhooks import WebhookDelivery, WebhookEnvelope, WebhookSink, sign_resource

__all__ = [
    "ACCOUNT_ID",
    "BUDGET_BIN_ID",
    "CARDHOLDER_ID",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CRYPTO_WALLET_ID",
    "DECLINES",
    "DEPOSIT_ADDRESS",
    "DEPOSIT_CHAIN",
    "IDENTITY_MARKER",
    "INFINITY_BALANCE_ID",
    "INITIAL_INFINITY_BALANCE",
    "INITIAL_USDC_BALANCE",
    "PAYEE_ACCOUNT_ID",
    "PAYEE_BALANCE_ID",
    "PREPAID_BIN",
    "PREPAID_BIN_ID",
    "SEEDS",
    "Decline",
    "FaultRule",
    "FaultSpec",
    "SandboxConnectionDropped",
    "SandboxError",
    "SandboxState",
    "WebhookDelivery",
    "WebhookEnvelope",
    "WebhookSink",
    "create_sandbox_app",
    "decrypt_card_field",
    "encrypt_card_field",
    "identity_proof",
    "luhn_valid",
    "parse_fault",
    "run_sandbox",
    "sandbox_banner",
    "sign_resource",
]
