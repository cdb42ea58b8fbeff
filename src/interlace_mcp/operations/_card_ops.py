"""The card operations: issue a card, move money onto or off a card, close a card."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal, Self

from interlace_mcp.client import Card, InterlaceError, NotFoundError, wire_time
from interlace_mcp.money import format_amount
from interlace_mcp.operations._base import (
    CardTerms,
    Deps,
    Execution,
    Expected,
    Lookup,
    Operation,
    OperationSpec,
    Outcome,
)
from interlace_mcp.operations._cards import card_after_movement, card_result, fetch_card
from interlace_mcp.operations._refusals import upstream_ref
from interlace_mcp.operations._results import CardResult
from interlace_mcp.policy import AgentPolicy, CardRecord, Payee, Refusal, RequestRecord, Violation, epoch_to_iso

__all__ = ["CardTransfer", "CloseCard", "IssueCard"]

logger = logging.getLogger("interlace_mcp.operations")


def _last_four(card: CardResult | None) -> str:
    return card.last_four if card is not None and card.last_four else "(unknown)"


async def _card_transaction(ex: Execution, card_id: str, key: str) -> str | None:
    """The id of this card's movement with clientTransactionId ``key`` (None: Interlace has none)."""
    page = await ex.client.list_card_transactions(card_id=card_id, client_transaction_id=key)
    for txn in page.items:
        if txn.client_transaction_id == key and txn.status != "FAIL":
            return txn.id
    return None


def _four(card: Card) -> str | None:
    last = card.card_last_four
    return last if last is not None and len(last) == 4 and last.isdigit() else None


def _created_at(card: Card) -> float | None:
    """The card's ``createTime`` (ms string) in epoch seconds, if it is one."""
    moment = wire_time(card.create_time)
    return moment.timestamp() if moment is not None else None


