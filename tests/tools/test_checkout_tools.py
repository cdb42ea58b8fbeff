"""Checkout (issue 11), in process: purpose-bound cards, merchant categories, 3-D Secure codes, declines.

The emulator and the ledger share one settable clock here, so the emulator's signed notifications are
fresh for the server's intake and nothing settles or expires until a test says so. On the embedded
emulator every notification reaches the server's own intake in-process (no HTTP); the loopback version
of the whole purchase is tests/e2e/test_checkout_e2e.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server import MCPServer
from starlette.applications import Starlette

from helpers import Clock, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import Runtime, check_cards, maintain, reconcile
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger, three_ds
from interlace_mcp.sandbox import ACCOUNT_ID, INFINITY_BALANCE_ID, create_sandbox_app
from interlace_mcp.server import build_server

pytestmark = pytest.mark.anyio

SEED = Decimal("10000.00")
POLICY = """\
[defaults]
per_transaction = "50.00"
daily = "200.00"
max_active_cards = 5
"""


@pytest.fixture
def sandbox_app(clock: Clock) -> Starlette:
    """The emulator on the ledger's clock (its notifications are dated by it)."""
    return create_sandbox_app(clock=clock)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    with anyio.fail_after(timeout):
        while not (found := await check()):
            await anyio.sleep(0.02)
    return found


def infinity(app: Starlette) -> Decimal:
    return Decimal(sandbox_of(app).snapshot()["infinity"][INFINITY_BALANCE_ID])


def events(rt: Runtime, event: str) -> list[Any]:
    return [r for r in rt.audit.tail(500) if r.event == event]


async def settle(rt: Runtime, card_id: str) -> None:
    """Settle the card's pending purchases now, through the control API (so its notifications go out)."""
    await rt.api.sandbox_settle(card_id=card_id)


# ---- single-use and expiring cards ---------------------------------------------------------------


async def test_a_single_use_card_closes_itself_once_after_its_purchase_settles(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Purchase -> still open while PENDING -> settled (webhook) -> closed by the server, the rest returned, once."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        issued = await call(c, "issue_card", {"amount": "15.00", "request_id": "buy-1", "single_use": True})
        card_id = issued["card"]["card_id"]
        assert issued["card"]["single_use"] is True and issued["card"]["expires_at"] is None
        bought = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "9.99", "merchant": "Shop"})
        assert bought["approved"] is True and bought["status"] == "PENDING"
        await check_cards(rt)  # a reconcile round: the purchase has not settled, so the card stays
        assert (await call(c, "get_card", {"card_id": card_id}))["card_status"] == "ACTIVE"

        await settle(rt, card_id)  # CARD_TRANSACTION.UPDATED (CLOSED) reaches the intake in-process

        async def closed() -> dict[str, Any] | None:
            card = await call(c, "get_card", {"card_id": card_id})
            return card if card["card_status"] == "DELETED" else None

        card = await eventually(closed)
        listed = await call(c, "list_cards", {})
        for _ in range(3):  # more rounds, more notifications: nothing moves again
            await check_cards(rt)
        await maintain(rt, checkout=True)
        report = await reconcile(rt)
    assert report.ok, report.differences
    assert card["closed_reason"] == "single-use card: closed by the server after its first settled purchase"
    assert card["balance"] == "0.00" and card["last_four"] == issued["card"]["last_four"]
    assert [x["card_status"] for x in listed["cards"] if x["card_id"] == card_id] == ["DELETED"]
    snap = sandbox_of(sandbox_app).snapshot()
    assert snap["cards"][card_id]["status"] == "DELETED"
    assert infinity(sandbox_app) == SEED - Decimal("9.99")  # 15.00 out, 5.01 swept back
    unloads = [m for m in snap["movements"] if m["kind"] == "transfer_out"]
    assert [m["amount"] for m in unloads] == ["5.01"]
    closes = [r for r in events(rt, "card_auto_close") if r.arguments == {"card_id": card_id}]
    assert len(closes) == 1 and closes[0].actor == "server" and closes[0].request_id == f"auto-close:{card_id}"
    outcomes = [r for r in events(rt, "outcome") if r.request_id == f"auto-close:{card_id}"]
    assert len(outcomes) == 1 and outcomes[0].tool == "close_card" and outcomes[0].amount == "5.01"


