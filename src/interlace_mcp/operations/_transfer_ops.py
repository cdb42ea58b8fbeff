"""The business transfer to an operator-defined payee."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Self

from interlace_mcp.money import format_amount
from interlace_mcp.operations._base import Deps, Execution, Expected, Lookup, Operation, OperationSpec, Outcome
from interlace_mcp.operations._refusals import upstream_word
from interlace_mcp.policy import AgentPolicy, CardRecord, Payee, Refusal, RequestRecord, Violation, payee_violation

__all__ = ["CreateTransfer"]


@dataclass
class CreateTransfer(Operation):
    """``amount`` from the Infinity account to a payee on the agent's ``transfer_payees`` list."""

    SPEC: ClassVar[OperationSpec] = OperationSpec("create_transfer", steps=("transfer",))

    payee: str
    value: Decimal
    request_id: str
    currency: str = "USD"
    memo: str | None = None
    #: The payee's account as the policy names it now (None: unknown; refused before anything is reserved).
    target: Payee | None = field(default=None, compare=False)
    card_id: str | None = field(default=None, init=False, repr=False)
    record: CardRecord | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def spec(self) -> OperationSpec:
        return self.SPEC

    @property
    def amount(self) -> Decimal:
        return self.value

    def arguments(self) -> dict[str, Any]:
        return {"payee": self.payee, "amount": format_amount(self.value), "currency": self.currency, "memo": self.memo}

    def summary(self) -> str:
        return f"transfer {format_amount(self.value)} {self.currency} to payee {self.payee}"

    def violations(self, policy: AgentPolicy, payees: Mapping[str, Payee]) -> list[Violation]:
        found = super().violations(policy, payees)
        if (v := payee_violation(policy, self.payee, self.payee in payees)) is not None:
            found.append(v)
        return found

    def _account(self) -> dict[str, str] | None:
        if self.target is None:
            return None
        return {"account_id": self.target.account_id, "balance_id": self.target.balance_id}

    async def plan(self, deps: Deps) -> dict[str, Any]:
        """Bind the payee's account as the policy names it now: an approval approves THIS account, and the
        execution pays it (or refuses when the policy since points the name elsewhere)."""
        account = self._account()
        return {"payee_account": account} if account is not None else {}

    def binding_violations(self, record: RequestRecord) -> list[Violation]:
        bound = record.progress.get("payee_account")
        now = self._account()
        if not isinstance(bound, dict) or now is None or now == bound:
            return []  # unbound (an older request), or gone from the policy (payee_violation says so)
        return [
            Violation(
                "payee_not_allowed",
                f"payee {self.payee!r} now names another account than the one this request was reserved and"
                f" approved for (account {bound.get('account_id')}, balance {bound.get('balance_id')}); approved"
                " money never follows an edited payee",
                {"payee": self.payee},
            )
        ]

    def approval_details(self) -> dict[str, Any]:
        details = {**super().approval_details(), "payee": self.payee, "payee_account": self._account()}
        if self.memo:
            details["agent_text"] = {"field": "memo", "text": self.memo}
        return details

    @classmethod
    def from_record(cls, record: RequestRecord) -> Self:
        args = record.args
        value = Decimal(str(args["amount"])) if "amount" in args else record.amount
        return cls(str(args.get("payee", "")), value, record.key.request_id, record.currency, args.get("memo"))

    def expected(self, record: RequestRecord) -> list[Expected]:
        amount = Decimal(str((record.result or {}).get("amount") or "0"))
        return [Expected(record.keys["transfer"], amount)]

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
        # The account bound when the request was reserved (and approved); an older request: the policy's now.
        account = ex.progress.get("payee_account") or self._account()
        if not isinstance(account, dict):  # refused before any reservation; only a changed policy gets here
            raise Refusal.one("payee_not_allowed", f"payee {self.payee!r} is no longer defined; nothing moved")
        key = ex.step_key("transfer")
        transfer = await ex.client.create_transfer(
            to_account_id=str(account["account_id"]),
            to_balance_id=str(account["balance_id"]),
            amount=self.value,
            currency=self.currency,
            client_transaction_id=key,
            idempotency_key=key,
        )
        ex.moved = True
        return Outcome(amount=self.value, transaction_id=transfer.id, message=self._message(transfer.status))

    def _message(self, status: str | None) -> str:
        amount = f"{format_amount(self.value)} {self.currency}"
        return f"sent {amount} to {self.payee} (Interlace status {upstream_word(status)})"