@dataclass
class IssueCard(Operation):
    """A virtual prepaid card for the agent, loaded with ``amount`` (create by referenceId, then velocity and
    merchant-category controls). ``single_use`` / ``expires_in_minutes``: the server closes it by itself."""

    SPEC: ClassVar[OperationSpec] = OperationSpec("issue_card", steps=("create", "velocity"), issues_card=True)

    value: Decimal
    request_id: str
    currency: str = "USD"
    label: str | None = None
    single_use: bool = False
    expires_in_minutes: int | None = None
    card_id: str | None = field(default=None, init=False, repr=False)
    record: CardRecord | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def spec(self) -> OperationSpec:
        return self.SPEC

    @property
    def amount(self) -> Decimal:
        return self.value

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"amount": format_amount(self.value), "currency": self.currency, "label": self.label}
        # Only when asked for: requests stored before these arguments existed keep their hash.
        if self.single_use:
            args["single_use"] = True
        if self.expires_in_minutes is not None:
            args["expires_in_minutes"] = self.expires_in_minutes
        return args

    def summary(self) -> str:
        kind = "single-use card" if self.single_use else "card"
        lasting = f" that closes after {self.expires_in_minutes} min" if self.expires_in_minutes is not None else ""
        return f"issue a {kind}{lasting} loaded with {format_amount(self.value)} {self.currency}"

    def terms(self, policy: AgentPolicy) -> tuple[bool, int | None]:
        """(single-use, lifetime in minutes) as policy makes them: ``single_use_cards`` forces single-use;
        ``card_max_ttl_minutes`` caps the lifetime, and is the lifetime of a card asked for without one."""
        minutes = self.expires_in_minutes
        cap = policy.card_max_ttl_minutes
        if cap is not None:
            minutes = cap if minutes is None else min(minutes, cap)
        return self.single_use or policy.single_use_cards, minutes

    def violations(self, policy: AgentPolicy, payees: Mapping[str, Payee]) -> list[Violation]:
        found = super().violations(policy, payees)
        cap, asked = policy.card_max_ttl_minutes, self.expires_in_minutes
        if cap is not None and asked is not None and asked > cap:
            found.append(
                Violation(
                    "card_max_ttl_minutes",
                    f"cards of agent {policy.agent!r} may live at most {cap} minutes (card_max_ttl_minutes):"
                    f" {asked} requested; ask for {cap} or fewer, or leave out expires_in_minutes to get {cap}",
                    {"limit": cap, "requested": asked},
                )
            )
        return found

    def approval_details(self) -> dict[str, Any]:
        details = super().approval_details()
        if self.label:
            details["agent_text"] = {"field": "label", "text": self.label}
        return details

    @classmethod
    def from_record(cls, record: RequestRecord) -> Self:
        args = record.args
        value = Decimal(str(args["amount"])) if "amount" in args else record.amount
        minutes = args.get("expires_in_minutes")
        return cls(
            value,
            record.key.request_id,
            record.currency,
            args.get("label"),
            single_use=bool(args.get("single_use", False)),
            expires_in_minutes=int(minutes) if minutes is not None else None,
        )

    def _card_terms(self, policy: AgentPolicy, card: Card, issued_at: float) -> CardTerms:
        single_use, minutes = self.terms(policy)
        expires_at = issued_at + minutes * 60 if minutes is not None else None
        return CardTerms(single_use=single_use, expires_at=expires_at, last_four=_four(card))

    async def find(self, ex: Execution) -> Lookup:
        found = await ex.client.list_cards(reference_id=ex.step_key("create"))
        if not found.items:
            return Lookup.absent()
        card = found.items[0]
        issued_at = _created_at(card) or ex.record.updated_at
        outcome = Outcome(
            amount=self.value,
            transaction_id=card.id,
            new_card=(card.id, card.label or self.label),
            card_terms=self._card_terms(ex.policy, card, issued_at),
        )
        return Lookup("done", outcome, {"card": card})

    async def send(self, ex: Execution, found: Lookup | None) -> Outcome:
        reference = ex.step_key("create")
        card: Card | None = found.facts.get("card") if found is not None else None
        created_now = card is None
        if card is None:
            default_bin, default_holder = await ex.deps.card_product()
            bin_id = ex.policy.bin_id or default_bin
            holder = ex.policy.cardholder_id or default_holder
            if not bin_id or not holder:
                raise Refusal.one(
                    "upstream_error",
                    "no card product configured: an operator must set INTERLACE_BIN_ID and INTERLACE_CARDHOLDER_ID "
                    "(interlace-mcp doctor lists them)",
                )
            card = await ex.client.create_prepaid_card(
                bin_id=bin_id,
                cardholder_id=holder,
                reference_id=reference,
                amount=self.value,
                label=self.label,
                idempotency_key=reference,
            )
        ex.moved = True
        warnings: list[str] = []
        limit = ex.policy.card_spend_limit
        velocity_set = False
        if limit is not None:
            try:
                card = await ex.client.set_velocity_control(
                    card.id, limit_type=limit.window, amount=limit.amount, idempotency_key=ex.step_key("velocity")
                )
                velocity_set = True
            except InterlaceError as exc:
                # The money already moved: report, don't fail. The prepaid balance still bounds spending.
                logger.warning("velocity control on card %s not set: %s", card.id, exc)
                warnings.append(
                    f"card spend limit ({limit.window} {format_amount(limit.amount)}) not set at Interlace"
                    f"{upstream_ref(exc)}"
                )
        allow, block = ex.policy.mcc_allow, ex.policy.mcc_block
        if allow or block:
            try:
                # Converges (reads the card's rules, adds what is missing): safe to repeat on a retry.
                await ex.client.set_card_mcc_controls(card.id, allow=list(allow), block=list(block))
            except InterlaceError as exc:
                logger.warning("merchant-category controls on card %s not set: %s", card.id, exc)
                warnings.append(
                    f"merchant categories (mcc_allow / mcc_block) not set at Interlace{upstream_ref(exc)}; this server"
                    " still freezes the card after an authorization in another category"
                )
        terms = self._card_terms(ex.policy, card, ex.deps.store.now())
        ex.deps.cards.put(card)
        issued: CardResult | None
        if created_now:
            # No read needed: Interlace just answered with the card (and its velocity), and a card created in
            # this call holds exactly its initial load -- nobody else has its number yet, fees are taken from
            # the Infinity account, and our own velocity call moves no money.
            issued = card_result(card, sandbox=ex.deps.sandbox, balance=format_amount(self.value))
        else:  # created by an earlier attempt: anything may have happened to it since, so read it
            issued = await card_after_movement(
                ex.client, ex.deps.cards, card.id, None, warnings, sandbox=ex.deps.sandbox
            )
        if issued is not None:
            issued = issued.model_copy(
                update={"single_use": terms.single_use, "expires_at": epoch_to_iso(terms.expires_at)}
            )
        message = f"issued card ending {_four(card) or '(unknown)'} with {format_amount(self.value)} {self.currency}"
        if terms.single_use:
            message += "; single-use: the server closes it and returns what is left after its first settled purchase"
        if terms.expires_at is not None:
            message += f"; it closes at {epoch_to_iso(terms.expires_at)} with what is left returned"
        return Outcome(
            amount=self.value,
            transaction_id=card.id,
            card=issued,
            message=message,
            warnings=warnings,
            new_card=(card.id, self.label),
            card_terms=terms,
            progress={"card_id": card.id, "velocity_set": velocity_set},
        )