async def test_an_expired_card_waits_for_its_pending_purchase_then_closes(
    make_server: ServerFactory, sandbox_app: Starlette, clock: Clock
) -> None:
    """At expiry a pending purchase holds the close (capture must still work); once settled, it closes."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        issued = await call(c, "issue_card", {"amount": "20.00", "request_id": "e-1", "expires_in_minutes": 30})
        card_id = issued["card"]["card_id"]
        assert issued["card"]["expires_at"] == "2026-11-18T11:36:40Z"  # the ledger clock + 30 min
        sandbox_of(sandbox_app).config.settle_after_seconds = 7200  # a slow capture
        await call(c, "simulate_purchase", {"card_id": card_id, "amount": "4.00"})
        clock.advance(31 * 60)
        report = await check_cards(rt)
        assert report.waiting == [card_id] and report.closed == []
        assert sandbox_of(sandbox_app).cards[card_id].deleted is False
        await settle(rt, card_id)  # captured: now the close may go ahead (this look, or the loop's after the webhook)
        await check_cards(rt)
        card = await call(c, "get_card", {"card_id": card_id})
    assert card["card_status"] == "DELETED" and card["closed_reason"].startswith("expired")
    assert infinity(sandbox_app) == SEED - Decimal("4.00")


async def test_policy_forces_single_use_and_caps_the_lifetime_naming_the_rule(make_server: ServerFactory) -> None:
    """single_use_cards and card_max_ttl_minutes shape every new card; asking for longer is refused by name."""
    policy = POLICY + "single_use_cards = true\ncard_max_ttl_minutes = 60\n"
    server = make_server(policy=policy)
    async with Client(server) as c:
        plain = await call(c, "issue_card", {"amount": "5.00", "request_id": "p-1"})
        shorter = await call(c, "issue_card", {"amount": "5.00", "request_id": "p-2", "expires_in_minutes": 10})
        dry = await call(
            c, "issue_card", {"amount": "5.00", "request_id": "p-3", "expires_in_minutes": 61, "dry_run": True}
        )
        text = await refuse(c, "issue_card", {"amount": "5.00", "request_id": "p-3", "expires_in_minutes": 61})
        status = await call(c, "get_spend_status", {})
    assert plain["card"]["single_use"] is True and plain["card"]["expires_at"] == "2026-11-18T12:06:40Z"
    assert shorter["card"]["expires_at"] == "2026-11-18T11:16:40Z"
    assert text.startswith("[card_max_ttl_minutes] ") and "at most 60 minutes" in text and "61 requested" in text
    assert dry["decision"] == "deny" and dry["reasons"][0].startswith("[card_max_ttl_minutes]")
    assert (status["single_use_cards"], status["card_max_ttl_minutes"]) == (True, 60)
    rt = runtime(server)
    assert rt.ledger.find_requests(rt.scope, "default", "p-3") == []  # refused: nothing stored


async def test_the_server_s_close_request_ids_are_reserved(make_server: ServerFactory) -> None:
    """An agent cannot take auto-close:<card> for its own close_card (it would block the server's close)."""
    async with Client(make_server(policy=POLICY)) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "r-1"}))["card"]["card_id"]
        text = await refuse(c, "close_card", {"card_id": card_id, "request_id": f"auto-close:{card_id}"})
    assert text.startswith("[validation_error] request_id:")


async def test_a_close_interrupted_after_the_unload_resumes_and_never_sweeps_twice(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """The delete fails after the unload: the request stays open; the next round finds the unload and deletes."""
    server = make_server(policy=POLICY)
    rt = runtime(server)
    state = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "12.00", "request_id": "i-1", "single_use": True}))["card"][
            "card_id"
        ]
        state.add_fault(f"/open-api/v3/cards/{card_id}", "error", method="DELETE", status=500, times=10)
        await call(c, "simulate_purchase", {"card_id": card_id, "amount": "2.00"})
        await rt.api.sandbox_settle(card_id=card_id)
        first = await check_cards(rt, card_ids=[card_id])
        assert first.closed == [] and state.cards[card_id].deleted is False
        assert state.snapshot()["cards"][card_id]["available"] == "0.00"  # unloaded; the delete is what failed
        state.clear_faults()
        # The request is left in progress; the next round resumes it: finds the unload, then deletes.
        await check_cards(rt, card_ids=[card_id])
        await eventually(lambda: anyio.to_thread.run_sync(lambda: state.cards[card_id].deleted))
    unloads = [m for m in state.snapshot()["movements"] if m["kind"] == "transfer_out"]
    assert [m["amount"] for m in unloads] == ["10.00"]
    assert state.cards[card_id].deleted is True
    assert infinity(sandbox_app) == SEED - Decimal("2.00")
    assert len([r for r in events(rt, "card_auto_close") if r.arguments == {"card_id": card_id}]) == 1


