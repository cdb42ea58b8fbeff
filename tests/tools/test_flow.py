"""The acceptance flow and the core money semantics, through the official in-memory mcp Client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from helpers import BOTH_BACKENDS, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.sandbox import INFINITY_BALANCE_ID, PAYEE_BALANCE_ID, luhn_valid

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])

DESIGN_TOOLS = {
    "issue_card", "top_up_card", "get_card", "list_cards", "get_card_transactions", "freeze_card",
    "unfreeze_card", "close_card", "withdraw_from_card", "create_transfer", "list_payees", "get_balance",
    "get_spend_status", "get_request_status", "simulate_purchase", "get_3ds_code", "get_deposit_address",
    "fund_account",
}  # fmt: skip


@MODES
async def test_every_design_tool_is_listed_with_schemas_and_all_four_annotations(
    make_server: ServerFactory, mode: str
) -> None:
    """tools/list shows every DESIGN tool with input and output schemas, a title and all four hints."""
    async with Client(make_server(), mode=mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == DESIGN_TOOLS
    for tool in tools.values():
        assert tool.title
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema.get("additionalProperties") is False
        assert tool.output_schema is not None and "sandbox" in tool.output_schema["properties"]
        ann = tool.annotations
        assert ann is not None
        hints = (ann.read_only_hint, ann.destructive_hint, ann.idempotent_hint, ann.open_world_hint)
        assert all(h is not None for h in hints), tool.name
    assert tools["issue_card"].input_schema["properties"]["amount"]["type"] == "string"
    assert tools["close_card"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert tools["get_card"].annotations.read_only_hint is True  # type: ignore[union-attr]


@MODES
async def test_issue_top_up_get_transfer_transactions_close_flow(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """The issue-2 acceptance flow: balances add up at every step and only the last four digits show."""
    sandbox = sandbox_of(sandbox_app)
    start = Decimal(sandbox.snapshot()["infinity"][INFINITY_BALANCE_ID])
    async with Client(make_server(), mode=mode) as c:
        issued = await call(c, "issue_card", {"amount": "10.00", "request_id": "issue-1", "label": "groceries"})
        assert issued["status"] == "completed" and issued["sandbox"] is True
        card_id = issued["card"]["card_id"]
        await call(c, "top_up_card", {"card_id": card_id, "amount": "5.00", "request_id": "top-1"})

        card = await call(c, "get_card", {"card_id": card_id})
        assert card["balance"] == "15.00"
        assert card["label"] == "groceries"
        assert card["card_number"] is None and card["cvv"] is None
        assert len(card["last_four"]) == 4 and card["last_four"].isdigit()

        payees = await call(c, "list_payees", {})
        assert payees["payees"] == [{"name": "sandbox-payee", "currency": "USD"}]
        sent = await call(c, "create_transfer", {"payee": "sandbox-payee", "amount": "3.00", "request_id": "pay-1"})
        assert sent["status"] == "completed" and sent["payee"] == "sandbox-payee"
        assert sandbox.snapshot()["infinity"][PAYEE_BALANCE_ID] == "3.00"

        txns = await call(c, "get_card_transactions", {"card_id": card_id})
        loads = [t for t in txns["transactions"] if t["type"] == "transfer_in"]
        assert sorted(t["amount"] for t in loads) == ["10.00", "5.00"]  # the initial load, then the top-up

        closed = await call(c, "close_card", {"card_id": card_id, "request_id": "close-1"})
        assert closed["status"] == "completed" and closed["amount"] == "15.00"
        assert closed["card"]["card_status"] == "DELETED"
        balance = await call(c, "get_balance", {})
        # 10 + 5 loaded, 15 back from the card, 3 to the payee.
        assert Decimal(balance["available"]) == start - Decimal("3.00")
        assert (await call(c, "list_cards", {}))["cards"] == []
        missing = await refuse(c, "get_card", {"card_id": card_id})
        assert missing.startswith("[not_found]")


async def test_reveal_returns_a_luhn_valid_number_only_when_policy_allows(make_server: ServerFactory) -> None:
    """The embedded sandbox allows reveal; a policy with reveal = false refuses it by name."""
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "r"}))["card"]["card_id"]
        shown = await call(c, "get_card", {"card_id": card_id, "reveal": True})
    assert luhn_valid(shown["card_number"]) and shown["card_number"].endswith(shown["last_four"])
    assert len(shown["cvv"]) == 3 and shown["expiry"]

    async with Client(make_server(policy="[defaults]\nreveal = false\n")) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "r2"}))["card"]["card_id"]
        text = await refuse(c, "get_card", {"card_id": card_id, "reveal": True})
    assert text.startswith("[reveal_not_allowed]")


BAD_INPUTS = [
    ("negative", {"amount": "-5.00"}, "amount"),
    ("zero", {"amount": "0"}, "greater than zero"),
    ("zero decimals", {"amount": "0.00"}, "greater than zero"),
    ("three decimals", {"amount": "5.001"}, "at most 2 decimals"),
    ("exponent", {"amount": "1e3"}, "amount"),
    ("nan", {"amount": "NaN"}, "amount"),
    ("number", {"amount": 5}, "JSON string"),
    ("float", {"amount": 5.5}, "JSON string"),
    ("huge", {"amount": "10000000000"}, "amount"),
    ("padding", {"amount": " 5"}, "amount"),
    ("wrong currency", {"currency": "EUR"}, "[validation_error] currency EUR"),
    ("lowercase currency", {"currency": "usd"}, "currency"),
    ("empty request_id", {"request_id": ""}, "request_id"),
    ("bad request_id", {"request_id": "a b"}, "request_id"),
    ("unknown card", {"card_id": "00000000-0000-0000-0000-000000000000"}, "[not_found]"),
    ("extra argument", {"agent_id": "someone-else"}, "agent_id"),
    ("dry_run as string", {"dry_run": "yes"}, "dry_run"),
]


@pytest.mark.parametrize(("label", "override", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    make_server: ServerFactory, sandbox_app: Any, label: str, override: dict[str, Any], expected: str
) -> None:
    """Every bad top_up_card input is a readable tool error; no upstream write, no reservation."""
    server = make_server()
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "setup"}))["card"]["card_id"]
        before = sandbox.snapshot()
        args = {"card_id": card_id, "amount": "5.00", "request_id": "bad-1", **override}
        text = await refuse(c, "top_up_card", args)
        after = sandbox.snapshot()
    assert expected in text, text
    assert text.startswith(("[validation_error]", "[not_found]"))
    assert after["movements"] == before["movements"] and after["infinity"] == before["infinity"]
    rt = runtime(server)
    assert rt.ledger.reserved_total(rt.scope) == Decimal("0")
    assert rt.ledger.committed_total(rt.scope) == Decimal("5.00")


@BOTH_BACKENDS
async def test_same_request_id_five_times_moves_money_once_with_identical_results(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Replays return the first result (replayed: true) and Interlace sees one transfer-in."""
    sandbox = sandbox_of(sandbox_app)
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        args = {"card_id": card_id, "amount": "2.50", "request_id": "same"}
        results = [await call(c, "top_up_card", args) for _ in range(5)]
        conflict = await refuse(c, "top_up_card", {**args, "amount": "2.60"})
    assert [r["replayed"] for r in results] == [False, True, True, True, True]
    first = {k: v for k, v in results[0].items() if k != "replayed"}
    assert all({k: v for k, v in r.items() if k != "replayed"} == first for r in results)
    transfer_ins = [m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]
    assert len(transfer_ins) == 1
    assert conflict.startswith("[request_id_conflict]")


