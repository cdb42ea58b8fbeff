"""Checkout on the emulator: settlement, spend controls, decline codes, 3-D Secure, webhook delivery."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helpers import Clock, serving
from interlace_mcp.sandbox import (
    ACCOUNT_ID,
    CLIENT_SECRET,
    CRYPTO_WALLET_ID,
    PREPAID_BIN_ID,
    SandboxState,
    WebhookEnvelope,
    create_sandbox_app,
)
from interlace_mcp.server._webhooks import sign_resource
from sandbox.support import (
    V3,
    card_available,
    data,
    login,
    new_card,
    open_client,
    sandbox,
    simulate,
    transactions,
)

pytestmark = pytest.mark.anyio


def verify(envelope: WebhookEnvelope) -> dict[str, Any]:
    """The envelope's signature checks out with the server's scheme; returns the parsed resource."""
    payload = json.loads(envelope.body)
    assert envelope.headers["Signature"] == sign_resource(payload["resource"], CLIENT_SECRET)
    assert envelope.headers["Signature-Method"] == "HMAC-SHA256"
    assert envelope.headers["Timestamp"] == payload["createTime"]
    resource: dict[str, Any] = json.loads(payload["resource"])
    return resource


class Sink:
    """An in-process webhook receiver that keeps what it got."""

    def __init__(self) -> None:
        self.got: list[WebhookEnvelope] = []

    async def __call__(self, envelope: WebhookEnvelope) -> None:
        self.got.append(envelope)

    def events(self) -> list[str]:
        return [e.event_type for e in self.got]


# ---- settlement ----------------------------------------------------------------------------------


async def test_an_approved_authorization_settles_a_few_seconds_later_with_created_then_updated() -> None:
    """PENDING until settle_after_seconds have passed, then CLOSED on the next read; both webhooks are signed."""
    clock, sink = Clock(), Sink()
    app = create_sandbox_app(clock=clock, webhook_sink=sink)
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "20")
        tx = await simulate(api, card_id, "12.50", merchantName="Shop", mcc="5734")
        assert tx["status"] == "PENDING"
        clock.advance(2.9)
        assert [t["status"] for t in await transactions(api, card_id, type="1")] == ["PENDING"]
        clock.advance(0.2)
        (settled,) = await transactions(api, card_id, type="1")
        assert settled["status"] == "CLOSED" and settled["id"] == tx["id"]
        assert await card_available(api, card_id) == Decimal("7.50")
    assert sink.events() == ["CARD_TRANSACTION.CREATED", "CARD_TRANSACTION.UPDATED"]
    created, updated = (verify(e) for e in sink.got)
    assert created == tx
    assert (updated["id"], updated["status"], updated["amount"]) == (tx["id"], "CLOSED", "12.50")
    assert all(e.delivered for e in sandbox(app).webhooks)


async def test_settle_after_zero_clears_at_once_and_the_delay_is_configurable() -> None:
    """settle_after_seconds 0 answers the authorization already CLOSED; the config echoes the setting."""
    app = create_sandbox_app(clock=Clock())
    async with open_client(app) as api:
        await login(api)
        config = data(await api.post("/_sandbox/config", json={"settle_after_seconds": 0}))
        assert config["settle_after_seconds"] == 0
        card_id = await new_card(api, "5")
        assert (await simulate(api, card_id, "1"))["status"] == "CLOSED"
        for bad in (-1, "3", True, 10**9):
            resp = await api.post("/_sandbox/config", json={"settle_after_seconds": bad})
            assert (resp.status_code, resp.json()["code"]) == (400, "400002"), bad
    events = [e.event_type for e in sandbox(app).webhooks]
    assert events == ["CARD_TRANSACTION.CREATED", "CARD_TRANSACTION.UPDATED"]


async def test_sandbox_settle_clears_now_and_a_failed_settlement_releases_the_hold() -> None:
    """POST /_sandbox/settle by transaction or card; status FAIL gives the held amount back."""
    app = create_sandbox_app(clock=Clock())
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "30")
        first = await simulate(api, card_id, "10")
        second = await simulate(api, card_id, "5")
        third = await simulate(api, card_id, "2")
        done = data(await api.post("/_sandbox/settle", json={"transactionId": first["id"]}))
        assert [t["id"] for t in done["list"]] == [first["id"]] and done["list"][0]["status"] == "CLOSED"
        failed = data(await api.post("/_sandbox/settle", json={"transactionId": second["id"], "status": "FAIL"}))
        assert failed["list"][0]["status"] == "FAIL"
        assert await card_available(api, card_id) == Decimal("18.00")  # 30 - 10 - 2; the 5 came back
        rest = data(await api.post("/_sandbox/settle", json={"cardId": card_id}))
        assert [t["id"] for t in rest["list"]] == [third["id"]]
        again = await api.post("/_sandbox/settle", json={"transactionId": first["id"]})
        assert (again.status_code, again.json()["code"]) == (400, "400002")
        unknown = await api.post("/_sandbox/settle", json={"transactionId": "1234567890123456789"})
        assert unknown.status_code == 404
        assert data(await api.post("/_sandbox/settle", json={}))["total"] == "0"
        snap = data(await api.get("/_sandbox/state"))
        assert (snap["purchases_total"], snap["reversals_total"], snap["pending_authorizations"]) == (
            "17.00",
            "5.00",
            0,
        )


async def test_reading_the_state_settles_what_is_due_without_any_request() -> None:
    """SandboxState.snapshot() settles due authorizations itself: no background thread, no HTTP."""
    clock = Clock()
    state = SandboxState(clock=clock)
    card = state.issue_prepaid_card(
        ACCOUNT_ID,
        bin_id=PREPAID_BIN_ID,
        cardholder_id=state.cardholders[next(iter(state.cardholders))].id,
        reference_id="direct",
        card_mode="VIRTUAL_CARD",
        amount=Decimal("9"),
    )
    tx = state.simulate_auth(ACCOUNT_ID, card_id=card.id, amount=Decimal("4"))
    assert state.snapshot()["pending_authorizations"] == 1
    clock.advance(60)
    assert state.snapshot()["pending_authorizations"] == 0
    assert state.card_transactions[tx.id].status == "CLOSED"
    assert [e.event_type for e in state.take_outbox()] == ["CARD_TRANSACTION.CREATED", "CARD_TRANSACTION.UPDATED"]


# ---- spend controls ------------------------------------------------------------------------------


async def controls(api: httpx.AsyncClient, card_id: str) -> list[dict[str, Any]]:
    params = {"accountId": ACCOUNT_ID, "cardId": card_id}
    items: list[dict[str, Any]] = data(await api.get(f"{V3}/cards/spend-controls", params=params))["list"]
    return items


async def rule(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post(f"{V3}/cards/spend-controls", json={"accountId": ACCOUNT_ID, "usage": "MCC", **body})


async def test_an_mcc_allow_list_declines_other_categories_with_code_1110(api_app: Starlette) -> None:
    """A card WHITELIST of 5734 approves 5734 and declines 5812 (FAIL, 1110, nothing held)."""
    async with open_client(api_app) as api:
        await login(api)
        card_id, other = await new_card(api, "50"), await new_card(api, "50")
        created = data(await rule(api, keywords="5734", type="WHITELIST", cardIds=[card_id]))
        assert (created["usage"], created["keywords"], created["type"], created["cardIds"]) == (
            "MCC",
            "5734",
            "WHITELIST",
            [card_id],
        )
        assert [r["id"] for r in await controls(api, card_id)] == [created["id"]]
        assert await controls(api, other) == []
        declined = await simulate(api, card_id, "10", mcc="5812", merchantName="Diner")
        assert (declined["status"], declined["declineCode"], declined["remark"]) == (
            "FAIL",
            "1110",
            "Blocked by customer MCC whitelist",
        )
        assert await card_available(api, card_id) == Decimal("50.00")
        assert (await simulate(api, card_id, "10", mcc="5734"))["status"] == "PENDING"
        assert (await simulate(api, card_id, "1"))["declineCode"] == "1110"  # no category is not on the list
        assert (await simulate(api, other, "10", mcc="5812"))["status"] == "PENDING"
        same = data(await rule(api, keywords="5734", type="WHITELIST", cardIds=[card_id]))
        assert same["id"] == created["id"]  # the same rule twice is one rule


async def test_an_mcc_block_list_declines_with_1111_and_a_bin_rule_covers_every_card_of_the_bin(
    api_app: Starlette,
) -> None:
    """BLACKLIST 7995 on the BIN blocks it on all its cards; deleting the rule lifts it."""
    async with open_client(api_app) as api:
        await login(api)
        card_id = await new_card(api, "50")
        resp = await api.post(
            f"{V3}/card/bins/spend-controls",
            json={
                "accountId": ACCOUNT_ID,
                "usage": "MCC",
                "keywords": "7995",
                "type": "BLACKLIST",
                "cardBinIds": [PREPAID_BIN_ID],
            },
        )
        bin_rule = data(resp)
        later_card = await new_card(api, "50")
        for cid in (card_id, later_card):
            tx = await simulate(api, cid, "5", mcc="7995")
            assert (tx["status"], tx["declineCode"], tx["remark"]) == (
                "FAIL",
                "1111",
                "Blocked by customer MCC blacklist",
            )
            assert (await simulate(api, cid, "5", mcc="5411"))["status"] == "PENDING"
        gone = await api.delete(f"{V3}/cards/spend-controls/{bin_rule['id']}", params={"accountId": ACCOUNT_ID})
        assert data(gone) == {"id": bin_rule["id"], "deleted": True}
        assert (await simulate(api, card_id, "5", mcc="7995"))["status"] == "PENDING"
        currency = data(await rule(api, usage="TRANSACTION_CURRENCY", keywords="USD", type="BLACKLIST"))
        assert (await simulate(api, card_id, "1"))["declineCode"] == "1113"
        await api.delete(f"{V3}/cards/spend-controls/{currency['id']}", params={"accountId": ACCOUNT_ID})


async def test_spend_control_input_is_validated_and_changes_nothing(api_app: Starlette) -> None:
    """Bad usage, keywords, type, card or id answer 400/404 and add no rule."""
    async with open_client(api_app) as api:
        await login(api)
        card_id = await new_card(api, "5")
        for body, status in (
            ({"keywords": "57", "type": "WHITELIST"}, 400),
            ({"keywords": "5734", "type": "ALLOW"}, 400),
            ({"usage": "SCENARIO", "keywords": "ads", "type": "WHITELIST"}, 400),
            ({"usage": "TRANSACTION_CURRENCY", "keywords": "usd", "type": "BLACKLIST"}, 400),
            ({"keywords": "5734", "type": "WHITELIST", "cardIds": ["no-such-card"]}, 404),
            ({"keywords": "5734", "type": "WHITELIST", "cardIds": "x"}, 400),
            ({"keywords": "5734", "type": "WHITELIST", "id": 99}, 404),
        ):
            resp = await rule(api, **body)
            assert resp.status_code == status, (body, resp.text)
        resp = await api.post(
            f"{V3}/card/bins/spend-controls",
            json={
                "accountId": ACCOUNT_ID,
                "usage": "MCC",
                "keywords": "5734",
                "type": "WHITELIST",
                "cardIds": [card_id],
            },
        )
        assert resp.status_code == 400
        bad_mcc = await api.post(
            f"{V3}/vcc/simulate/auth",
            json={"accountId": ACCOUNT_ID, "cardId": card_id, "amount": "1", "mcc": "57a4"},
        )
        assert bad_mcc.status_code == 400
        assert sandbox(api_app).spend_rules == {}
        assert await controls(api, card_id) == []


# ---- decline codes -------------------------------------------------------------------------------


async def test_every_decline_carries_interlace_s_business_code_and_holds_nothing(api_app: Starlette) -> None:
    """Insufficient, frozen, expired, velocity, risk (flag and merchant), deleted: FAIL + code + message."""
    async with open_client(api_app) as api:
        await login(api)
        card_id = await new_card(api, "20")
        assert (await simulate(api, card_id, "25"))["declineCode"] == "1201"
        await api.put(
            f"{V3}/cards/{card_id}/velocity-control",
            json={"accountId": ACCOUNT_ID, "transactionLimitsType": "DAY", "amountLimit": "10"},
        )
        assert (await simulate(api, card_id, "11"))["declineCode"] == "1205"
        assert (await simulate(api, card_id, "1", riskDecline=True))["declineCode"] == "1013"
        await api.post("/_sandbox/config", json={"risk_decline_merchants": ["Shady Shop"]})
        risky = await simulate(api, card_id, "1", merchantName="shady shop")
        assert (risky["declineCode"], risky["remark"]) == ("1013", "Fraudulent transaction")
        await api.post(f"{V3}/cards/{card_id}/freeze", json={"accountId": ACCOUNT_ID})
        assert (await simulate(api, card_id, "1"))["declineCode"] == "1202"
        await api.post(f"{V3}/cards/{card_id}/unfreeze", json={"accountId": ACCOUNT_ID})
        expired = data(await api.post(f"/_sandbox/cards/{card_id}/expire"))
        assert expired["id"] == card_id
        assert (await simulate(api, card_id, "1"))["declineCode"] == "1204"
        fresh = await new_card(api, "5")
        await api.delete(f"{V3}/cards/{fresh}", params={"accountId": ACCOUNT_ID})
        after_delete = await simulate(api, fresh, "1")
        assert (after_delete["status"], after_delete["declineCode"]) == ("FAIL", "1014")
        assert await card_available(api, card_id) == Decimal("20.00")
        approved = await simulate(api, await new_card(api, "5"), "1")
        assert (approved["status"], approved["declineCode"], approved["remark"]) == ("PENDING", None, "")
        unknown = await api.post(
            f"{V3}/vcc/simulate/auth", json={"accountId": ACCOUNT_ID, "cardId": "nope", "amount": "1"}
        )
        assert unknown.status_code == 404


# ---- 3-D Secure and webhook delivery -------------------------------------------------------------


async def test_three_ds_sends_a_signed_otp_webhook_before_the_authorization() -> None:
    """threeDs: CARD.3DS.OTP (6 digits, merchant, amount, currency, 10-minute expiry) then the authorization."""
    clock, sink = Clock(), Sink()
    app = create_sandbox_app(clock=clock, webhook_sink=sink)
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "20")
        tx = await simulate(api, card_id, "15.00", merchantName="Book Store", mcc="5942", threeDs=True)
        data(await api.post("/_sandbox/simulate-purchase", json={"cardId": card_id, "amount": "1", "three_ds": True}))
        await simulate(api, card_id, "1")
    assert sink.events() == [
        "CARD.3DS.OTP",
        "CARD_TRANSACTION.CREATED",
        "CARD.3DS.OTP",
        "CARD_TRANSACTION.CREATED",
        "CARD_TRANSACTION.CREATED",
    ]
    otp = verify(sink.got[0])
    assert otp["otp"].isdigit() and len(otp["otp"]) == 6
    assert (otp["cardId"], otp["merchantName"], otp["transactionAmount"], otp["transactionCurrency"]) == (
        card_id,
        "Book Store",
        "15.00",
        "USD",
    )
    assert int(otp["expireTime"]) - int(otp["createTime"]) == 600_000
    assert int(otp["createTime"]) == int(clock.now * 1000)
    assert verify(sink.got[1])["id"] == tx["id"]
    assert verify(sink.got[2])["transactionAmount"] == "1.00"


async def test_freezing_unfreezing_and_deleting_a_card_are_notified_as_interlace_documents() -> None:
    """CARD.UPDATED when the status changes (not for a repeated freeze), CARD.DELETED when the card is deleted."""
    sink = Sink()
    app = create_sandbox_app(webhook_sink=sink)
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "5")
        for action in ("freeze", "freeze", "unfreeze"):
            data(await api.post(f"{V3}/cards/{card_id}/{action}", json={"accountId": ACCOUNT_ID}))
        data(await api.delete(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID}))
    assert sink.events() == ["CARD.UPDATED", "CARD.UPDATED", "CARD.DELETED"]
    assert [verify(e)["status"] for e in sink.got] == ["FROZEN", "ACTIVE", "DELETED"]
    assert {verify(e)["id"] for e in sink.got} == {card_id}


async def test_the_sink_and_the_url_get_the_same_signed_envelope_and_failures_are_recorded() -> None:
    """One webhook, three receivers (a URL, a good sink, a failing sink): identical bytes; failures logged."""
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={"received": True})

    good = Sink()

    def broken(envelope: WebhookEnvelope) -> None:
        raise RuntimeError("intake down")

    app = create_sandbox_app(
        webhook_url="http://hooks.test/in", webhook_transport=httpx.MockTransport(receiver), webhook_sink=good
    )
    sandbox(app).add_webhook_sink(broken)
    async with open_client(app) as api:
        await login(api)
        await simulate(api, await new_card(api, "5"), "1")
    (envelope,) = sandbox(app).webhooks
    assert good.got == [envelope]
    (request,) = received
    assert request.content == envelope.body
    assert {k: request.headers[k] for k in envelope.headers} == envelope.headers
    assert [(d.target, d.ok, d.error) for d in envelope.deliveries] == [
        ("sink", True, None),
        ("sink", False, "RuntimeError"),
        ("http://hooks.test/in", True, None),
    ]
    sandbox(app).remove_webhook_sink(broken)
    assert sandbox(app).webhook_sinks == [good]


@pytest.mark.slow
async def test_settlement_webhooks_reach_a_receiver_over_loopback_http() -> None:
    """A served emulator (with its ticker) POSTs CREATED then, unprompted, UPDATED to a loopback receiver."""
    got: list[tuple[str, dict[str, str], bytes]] = []
    arrived = anyio.Event()

    async def intake(request: Request) -> JSONResponse:
        got.append((request.url.path, dict(request.headers), await request.body()))
        if len(got) == 2:
            arrived.set()
        return JSONResponse({"received": True})

    receiver = Starlette(routes=[Route("/hooks", intake, methods=["POST"])])
    async with serving(receiver) as receiver_url:
        emulator = create_sandbox_app(webhook_url=f"{receiver_url}/hooks", tick_seconds=0.05)
        sandbox(emulator).config.settle_after_seconds = 0.2
        async with serving(emulator) as base, httpx.AsyncClient(base_url=base) as api:
            await login(api)
            card_id = await new_card(api, "5")
            tx = await simulate(api, card_id, "2")
            with anyio.fail_after(10):
                await arrived.wait()
    events = [json.loads(body) for _, _, body in got]
    assert [e["eventType"] for e in events] == ["CARD_TRANSACTION.CREATED", "CARD_TRANSACTION.UPDATED"]
    for (_, headers, _), event in zip(got, events, strict=True):
        assert headers["signature"] == sign_resource(event["resource"], CLIENT_SECRET)
    assert json.loads(events[1]["resource"])["id"] == tx["id"]
    assert json.loads(events[1]["resource"])["status"] == "CLOSED"


# ---- persistence ---------------------------------------------------------------------------------


async def test_checkout_and_wallet_state_survive_a_restart(tmp_path: Path) -> None:
    """Rules, expiry, settlement status, pending deadlines, wallets and deposits round-trip the state file."""
    path = tmp_path / "sandbox.json"
    clock = Clock()
    app = create_sandbox_app(state_path=path, clock=clock)
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "40")
        await rule(api, keywords="5734", type="WHITELIST", cardIds=[card_id])
        settled = await simulate(api, card_id, "3", mcc="5734")
        await api.post("/_sandbox/settle", json={"transactionId": settled["id"]})
        pending = await simulate(api, card_id, "4", mcc="5734")
        await api.post("/_sandbox/deposit", json={"amount": "12.345678", "currency": "USDC"})
        await api.post(f"/_sandbox/cards/{card_id}/expire")
    before = sandbox(app).to_dict()
    restarted = SandboxState.load(path, clock=clock)
    assert restarted.to_dict() == before
    assert restarted.wallets[CRYPTO_WALLET_ID].available["USDC"] == Decimal("5012.345678")
    assert restarted.card_expired(restarted.cards[card_id])
    clock.advance(10)
    restarted.settle_due()
    assert restarted.card_transactions[pending["id"]].status == "CLOSED"


def test_a_state_file_written_before_wallets_and_controls_still_loads(tmp_path: Path) -> None:
    """A version-1 file without the new keys loads: old transactions default, the wallet is seeded."""
    state = SandboxState()
    card = state.issue_prepaid_card(
        ACCOUNT_ID,
        bin_id=PREPAID_BIN_ID,
        cardholder_id=next(iter(state.cardholders)),
        reference_id="old",
        card_mode="VIRTUAL_CARD",
        amount=Decimal("7"),
    )
    raw = state.to_dict()
    for key in ("wallets", "deposits", "spend_rules"):
        del raw[key]
    for tx in raw["card_transactions"]:
        for key in ("decline_code", "settle_at", "update_time"):
            del tx[key]
    for key in ("settle_after_seconds", "risk_decline_merchants"):
        del raw["config"][key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    loaded = SandboxState.load(path)
    assert loaded.balances[card.balance_id].available == Decimal("7")
    assert loaded.wallets[CRYPTO_WALLET_ID].available == {"USDC": Decimal("5000.00"), "USDT": Decimal("0.00")}
    assert loaded.config.settle_after_seconds == 3.0 and loaded.spend_rules == {}


@pytest.fixture
def api_app() -> Starlette:
    return create_sandbox_app(clock=Clock())