async def test_without_webhooks_the_reconcile_round_closes_single_use_cards(
    tmp_path: Path, clock: Clock, sandbox_app: Starlette, database_url: str
) -> None:
    """A deployment without notifications (stdio on a real upstream): the round reads transactions and closes."""
    settings = Settings(_env_file=None, state_dir=tmp_path / "state", database_url=database_url)  # type: ignore[call-arg]
    server = build_server(
        settings,
        upstream_transport=httpx.ASGITransport(app=sandbox_app),  # no in-process sink: nothing is notified
        ledger=Ledger.from_url(database_url, clock=clock),
        backoff=False,
    )
    rt = runtime(server)
    try:
        async with Client(server) as c:
            card_id = (await call(c, "issue_card", {"amount": "8.00", "request_id": "s-1", "single_use": True}))[
                "card"
            ]["card_id"]
            await call(c, "simulate_purchase", {"card_id": card_id, "amount": "3.00"})
            clock.advance(5)  # past the emulator's settlement time; nobody tells the server
            await maintain(rt, checkout=True)
            card = await call(c, "get_card", {"card_id": card_id})
            settled = sandbox_of(sandbox_app).webhooks_of("CARD_TRANSACTION.UPDATED")
    finally:
        rt.ledger.close()
        rt.audit.close()
    assert [e.deliveries for e in settled] == [[]]  # the settlement was never notified to anyone
    assert card["card_status"] == "DELETED" and card["closed_reason"]
    assert infinity(sandbox_app) == SEED - Decimal("3.00")


async def test_without_webhooks_or_rounds_the_server_follows_a_single_use_purchase_until_it_settles(
    tmp_path: Path, clock: Clock, sandbox_app: Starlette, database_url: str
) -> None:
    """No notifications and no reconcile timer: after the purchase the checkout loop looks again by itself."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, state_dir=tmp_path / "state", database_url=database_url, reconcile_interval_seconds=0
    )
    server = build_server(
        settings,
        upstream_transport=httpx.ASGITransport(app=sandbox_app),
        ledger=Ledger.from_url(database_url, clock=clock),
        backoff=False,
    )
    rt = runtime(server)
    try:
        async with Client(server) as c:
            card_id = (await call(c, "issue_card", {"amount": "8.00", "request_id": "f-1", "single_use": True}))[
                "card"
            ]["card_id"]
            await call(c, "simulate_purchase", {"card_id": card_id, "amount": "3.00"})
            clock.advance(5)  # the emulator settles it on the next look; nobody tells the server

            async def closed() -> bool:
                return (await call(c, "get_card", {"card_id": card_id}))["card_status"] == "DELETED"

            await eventually(closed)
    finally:
        rt.ledger.close()
        rt.audit.close()
    assert infinity(sandbox_app) == SEED - Decimal("3.00")


# ---- merchant categories -------------------------------------------------------------------------


class Notices:
    """A loopback receiver for INTERLACE_APPROVAL_NOTIFY_URL (JSON bodies)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def receive(request: Request) -> JSONResponse:
            self.received.append(json.loads(await request.body()))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/notify", receive, methods=["POST"])])