async def test_refusal_names_the_rule_the_limit_and_what_remains(make_server: ServerFactory) -> None:
    """A daily-limit refusal carries limit, spent, reserved, requested, remaining and the reset time."""
    policy = '[defaults]\nper_transaction = "50.00"\ndaily = "20.00"\nmonthly = "none"\n'
    async with Client(make_server(policy=policy)) as c:
        await call(c, "issue_card", {"amount": "15.00", "request_id": "a"})
        text = await refuse(c, "issue_card", {"amount": "6.00", "request_id": "b"})
        status = await call(c, "get_spend_status", {})
    assert text.startswith(
        "[daily_limit] daily limit 20.00 USD: 15.00 spent, 0.00 reserved, 6.00 requested, 5.00 remaining; resets "
    )
    day = next(w for w in status["windows"] if w["window"] == "day")
    assert day == {**day, "limit": "20.00", "spent": "15.00", "reserved": "0.00", "remaining": "5.00"}


async def test_refusal_lists_every_broken_rule(make_server: ServerFactory) -> None:
    """Per-transaction and daily and payee rules broken at once are all named, in policy order."""
    policy = '[defaults]\nper_transaction = "5.00"\ndaily = "4.00"\n'
    async with Client(make_server(policy=policy)) as c:
        text = await refuse(c, "create_transfer", {"payee": "nobody", "amount": "6.00", "request_id": "x"})
    codes = [part.split("]")[0].lstrip("[") for part in text.split("; [")]
    assert codes == ["per_transaction_limit", "daily_limit", "payee_not_allowed"]


