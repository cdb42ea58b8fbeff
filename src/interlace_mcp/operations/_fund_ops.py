"""Funding the Infinity account from a CryptoConnect wallet (stablecoins in, USD out at 1:1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Self

from interlace_mcp.client import NotFoundError
from interlace_mcp.money import format_amount
from interlace_mcp.operations._base import Deps, Execution, Expected, Lookup, Operation, OperationSpec, Outcome
from interlace_mcp.operations._refusals import upstream_word
from interlace_mcp.policy import CardRecord, Refusal, RequestRecord

__all__ = ["FundAccount"]


@dataclass
class FundAccount(Operation):
    """``amount`` USDC/USDT from the account's CryptoConnect wallet into its Infinity account (as USD, 1:1).

    An internal business transfer (``businessType`` 2 -> 0) keyed by its ``clientTransactionId``. It brings
    money in, so it is not spend: it is held in the funding window (``fund_daily``) instead, and
    ``approval_above`` and the confirmation band apply to its amount as to any money tool.
    """

    SPEC: ClassVar[OperationSpec] = OperationSpec("fund_account", steps=("transfer",), spends=False, funds=True)

    value: Decimal
    request_id: str
    currency: str = "USDC"
    #: The wallet to fund from (INTERLACE_CRYPTO_WALLET_ID); None: the account's master wallet, found once
    #: by ``plan`` and stored with the request, so every retry and recovery uses the same one.
    wallet_id: str | None = field(default=None, compare=False)
    card_id: str | None = field(default=None, init=False, repr=False)
    record: CardRecord | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def spec(self) -> OperationSpec:
        return self.SPEC

    @property
    def amount(self) -> Decimal:
        return self.value

    def arguments(self) -> dict[str, Any]:
        return {"amount": format_amount(self.value), "currency": self.currency}

    def summary(self) -> str:
        amount = format_amount(self.value)
        return f"fund the Infinity account with {amount} {self.currency} from the CryptoConnect wallet"

    @classmethod
    def from_record(cls, record: RequestRecord) -> Self:
        args = record.args
        value = Decimal(str(args["amount"])) if "amount" in args else record.amount
        wallet = record.progress.get("wallet_id")
        return cls(value, record.key.request_id, str(args.get("currency") or record.currency), wallet)

    def expected(self, record: RequestRecord) -> list[Expected]:
        amount = Decimal(str((record.result or {}).get("amount") or "0"))
        return [Expected(record.keys["transfer"], amount)]

    async def plan(self, deps: Deps) -> dict[str, Any]:
        """Which wallet pays: the configured one, else the account's master wallet (stored with the request)."""
        if self.wallet_id is not None:
            return {"wallet_id": self.wallet_id}
        try:
            wallet = await deps.client.default_crypto_wallet()
        except NotFoundError:
            raise Refusal.one(
                "not_found",
                "this Interlace account has no CryptoConnect wallet to fund from; nothing moved. An operator"
                " creates one in the Interlace portal (or sets INTERLACE_CRYPTO_WALLET_ID)",
            ) from None
        return {"wallet_id": wallet.id}

    async def find(self, ex: Execution) -> Lookup:
        key = ex.step_key("transfer")
        found = await ex.client.list_transfers(client_transaction_id=key)
        transfer = next((t for t in found.items if t.client_transaction_id == key), None)
        if transfer is None:
            return Lookup.absent()
        outcome = Outcome(amount=self.value, transaction_id=transfer.id, message=self._message(transfer.status))
        return Lookup("done", outcome, {"transfer": transfer})

    async def send(self, ex: Execution, found: Lookup | None) -> Outcome:
        if found is not None and found.state == "done" and found.outcome is not None:
            ex.moved = True
            return found.outcome
        key = ex.step_key("transfer")
        wallet_id = ex.progress.get("wallet_id") or self.wallet_id
        transfer = await ex.client.transfer_from_wallet(
            amount=self.value,
            currency=self.currency,
            client_transaction_id=key,
            idempotency_key=key,
            wallet_id=str(wallet_id) if wallet_id else None,
        )
        ex.moved = True
        return Outcome(amount=self.value, transaction_id=transfer.id, message=self._message(transfer.status))

    def _message(self, status: str | None) -> str:
        return (
            f"moved {format_amount(self.value)} {self.currency} from the CryptoConnect wallet into the Infinity"
            f" account as USD (1:1; Interlace status {upstream_word(status)})"
        )
