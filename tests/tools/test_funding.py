"""Stablecoin funding through the official mcp Client on the in-process emulator: wallet balances, deposit
addresses, and fund_account -- governed by fund_daily and approvals, never counted as spend, exactly once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult
from starlette.applications import Starlette

from helpers import BOTH_BACKENDS, Clock, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import reconcile, recover
from interlace_mcp.client import DEPOSIT_CHAINS, STABLECOINS
from interlace_mcp.policy import PolicyError, parse_policy
from interlace_mcp.sandbox import CRYPTO_WALLET_ID, DEPOSIT_ADDRESS, INFINITY_BALANCE_ID, INITIAL_USDC_BALANCE
from interlace_mcp.tools._params import Chain, Stablecoin

pytestmark = pytest.mark.anyio

V3 = "/open-api/v3"
INTERNAL = f"{V3}/business/transfer/internal"
GRANTED = '[defaults]\nfund_daily = "100.00"\n'


def fund_args(amount: str, request_id: str, **more: Any) -> dict[str, Any]:
    return {"amount": amount, "request_id": request_id, **more}


def fundings(app: Starlette) -> list[dict[str, Any]]:
    return [m for m in sandbox_of(app).snapshot()["movements"] if m["kind"] == "wallet_to_infinity"]


def wallet(app: Starlette, currency: str = "USDC") -> Decimal:
    return Decimal(sandbox_of(app).snapshot()["wallets"][CRYPTO_WALLET_ID][currency])


def infinity(app: Starlette) -> Decimal:
    return Decimal(sandbox_of(app).snapshot()["infinity"][INFINITY_BALANCE_ID])


# ---- balances and addresses ---------------------------------------------------------------------------


async def test_get_balance_reports_the_wallet_balances_beside_the_infinity_balance(make_server: ServerFactory) -> None:
    """The seeded master wallet's USDC and USDT show, exact, with the wallet's id."""
    async with Client(make_server()) as c:
        balance = await call(c, "get_balance", {})
    assert balance["available"] == "10000.00" and balance["currency"] == "USD"
    assert balance["wallets"] == [
        {
            "wallet_id": CRYPTO_WALLET_ID,
            "currency": "USDC",
            "available": f"{INITIAL_USDC_BALANCE:.2f}",
            "frozen": "0.00",
        },
        {"wallet_id": CRYPTO_WALLET_ID, "currency": "USDT", "available": "0.00", "frozen": "0.00"},
    ]
    assert "warnings" not in balance or balance["warnings"] is None


async def test_a_deposit_simulated_on_the_emulator_shows_in_the_wallet_balance(make_server: ServerFactory) -> None:
    """/_sandbox/deposit of 12.345678 USDT: get_balance shows it to the last of its 6 decimals."""
    server = make_server()
    async with Client(server) as c:
        deposit = await runtime(server).api.sandbox_deposit(amount=Decimal("12.345678"), currency="USDT")
        balance = await call(c, "get_balance", {})
    usdt = next(w for w in balance["wallets"] if w["currency"] == "USDT")
    assert usdt["available"] == "12.345678"
    assert deposit.wallet_id == CRYPTO_WALLET_ID and deposit.amount == Decimal("12.345678")


async def test_get_balance_still_answers_with_a_warning_when_the_wallet_api_fails(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """The wallet API keeps failing: the Infinity balance answers, wallets are empty, a warning says why."""
    sandbox_of(sandbox_app).add_fault(f"{V3}/cryptoconnect/wallets", "error", status=503, times=8)
    async with Client(make_server()) as c:
        balance = await call(c, "get_balance", {})
    assert balance["available"] == "10000.00"
    assert balance["wallets"] == []
    assert len(balance["warnings"]) == 1 and "CryptoConnect wallet balances could not be read" in balance["warnings"][0]


async def test_a_configured_wallet_overrides_the_master_wallet(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """INTERLACE_CRYPTO_WALLET_ID names a second wallet: balances, deposit address and funding all use it."""
    server = make_server(policy=GRANTED)
    async with Client(server) as c:
        other = await runtime(server).api.create_crypto_wallet(reference_id="agents-wallet", nickname="Agents")
    server = make_server(policy=GRANTED, crypto_wallet_id=other.id)
    async with Client(server) as c:
        await runtime(server).api.sandbox_deposit(amount=Decimal("40.00"), wallet_id=other.id)
        balance = await call(c, "get_balance", {})
        address = await call(c, "get_deposit_address", {})
        funded = await call(c, "fund_account", fund_args("15.00", "f-other"))
    assert {w["wallet_id"] for w in balance["wallets"]} == {other.id}
    assert address["wallet_id"] == other.id and address["address"] != DEPOSIT_ADDRESS
    assert funded["status"] == "completed"
    wallets = sandbox_of(sandbox_app).snapshot()["wallets"]
    assert wallets[other.id]["USDC"] == "25.00"
    assert Decimal(wallets[CRYPTO_WALLET_ID]["USDC"]) == INITIAL_USDC_BALANCE


async def test_an_unknown_configured_wallet_is_named_in_the_warning_and_refusals(make_server: ServerFactory) -> None:
    """A wallet id Interlace does not know: get_balance warns, the address and funding are not_found."""
    async with Client(make_server(policy=GRANTED, crypto_wallet_id="no-such-wallet")) as c:
        balance = await call(c, "get_balance", {})
        address = await refuse(c, "get_deposit_address", {})
        funding = await refuse(c, "fund_account", fund_args("5.00", "f-unknown"))
    assert balance["wallets"] == [] and balance["warnings"]
    assert address.startswith("[not_found]") and "no-such-wallet" in address
    assert funding.startswith("[not_found]"), funding


async def test_get_deposit_address_returns_the_wallets_address_for_the_chain(make_server: ServerFactory) -> None:
    """USDC on ETH is the seeded address; USDT on ARB gets one address, the same on every call."""
    async with Client(make_server()) as c:
        seeded = await call(c, "get_deposit_address", {})
        arb = await call(c, "get_deposit_address", {"currency": "USDT", "chain": "ARB"})
        again = await call(c, "get_deposit_address", {"currency": "USDT", "chain": "ARB"})
    assert (seeded["currency"], seeded["chain"], seeded["address"]) == ("USDC", "ETH", DEPOSIT_ADDRESS)
    assert seeded["sandbox"] is True and "only USDC on the ETH network" in seeded["message"]
    assert arb["address"].startswith("0x") and len(arb["address"]) == 42 and arb["address"] != DEPOSIT_ADDRESS
    assert again["address"] == arb["address"]


@pytest.mark.parametrize(
    ("field", "value"), [("chain", "SOL"), ("chain", "eth"), ("currency", "DAI"), ("currency", "USD")]
)
async def test_get_deposit_address_refuses_a_chain_or_currency_the_docs_do_not_list(
    make_server: ServerFactory, field: str, value: str
) -> None:
    """Only the documented stablecoins and chains pass: anything else is a validation_error naming the field."""
    async with Client(make_server()) as c:
        text = await refuse(c, "get_deposit_address", {field: value})
    assert text.startswith("[validation_error]") and field in text, text


def test_the_tool_enums_are_the_clients_lists() -> None:
    """The stablecoin and chain enums the tools advertise are the client's documented lists."""
    assert Stablecoin.__origin__.__args__ == STABLECOINS  # type: ignore[attr-defined]
    assert Chain.__origin__.__args__ == DEPOSIT_CHAINS  # type: ignore[attr-defined]