async def test_dry_run_reports_the_decision_and_changes_nothing(make_server: ServerFactory, sandbox_app: Any) -> None:
    """dry_run=true: allow / deny / needs_approval with reasons, no reservation, no upstream write, no record."""
    server = make_server(policy='[defaults]\ndaily = "30.00"\nper_transaction = "30.00"\napproval_above = "10.00"\n')
    sandbox = sandbox_of(sandbox_app)
    before = sandbox.snapshot()
    async with Client(server) as c:
        allow = await call(c, "issue_card", {"amount": "5.00", "request_id": "d", "dry_run": True})
        approve = await call(c, "issue_card", {"amount": "20.00", "request_id": "d", "dry_run": True})
        deny = await call(c, "issue_card", {"amount": "31.00", "request_id": "d", "dry_run": True})
        real = await call(c, "issue_card", {"amount": "5.00", "request_id": "d"})
    assert (allow["status"], allow["decision"]) == ("dry_run", "allow")
    assert approve["decision"] == "needs_approval"
    assert deny["decision"] == "deny" and any(r.startswith("[daily_limit]") for r in deny["reasons"])
    assert real["status"] == "completed" and real["replayed"] is False  # dry runs left no request record
    assert len(sandbox.snapshot()["movements"]) == len(before["movements"]) + 1


async def test_tool_not_in_policy_allow_list_is_refused_by_name(make_server: ServerFactory) -> None:
    """An agent whose tools list lacks create_transfer gets [tool_not_allowed] naming the tool."""
    policy = '[defaults]\ntools = ["get_*", "list_*"]\n'
    async with Client(make_server(policy=policy)) as c:
        text = await refuse(c, "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "t"})
        ok = await call(c, "get_spend_status", {})
    assert text.startswith("[tool_not_allowed]") and "create_transfer" in text
    assert ok["agent"] == "default"


async def test_max_active_cards_counts_cards_not_closed(make_server: ServerFactory) -> None:
    """With max_active_cards = 1 the second issue is refused until the first card is closed."""
    async with Client(make_server(policy="[defaults]\nmax_active_cards = 1\n")) as c:
        card_id = (await call(c, "issue_card", {"amount": "1.00", "request_id": "c1"}))["card"]["card_id"]
        text = await refuse(c, "issue_card", {"amount": "1.00", "request_id": "c2"})
        await call(c, "close_card", {"card_id": card_id, "request_id": "close"})
        again = await call(c, "issue_card", {"amount": "1.00", "request_id": "c2"})
    assert text.startswith("[max_active_cards] max active cards 1: 1 active")
    assert again["status"] == "completed"


async def test_withdraw_is_not_spend_and_insufficient_funds_releases(make_server: ServerFactory) -> None:
    """Unloading never counts as spend; a definite upstream failure releases and is not stored."""
    server = make_server()
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "10.00", "request_id": "i"}))["card"]["card_id"]
        out = await call(c, "withdraw_from_card", {"card_id": card_id, "amount": "4.00", "request_id": "w"})
        too_much = await refuse(c, "withdraw_from_card", {"card_id": card_id, "amount": "7.00", "request_id": "w2"})
        fixed = await call(c, "withdraw_from_card", {"card_id": card_id, "amount": "6.00", "request_id": "w2"})
    assert out["card"]["balance"] == "6.00"
    assert too_much.startswith("[insufficient_funds]")
    assert fixed["card"]["balance"] == "0.00"
    rt = runtime(server)
    assert rt.ledger.committed_total(rt.scope) == Decimal("10.00")