async def test_categories_are_pushed_to_each_card_and_a_purchase_elsewhere_freezes_it(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """mcc_allow reaches Interlace; a purchase at another category is declined there AND freezes the card here."""
    from helpers import serving

    notices = Notices()
    async with serving(notices.app()) as base:
        policy = POLICY + 'mcc_allow = ["5734"]\nmcc_block = ["7995"]\n'
        server = make_server(policy=policy, approval_notify_url=f"{base}/notify")
        rt = runtime(server)
        async with Client(server) as c:
            issued = await call(c, "issue_card", {"amount": "30.00", "request_id": "m-1"})
            card_id = issued["card"]["card_id"]
            controls = await rt.api.get_card_spend_controls(card_id)
            ok = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "5.00", "mcc": "5734"})
            elsewhere = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "5.00", "mcc": "5812"})
            card = await call(c, "get_card", {"card_id": card_id})
            denied = await refuse(c, "unfreeze_card", {"card_id": card_id})
            status = await call(c, "get_spend_status", {})
            await check_cards(rt)  # another look at the same transaction: no second freeze, audit or notice
    assert issued["warnings"] is None
    assert (controls.mcc_allow, controls.mcc_block) == (["5734"], ["7995"])
    assert ok["approved"] is True
    assert elsewhere["approved"] is False and elsewhere["decline_code"] == "1110"
    assert elsewhere["decline_reason"] == "the merchant category is not on the card's allow list"
    assert card["card_status"] == "FROZEN" and card["frozen_by"] == "policy"
    assert denied.startswith("[card_frozen]") and "policy" in denied
    assert (status["mcc_allow"], status["mcc_block"]) == (["5734"], ["7995"])
    frozen = events(rt, "card_frozen_by_policy")
    txn_id = elsewhere["transaction_id"]  # a 19-digit id that passes Luhn is masked by the audit log's scrubber
    assert len(frozen) == 1 and frozen[0].upstream_ids["transaction_id"] in (txn_id, f"[card ...{txn_id[-4:]}]")
    assert frozen[0].outcome == "frozen:mcc_allow" and frozen[0].actor == "server"
    assert [n["event"] for n in notices.received] == ["card.frozen_by_policy"]
    assert notices.received[0]["card_id"] == card_id and notices.received[0]["mcc"] == "5812"


async def test_an_agent_unfreeze_racing_a_policy_freeze_leaves_the_card_frozen(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """The agent froze its card and unfreezes it while a purchase at a blocked category arrives: the policy freeze
    (audited, told to operators) must hold -- the card ends FROZEN at Interlace with frozen_by "policy"."""
    server = make_server(policy=POLICY + 'mcc_block = ["7995"]\n')
    rt = runtime(server)
    state = sandbox_of(sandbox_app)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "30.00", "request_id": "u-1"}))["card"]["card_id"]
        await call(c, "freeze_card", {"card_id": card_id})
        state.add_fault(f"/open-api/v3/cards/{card_id}/unfreeze", "latency", method="POST", delay_ms=1500, times=1)
        unfrozen: list[Any] = []

        async def unfreeze() -> None:
            unfrozen.append(await c.call_tool("unfreeze_card", {"card_id": card_id}))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(unfreeze)
            await eventually(lambda: anyio.to_thread.run_sync(lambda: not state.faults or None))  # unfreeze sent
            # A purchase at the blocked category meanwhile (declined: the card is still frozen), and a look at it.
            await rt.api.simulate_authorization(card_id=card_id, amount=Decimal("5.00"), mcc="7995")
            await check_cards(rt, card_ids=[card_id])
        card = await call(c, "get_card", {"card_id": card_id})
    assert len(events(rt, "card_frozen_by_policy")) == 1
    assert state.cards[card_id].status == "FROZEN", unfrozen
    assert card["card_status"] == "FROZEN" and card["frozen_by"] == "policy"
    text = unfrozen[0].content[0].text
    assert unfrozen[0].is_error and text.startswith("[card_frozen]") and "policy" in text, text