@dataclass
class CardTransfer(Operation):
    """Money onto a card from the Infinity account (``in``: top-up, spend) or back off it (``out``: withdraw)."""

    SPECS: ClassVar[dict[str, OperationSpec]] = {
        "in": OperationSpec("top_up_card", steps=("transfer",)),
        "out": OperationSpec("withdraw_from_card", steps=("transfer",), spends=False, needs_consent=False),
    }

    direction: Literal["in", "out"]
    card_id: str | None
    value: Decimal
    request_id: str
    currency: str = "USD"
    #: The agent's card record (label, who froze it) for the result; not part of the request.
    record: CardRecord | None = field(default=None, compare=False)
    #: The card's last four digits where known (for the human who confirms or approves); not part of the request.
    last_four: str | None = field(default=None, compare=False)

    @property
    def spec(self) -> OperationSpec:
        return self.SPECS[self.direction]

    def approval_details(self) -> dict[str, Any]:
        details = {**super().approval_details(), "card_id": self.card_id, "card_last_four": self.last_four}
        if self.record is not None and self.record.label:
            details["agent_text"] = {"field": "card label", "text": self.record.label}
        return details

    @property
    def amount(self) -> Decimal:
        return self.value

    @property
    def card(self) -> str:
        assert self.card_id is not None
        return self.card_id

    def arguments(self) -> dict[str, Any]:
        if self.direction == "in":
            return {"card_id": self.card_id, "amount": format_amount(self.value), "currency": self.currency}
        return {"card_id": self.card_id, "amount": format_amount(self.value)}

    def summary(self) -> str:
        if self.direction == "in":
            return f"load {format_amount(self.value)} {self.currency} onto card {self.card_id}"
        return f"unload {format_amount(self.value)} {self.currency} from card {self.card_id}"

    @classmethod
    def from_record(cls, record: RequestRecord) -> Self:
        direction: Literal["in", "out"] = "in" if record.key.tool == cls.SPECS["in"].name else "out"
        args = record.args
        value = Decimal(str(args["amount"])) if "amount" in args else record.amount
        card_id = args.get("card_id") or record.card_id
        return cls(direction, card_id, value, record.key.request_id, record.currency)

    def expected(self, record: RequestRecord) -> list[Expected]:
        amount = Decimal(str((record.result or {}).get("amount") or "0"))
        return [Expected(record.keys["transfer"], amount, card_id=self.card_id)]

    async def find(self, ex: Execution) -> Lookup:
        txn_id = await _card_transaction(ex, self.card, ex.step_key("transfer"))
        if txn_id is None:
            return Lookup.absent()
        return Lookup("done", Outcome(amount=self.value, transaction_id=txn_id), {"transaction_id": txn_id})

    async def send(self, ex: Execution, found: Lookup | None) -> Outcome:
        key = ex.step_key("transfer")
        txn_id: str | None = found.facts.get("transaction_id") if found is not None else None
        if txn_id is None:
            move = ex.client.transfer_in if self.direction == "in" else ex.client.transfer_out
            txn = await move(card_id=self.card, amount=self.value, client_transaction_id=key, idempotency_key=key)
            txn_id = txn.id
        ex.moved = True
        warnings: list[str] = []
        card = await card_after_movement(
            ex.client,
            ex.deps.cards,
            self.card,
            self.record,
            warnings,
            sandbox=ex.deps.sandbox,
            loaded=self.direction == "in",
        )
        amount = f"{format_amount(self.value)} {self.currency}"
        if self.direction == "in":
            message = f"loaded {amount} onto card ending {_last_four(card)}"
        else:
            message = f"unloaded {amount} from card ending {_last_four(card)} to Infinity"
        return Outcome(amount=self.value, transaction_id=txn_id, card=card, message=message, warnings=warnings)