async def test_agent_can_unfreeze_only_what_it_froze(make_server: ServerFactory) -> None:
    """freeze/unfreeze round trip; an operator's freeze cannot be undone by the agent."""
    server = make_server()
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "3.00", "request_id": "i"}))["card"]["card_id"]
        frozen = await call(c, "freeze_card", {"card_id": card_id})
        top = await refuse(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
        thawed = await call(c, "unfreeze_card", {"card_id": card_id})
        await call(c, "freeze_card", {"card_id": card_id})
        rt.ledger.set_card_frozen_by(rt.scope, card_id, "operator")
        blocked = await refuse(c, "unfreeze_card", {"card_id": card_id})
    assert frozen["card_status"] == "FROZEN" and frozen["frozen_by"] == "agent"
    assert top.startswith("[card_frozen]")
    assert thawed["card_status"] == "ACTIVE"
    assert blocked.startswith("[card_frozen]") and "operator" in blocked


async def test_kill_switch_blocks_money_tools_with_a_reason(make_server: ServerFactory) -> None:
    """A frozen agent's money call is refused naming agent_frozen; reads still work."""
    server = make_server()
    rt = runtime(server)
    rt.ledger.set_agent_frozen("default", True, by="alice", reason="suspicious spend")
    async with Client(server) as c:
        text = await refuse(c, "issue_card", {"amount": "1.00", "request_id": "k"})
        status = await call(c, "get_spend_status", {})
    assert text.startswith("[agent_frozen]") and "alice" in text and "suspicious spend" in text
    assert status["frozen"] is True


async def test_simulated_purchase_shows_in_transactions_with_decline_reason(make_server: ServerFactory) -> None:
    """An approved and a declined authorization both appear, the decline with its reason."""
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        ok = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "2.00", "merchant": "Coffee\u202e Shop"})
        no = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "9.00"})
        txns = await call(c, "get_card_transactions", {"card_id": card_id, "limit": 10})
    assert ok["approved"] is True and ok["card_balance"] == "3.00"
    assert ok["merchant"] == "Coffee Shop"  # bidi override stripped
    assert no["approved"] is False and no["decline_reason"]
    auths = [t for t in txns["transactions"] if t["type"] == "authorization"]
    assert {t["approved"] for t in auths} == {True, False}


async def test_new_card_gets_the_policy_velocity_control_at_interlace(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """card_spend_limit becomes Interlace's own per-card limit, so the card refuses spending past it."""
    policy = '[defaults]\ncard_spend_limit = { window = "DAY", amount = "7.00" }\n'
    async with Client(make_server(policy=policy)) as c:
        issued = await call(c, "issue_card", {"amount": "15.00", "request_id": "v"})
        card_id = issued["card"]["card_id"]
        over = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "8.00"})
        under = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "7.00"})
    assert issued["card"]["limits"] == [{"window": "DAY", "amount": "7.00", "currency": "USD"}]
    assert over["approved"] is False and over["decline_code"] == "1205"
    assert over["decline_reason"] == "the card's spending limit for this period is used up"
    assert under["approved"] is True


async def test_token_reveal_mode_returns_a_widget_token_never_the_number(make_server: ServerFactory) -> None:
    """reveal = "token": a one-time Interlace token instead of number/CVV (for non-PCI setups)."""
    async with Client(make_server(policy='[defaults]\nreveal = "token"\n')) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "r"}))["card"]["card_id"]
        shown = await call(c, "get_card", {"card_id": card_id, "reveal": True})
    assert shown["reveal_token"] and shown["card_number"] is None and shown["cvv"] is None


async def test_reveals_are_rate_limited_per_card(make_server: ServerFactory) -> None:
    """At most 5 reveals per card per hour; the 6th is [rate_limited], a masked get_card still works."""
    async with Client(make_server()) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "r"}))["card"]["card_id"]
        for _ in range(5):
            assert (await call(c, "get_card", {"card_id": card_id, "reveal": True}))["card_number"]
        text = await refuse(c, "get_card", {"card_id": card_id, "reveal": True})
        masked = await call(c, "get_card", {"card_id": card_id})
    assert text.startswith("[rate_limited]") and "revealed 5 times" in text
    assert masked["card_number"] is None