async def test_a_failed_push_is_a_warning_and_a_transaction_read_still_freezes_the_card(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Interlace refuses the spend controls: issue completes with a warning; a purchase elsewhere is approved
    upstream, and the next read of the card's transactions freezes the card anyway."""
    state = sandbox_of(sandbox_app)
    server = make_server(policy=POLICY + 'mcc_block = ["7995"]\n')
    rt = runtime(server)
    async with Client(server) as c:
        state.add_fault("/open-api/v3/cards/spend-controls", "error", method="POST", status=500, times=20)
        issued = await call(c, "issue_card", {"amount": "30.00", "request_id": "w-1"})
        state.clear_faults()
        card_id = issued["card"]["card_id"]
        # A purchase the server does not see being made (straight at the emulator, no tool, no notification).
        state.simulate_auth(ACCOUNT_ID, card_id=card_id, amount=Decimal("6.00"), mcc="7995")
        state.take_outbox()
        assert state.cards[card_id].status == "ACTIVE"
        txns = await call(c, "get_card_transactions", {"card_id": card_id})
        card = await call(c, "get_card", {"card_id": card_id})
    assert issued["status"] == "completed"
    assert any("merchant categories" in w for w in issued["warnings"])
    assert [t["mcc"] for t in txns["transactions"] if t["type"] == "authorization"] == ["7995"]
    assert card["card_status"] == "FROZEN" and card["frozen_by"] == "policy"
    assert len(events(rt, "card_frozen_by_policy")) == 1


async def test_an_operator_unfreeze_of_the_agent_lifts_a_policy_freeze(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """The agent cannot lift policy's freeze; interlace-mcp agents unfreeze (an operator) can."""
    from interlace_mcp.app import set_agent_frozen

    server = make_server(policy=POLICY + 'mcc_allow = ["5734"]\n')
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "10.00", "request_id": "o-1"}))["card"]["card_id"]
        await call(c, "simulate_purchase", {"card_id": card_id, "amount": "1.00", "mcc": "5812"})
        await set_agent_frozen(rt, "default", freeze=False, by="alice", reason="checked the merchant")
        card = await call(c, "get_card", {"card_id": card_id})
    assert card["card_status"] == "ACTIVE" and card["frozen_by"] is None


# ---- 3-D Secure ----------------------------------------------------------------------------------


async def test_a_three_ds_code_reaches_its_card_s_agent_audited_and_never_logged(
    make_server: ServerFactory, sandbox_app: Starlette, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """three_ds=true: the OTP webhook arrives first; get_3ds_code hands it over with merchant, amount, expiry."""
    caplog.set_level(logging.DEBUG)
    server = make_server(policy=POLICY)
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "20.00", "request_id": "t-1"}))["card"]["card_id"]
        none_yet = await refuse(c, "get_3ds_code", {"card_id": card_id})
        bought = await call(
            c, "simulate_purchase", {"card_id": card_id, "amount": "12.50", "merchant": "Books", "three_ds": True}
        )
        code = await call(c, "get_3ds_code", {"card_id": card_id})
        clock.advance(601)
        expired = await refuse(c, "get_3ds_code", {"card_id": card_id})
        unknown = await refuse(c, "get_3ds_code", {"card_id": "no-such-card"})
    otp = sandbox_of(sandbox_app).webhooks_of("CARD.3DS.OTP")
    assert len(otp) == 1
    sent = otp[0].resource_object
    assert none_yet.startswith("[not_found] no unexpired 3-D Secure code")
    assert bought["approved"] is True
    assert code["code"] == sent["otp"] and len(code["code"]) == 6
    assert (code["merchant"], code["amount"], code["currency"]) == ("Books", "12.50", "USD")
    assert code["expires_at"] == "2026-11-18T11:16:40Z"  # createTime + 10 minutes, as the notification said
    assert expired.startswith("[not_found]") and unknown.startswith("[not_found]")
    # The notification is stored whole; the code is in no log line and no audit record.
    stored = rt.ledger._conn.execute("SELECT resource_json FROM three_ds_codes").fetchall()
    assert [json.loads(row[0]) for row in stored] == [sent]
    reads = events(rt, "three_ds_code_access")
    assert [r.outcome for r in reads] == ["none", "code_returned", "none"]
    assert sent["otp"] not in json.dumps([r.__dict__ for r in rt.audit.tail(500)])
    assert sent["otp"] not in caplog.text


async def test_another_agent_never_gets_a_card_s_code(make_server: ServerFactory, sandbox_app: Starlette) -> None:
    """Codes are per card and a card is its agent's: another agent's get_3ds_code is not_found."""
    server = make_server(policy=POLICY)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "20.00", "request_id": "a-1"}))["card"]["card_id"]
        await call(c, "simulate_purchase", {"card_id": card_id, "amount": "1.00", "three_ds": True})
        runtime(server).settings.agent_id = "other"
        text = await refuse(c, "get_3ds_code", {"card_id": card_id})
    assert text.startswith("[not_found]")