@dataclass
class CloseCard(Operation):
    """Unload the card's whole balance to the Infinity account (amount fixed before the first send), then delete it."""

    SPEC: ClassVar[OperationSpec] = OperationSpec(
        "close_card", steps=("unload", "delete"), spends=False, needs_consent=False
    )

    card_id: str | None
    request_id: str
    currency: str = "USD"
    record: CardRecord | None = field(default=None, compare=False)
    #: The card as read by :meth:`plan` (for the result).
    _card: Card | None = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> OperationSpec:
        return self.SPEC

    @property
    def amount(self) -> None:
        return None

    @property
    def card(self) -> str:
        assert self.card_id is not None
        return self.card_id

    def arguments(self) -> dict[str, Any]:
        return {"card_id": self.card_id}

    def summary(self) -> str:
        return f"close card {self.card_id} and return its balance"

    @classmethod
    def from_record(cls, record: RequestRecord) -> Self:
        return cls(record.args.get("card_id") or record.card_id, record.key.request_id, record.currency)

    def expected(self, record: RequestRecord) -> list[Expected]:
        if not record.progress.get("unload_txn"):
            return []
        amount = Decimal(str((record.result or {}).get("amount") or "0"))
        return [Expected(record.keys["unload"], amount, card_id=self.card_id)]

    async def plan(self, deps: Deps) -> dict[str, Any]:
        """Fix the unload before the first send, so every retry unloads the same amount with the same key."""
        card, summary = await fetch_card(deps.client, self.card, deps.cards)  # gone already: not found
        self._card = card
        return {"unload": format_amount(summary.balance.available)}

    async def find(self, ex: Execution) -> Lookup:
        unload = Decimal(str(ex.progress.get("unload", "0")))
        try:
            card = await ex.client.get_card(self.card)
        except NotFoundError:
            outcome = Outcome(
                amount=unload,
                transaction_id=ex.progress.get("unload_txn"),
                deleted_card=self.card,
                progress={**ex.progress, "deleted": True},
            )
            return Lookup("done", outcome)
        if unload > 0:
            txn_id = await _card_transaction(ex, self.card, ex.step_key("unload"))
            if txn_id is not None:
                return Lookup("partial", None, {"card": card, "unload_txn": txn_id})
        return Lookup("absent", None, {"card": card})

    async def send(self, ex: Execution, found: Lookup | None) -> Outcome:
        if found is not None and found.state == "done" and found.outcome is not None:
            ex.moved = True
            return found.outcome
        progress = ex.progress
        card = found.facts.get("card") if found is not None else self._card
        if "unload" not in progress:  # a request reserved before its amount was fixed
            card, summary = await fetch_card(ex.client, self.card, ex.deps.cards)
            progress["unload"] = format_amount(summary.balance.available)
        unload = Decimal(str(progress["unload"]))
        txn_id: str | None = found.facts.get("unload_txn") if found is not None else None
        if unload > 0 and txn_id is None:
            key = ex.step_key("unload")
            txn = await ex.client.transfer_out(
                card_id=self.card, amount=unload, client_transaction_id=key, idempotency_key=key
            )
            txn_id = txn.id
        ex.moved = ex.moved or txn_id is not None
        try:
            await ex.client.delete_card(self.card)
        except NotFoundError:
            pass  # a delete of a deleted card counts as done
        ex.moved = True
        ex.deps.cards.forget(self.card)
        closed = (
            card_result(card, sandbox=ex.deps.sandbox, record=self.record, status="DELETED", balance="0.00")
            if card is not None
            else None
        )
        return Outcome(
            amount=unload,
            transaction_id=txn_id,
            card=closed,
            message=f"card closed; {format_amount(unload)} USD returned to the Infinity account",
            deleted_card=self.card,
            progress={**progress, "unload_txn": txn_id, "deleted": True},
        )