# ---- funding: policy -------------------------------------------------------------------------------------


async def test_funding_is_refused_until_an_operator_grants_fund_daily(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """The built-in fund_daily is 0.00: refused with [fund_limit] naming the limit, use and what remains."""
    server = make_server()
    async with Client(server) as c:
        text = await refuse(c, "fund_account", fund_args("5.00", "f-0"))
    assert text.startswith("[fund_limit] daily funding limit 0.00 USD"), text
    assert "0.00 funded, 0.00 reserved, 5.00 requested, 0.00 remaining; resets " in text
    assert "fund_daily" in text
    rt = runtime(server)
    assert fundings(sandbox_app) == []
    assert rt.ledger.find_requests(rt.scope, "default", "f-0") == []


async def test_funding_moves_exactly_the_amount_once_and_replays(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """25.00 USDC out of the wallet, 25.00 USD into Infinity, once; a retry replays; other arguments conflict."""
    before_wallet, before_infinity = wallet(sandbox_app), infinity(sandbox_app)
    async with Client(make_server(policy=GRANTED)) as c:
        done = await call(c, "fund_account", fund_args("25.00", "f-1"))
        again = await call(c, "fund_account", fund_args("25.00", "f-1"))
        conflict = await refuse(c, "fund_account", fund_args("26.00", "f-1"))
        balance = await call(c, "get_balance", {})
    assert done["status"] == "completed" and done["amount"] == "25.00" and done["currency"] == "USDC"
    assert done["transaction_id"] and done["replayed"] is False
    assert again["replayed"] is True and again["transaction_id"] == done["transaction_id"]
    assert conflict.startswith("[request_id_conflict]")
    moved = fundings(sandbox_app)
    assert [m["amount"] for m in moved] == ["25.00"]
    assert wallet(sandbox_app) == before_wallet - Decimal("25.00")
    assert infinity(sandbox_app) == before_infinity + Decimal("25.00")
    assert balance["available"] == f"{before_infinity + Decimal('25.00'):.2f}"


async def test_funding_is_not_spend(make_server: ServerFactory) -> None:
    """A funding leaves every spend window at 0.00 and shows in its own funding window instead."""
    server = make_server(policy=GRANTED)
    async with Client(server) as c:
        await call(c, "fund_account", fund_args("30.00", "f-spend"))
        status = await call(c, "get_spend_status", {})
        await call(c, "issue_card", {"amount": "5.00", "request_id": "card"})
        after = await call(c, "get_spend_status", {})
    assert all(w["spent"] == "0.00" and w["reserved"] == "0.00" for w in status["windows"])
    assert status["funding"] == {
        "limit": "100.00",
        "funded": "30.00",
        "reserved": "0.00",
        "remaining": "70.00",
        "resets_at": status["funding"]["resets_at"],
    }
    day = next(w for w in after["windows"] if w["window"] == "day")
    assert day["spent"] == "5.00" and after["funding"]["funded"] == "30.00"
    rt = runtime(server)
    assert rt.ledger.committed_total(rt.scope) == Decimal("5.00")
    assert rt.ledger.fund_totals(rt.scope) == (Decimal("30.00"), Decimal("0.00"))


async def test_fund_daily_counts_usdc_and_usdt_together_and_names_what_remains(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """fund_daily 30.00: 20.00 USDC passes, 15.00 USDT more is refused (10.00 remains), 10.00 USDT passes."""
    server = make_server(policy='[defaults]\nfund_daily = "30.00"\n')
    async with Client(server) as c:
        await runtime(server).api.sandbox_deposit(amount=Decimal("50.00"), currency="USDT")
        await call(c, "fund_account", fund_args("20.00", "f-a"))
        text = await refuse(c, "fund_account", fund_args("15.00", "f-b", currency="USDT"))
        fits = await call(c, "fund_account", fund_args("10.00", "f-c", currency="USDT"))
    assert text.startswith("[fund_limit] daily funding limit 30.00 USD: 20.00 funded, 0.00 reserved, 15.00 requested,")
    assert "10.00 remaining" in text
    assert fits["status"] == "completed" and fits["currency"] == "USDT"
    assert wallet(sandbox_app, "USDT") == Decimal("40.00")


async def test_the_funding_window_resets_the_next_day(make_server: ServerFactory, clock: Clock) -> None:
    """A full day's funding is refused until midnight (the policy's timezone), then allowed again."""
    server = make_server(policy='[defaults]\nfund_daily = "10.00"\n')
    async with Client(server) as c:
        await call(c, "fund_account", fund_args("10.00", "d-1"))
        refused = await refuse(c, "fund_account", fund_args("1.00", "d-2"))
        clock.advance(24 * 3600)
        allowed = await call(c, "fund_account", fund_args("1.00", "d-2"))
    assert refused.startswith("[fund_limit]") and allowed["status"] == "completed"


async def test_a_dry_run_moves_nothing_and_reserves_nothing(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """dry_run reports the decision (deny without a grant, allow with one) and touches nothing."""
    before = sandbox_of(sandbox_app).snapshot()
    async with Client(make_server()) as c:
        denied = await call(c, "fund_account", fund_args("5.00", "dry", dry_run=True))
    server = make_server(policy=GRANTED)
    async with Client(server) as c:
        allowed = await call(c, "fund_account", fund_args("5.00", "dry", dry_run=True))
        status = await call(c, "get_spend_status", {})
    assert denied["status"] == "dry_run" and denied["decision"] == "deny"
    assert denied["reasons"][0].startswith("[fund_limit]")
    assert allowed["decision"] == "allow" and allowed["reasons"] == []
    assert status["funding"]["funded"] == status["funding"]["reserved"] == "0.00"
    after = sandbox_of(sandbox_app).snapshot()
    assert after["wallets"] == before["wallets"] and after["infinity"] == before["infinity"]
    rt = runtime(server)
    assert rt.ledger.find_requests(rt.scope, "default", "dry") == []


async def test_funding_above_approval_above_waits_for_a_human(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """50.00 > approval_above 20.00: pending and held in the funding window; approved, the retry moves it once."""
    server = make_server(policy='[defaults]\nfund_daily = "100.00"\napproval_above = "20.00"\n')
    rt = runtime(server)
    async with Client(server) as c:
        pending = await call(c, "fund_account", fund_args("50.00", "big"))
        held = await call(c, "get_spend_status", {})
        rt.ledger.decide(pending["approval_id"], approve=True, by="alice")
        done = await call(c, "fund_account", fund_args("50.00", "big"))
        small = await call(c, "fund_account", fund_args("20.00", "small"))
    assert pending["status"] == "pending_approval" and "50.00 USDC" in pending["message"]
    assert held["funding"]["reserved"] == "50.00" and held["funding"]["remaining"] == "50.00"
    assert held["pending_approvals"][0]["tool"] == "fund_account"
    assert done["status"] == "completed" and small["status"] == "completed"
    assert [m["amount"] for m in fundings(sandbox_app)] == ["50.00", "20.00"]
    assert rt.ledger.fund_totals(rt.scope) == (Decimal("70.00"), Decimal("0.00"))


async def test_a_denied_funding_releases_its_hold(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """Denied: the retry is refused as approval_denied and the funding window holds nothing."""
    server = make_server(policy='[defaults]\nfund_daily = "100.00"\napproval_above = "20.00"\n')
    rt = runtime(server)
    async with Client(server) as c:
        pending = await call(c, "fund_account", fund_args("50.00", "no"))
        rt.ledger.decide(pending["approval_id"], approve=False, by="bob", reason="not today")
        text = await refuse(c, "fund_account", fund_args("50.00", "no"))
        status = await call(c, "get_spend_status", {})
    assert text.startswith("[approval_denied]")
    assert status["funding"]["reserved"] == "0.00" and fundings(sandbox_app) == []


async def test_funding_in_the_confirmation_band_needs_a_yes(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """Between confirm_above and approval_above a client that cannot be asked gets an approval, not a funding."""
    policy = '[defaults]\nfund_daily = "100.00"\nconfirm_above = "5.00"\napproval_above = "50.00"\n'
    async with Client(make_server(policy=policy)) as c:
        banded = await call(c, "fund_account", fund_args("10.00", "band"))
        below = await call(c, "fund_account", fund_args("5.00", "below"))
    assert banded["status"] == "pending_approval"
    assert below["status"] == "completed"
    assert [m["amount"] for m in fundings(sandbox_app)] == ["5.00"]


async def test_a_client_that_can_be_asked_confirms_the_funding_in_the_band(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """With elicitation, the question names the tool and the stablecoin amount; yes moves it, once."""
    asked: list[str] = []

    async def human(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    policy = '[defaults]\nfund_daily = "100.00"\nconfirm_above = "5.00"\napproval_above = "50.00"\n'
    async with Client(make_server(policy=policy), elicitation_callback=human) as c:
        done = await call(c, "fund_account", fund_args("10.00", "asked", currency="USDC"))
    assert done["status"] == "completed"
    wanted = "fund_account 10.00 USDC from the account's stablecoin wallet into its Infinity account"
    assert len(asked) == 1 and wanted in asked[0], asked
    assert [m["amount"] for m in fundings(sandbox_app)] == ["10.00"]


def test_fund_daily_is_parsed_like_every_limit() -> None:
    """Amount strings or "none", per agent over defaults; anything else stops startup naming the key."""
    policy = parse_policy({"defaults": {"fund_daily": "50.00"}, "agents": {"t": {"fund_daily": "none"}}})
    assert policy.for_agent("x").fund_daily == Decimal("50.00") and policy.for_agent("t").fund_daily is None
    assert parse_policy({}).for_agent("x").fund_daily == Decimal("0.00")
    assert policy.for_agent("x").describe()["fund_daily"] == "50.00"
    with pytest.raises(PolicyError) as bad:
        parse_policy({"defaults": {"fund_daily": 50.5}})
    assert bad.value.key == "defaults.fund_daily"


async def test_a_frozen_agent_cannot_fund(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """The kill switch blocks funding like every money tool."""
    server = make_server(policy=GRANTED)
    runtime(server).ledger.set_agent_frozen("default", True, by="alice", reason="incident")
    async with Client(server) as c:
        text = await refuse(c, "fund_account", fund_args("5.00", "frozen"))
    assert text.startswith("[agent_frozen]") and fundings(sandbox_app) == []


async def test_the_funding_tools_can_be_left_out(make_server: ServerFactory) -> None:
    """--toolsets without funding registers neither tool; --read-only keeps only get_deposit_address."""
    async with Client(make_server(toolsets="cards,account,spend")) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    async with Client(make_server(read_only=True)) as c:
        read_only = {t.name for t in (await c.list_tools()).tools}
    assert "fund_account" not in names and "get_deposit_address" not in names and "get_balance" in names
    assert "get_deposit_address" in read_only and "fund_account" not in read_only


# ---- funding: upstream answers, faults, recovery ---------------------------------------------------------


def lose_every_answer(sandbox: Any) -> None:
    """The first attempt is applied and answered 500; the client's three retries get 500 before the emulator's
    idempotent replay could answer them (an idempotent replay skips a fail-after-commit fault)."""
    sandbox.add_fault(INTERNAL, "fail_after_commit", status=500, times=1)
    sandbox.add_fault(INTERNAL, "error", status=500, times=3)


async def test_too_little_in_the_wallet_is_a_definite_refusal_that_releases_the_hold(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """More than the wallet holds: [insufficient_funds], nothing moved, nothing held, the id reusable."""
    server = make_server(policy='[defaults]\nfund_daily = "none"\n')
    async with Client(server) as c:
        text = await refuse(c, "fund_account", fund_args("6000.00", "too-much"))
        status = await call(c, "get_spend_status", {})
    assert text.startswith("[insufficient_funds]") and "Nothing moved" in text, text
    assert status["funding"]["reserved"] == "0.00" and status["funding"]["limit"] is None
    assert fundings(sandbox_app) == []
    rt = runtime(server)
    assert rt.ledger.find_requests(rt.scope, "default", "too-much") == []


@BOTH_BACKENDS
async def test_an_unconfirmed_funding_is_kept_and_the_retry_never_moves_twice(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Interlace applies the transfer but every answer is lost: in_progress, held; the retry finds it by key."""
    server = make_server(policy=GRANTED)
    lose_every_answer(sandbox_of(sandbox_app))
    async with Client(server) as c:
        first = await call(c, "fund_account", fund_args("12.00", "lost"))
        held = await call(c, "get_spend_status", {})
        second = await call(c, "fund_account", fund_args("12.00", "lost"))
        matched = await reconcile_ok(server)
    assert first["status"] == "in_progress" and held["funding"]["reserved"] == "12.00"
    assert second["status"] == "completed" and second["replayed"] is True
    assert [m["amount"] for m in fundings(sandbox_app)] == ["12.00"]
    rt = runtime(server)
    assert rt.ledger.fund_totals(rt.scope) == (Decimal("12.00"), Decimal("0.00"))
    assert matched >= 1


async def reconcile_ok(server: Any) -> int:
    report = await reconcile(runtime(server))
    assert report.ok, [d.detail for d in report.differences]
    return report.matched


async def test_recovery_settles_an_interrupted_funding_by_lookup(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Two interrupted fundings: the one Interlace applied is committed, the one it never saw is released."""
    server = make_server(policy=GRANTED)
    rt = runtime(server)
    sandbox = sandbox_of(sandbox_app)
    async with Client(server) as c:
        lose_every_answer(sandbox)
        applied = await call(c, "fund_account", fund_args("7.00", "applied"))
        sandbox.add_fault(INTERNAL, "error", status=500, times=4)
        never = await call(c, "fund_account", fund_args("8.00", "never"))
        sandbox.clear_faults()
        report = await recover(rt, grace=0)
        replay = await call(c, "fund_account", fund_args("7.00", "applied"))
        status = await call(c, "get_request_status", {"request_id": "applied"})
        matched = await reconcile_ok(server)
    assert applied["status"] == never["status"] == "in_progress"
    assert [r.split("/")[-1] for r in report.committed] == ["applied"]
    assert [r.split("/")[-1] for r in report.released] == ["never"] and not report.unresolved
    assert replay["status"] == "completed" and replay["replayed"] is True
    assert status["tool"] == "fund_account" and status["status"] == "completed" and status["amount"] == "7.00"
    assert [m["amount"] for m in fundings(sandbox_app)] == ["7.00"]
    assert rt.ledger.fund_totals(rt.scope) == (Decimal("7.00"), Decimal("0.00"))
    assert matched >= 1


async def test_the_audit_log_records_the_funding_decision_and_outcome(make_server: ServerFactory) -> None:
    """fund_account is audited like every money tool: decision with its keys, outcome with the transfer id."""
    server = make_server(policy=GRANTED)
    async with Client(server) as c:
        done = await call(c, "fund_account", fund_args("3.00", "audited"))
    records = [r for r in runtime(server).audit.tail(20) if r.tool == "fund_account"]
    events = {r.event: r for r in records}
    assert set(events) >= {"decision", "outcome"}
    assert events["decision"].amount == "3.00" and events["decision"].currency == "USDC"
    assert events["outcome"].upstream_ids == {"transaction_id": done["transaction_id"]}