def test_codes_are_read_defensively_from_shapes_interlace_has_not_confirmed() -> None:
    """Other field names, one level down, numbers as codes; junk values ignored; no code -> nothing."""
    from interlace_mcp.tools._three_ds import read_code

    def found(resource: dict[str, Any]) -> Any:
        return read_code(three_ds.StoredCode("c", resource, 0.0, 1_795_000_600.0))

    nested = found({"cardId": "c", "data": {"verificationCode": 123456, "merchant": "Shop", "amount": "7.5"}})
    as_text = found({"detail": json.dumps({"code": "A1B2C3", "billingCurrency": "EUR"})})
    junk = found({"otp": "12", "code": "x" * 40, "transactionAmount": "1e9", "transactionCurrency": "dollars"})
    partial = found({"otp": "654321", "transactionAmount": 3, "transactionCurrency": "usd"})
    assert nested is not None and (nested.code, nested.merchant, nested.amount) == ("123456", "Shop", "7.50")
    assert as_text is not None and (as_text.code, as_text.currency) == ("A1B2C3", "EUR")
    assert junk is None
    assert partial is not None and (partial.code, partial.amount, partial.currency) == ("654321", "3.00", None)


# ---- declines ------------------------------------------------------------------------------------


async def test_declines_say_what_to_do_and_fraud_codes_say_no_more_than_risk_checks(
    make_server: ServerFactory, sandbox_app: Starlette
) -> None:
    """Each decline carries Interlace's code and plain words; the risk decline reads only the risk sentence."""
    sandbox_of(sandbox_app).config.risk_decline_merchants = ["Shady Store"]
    server = make_server(policy=POLICY)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "10.00", "request_id": "d-1"}))["card"]["card_id"]
        broke = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "11.00"})
        risky = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "1.00", "merchant": "Shady Store"})
        await call(c, "freeze_card", {"card_id": card_id})
        frozen = await call(c, "simulate_purchase", {"card_id": card_id, "amount": "1.00"})
        txns = await call(c, "get_card_transactions", {"card_id": card_id})
    assert (broke["decline_code"], broke["decline_reason"]) == ("1201", "the card's balance is lower than the amount")
    assert (risky["decline_code"], risky["decline_reason"]) == ("1013", "declined by the issuer's risk checks")
    assert "fraud" not in json.dumps(risky).lower()
    assert (frozen["decline_code"], frozen["decline_reason"]) == ("1202", "the card is frozen")
    declined = [t for t in txns["transactions"] if not t["approved"]]
    assert {(t["decline_code"], t["decline_reason"]) for t in declined} == {
        ("1201", "the card's balance is lower than the amount"),
        ("1013", "declined by the issuer's risk checks"),
        ("1202", "the card is frozen"),
    }
    assert all(t["decline_code"] is None for t in txns["transactions"] if t["approved"])


# ---- restart -------------------------------------------------------------------------------------


async def test_a_card_issued_before_a_restart_expires_after_it(
    tmp_path: Path, clock: Clock, sandbox_app: Starlette, database_url: str
) -> None:
    """The expiry lives in the ledger: a server started after it closes the card at startup."""
    settings = Settings(_env_file=None, state_dir=tmp_path / "state", database_url=database_url)  # type: ignore[call-arg]

    def server() -> MCPServer[Runtime]:
        return build_server(
            settings, sandbox_app=sandbox_app, ledger=Ledger.from_url(database_url, clock=clock), backoff=False
        )

    first = server()
    async with Client(first) as c:
        card_id = (await call(c, "issue_card", {"amount": "6.00", "request_id": "x-1", "expires_in_minutes": 5}))[
            "card"
        ]["card_id"]
    runtime(first).ledger.close()
    runtime(first).audit.close()
    clock.advance(6 * 60)
    second = server()
    try:
        async with Client(second) as c:  # its startup round closes the expired card
            card = await call(c, "get_card", {"card_id": card_id})
    finally:
        runtime(second).ledger.close()
        runtime(second).audit.close()
    assert card["card_status"] == "DELETED" and card["closed_reason"].startswith("expired")
    assert infinity(sandbox_app) == SEED
