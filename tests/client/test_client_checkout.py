"""InterlaceClient for checkout and stablecoin funding, end to end against the in-process emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from helpers import Clock
from interlace_mcp.client import (
    Card,
    CardTransaction,
    DeclineCodeAdapter,
    InsufficientFundsError,
    InterlaceClient,
    NotFoundError,
    ServerError,
    ValidationError,
    describe_decline,
)
from interlace_mcp.money import AmountError
from interlace_mcp.sandbox import (
    CARDHOLDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    CRYPTO_WALLET_ID,
    DEPOSIT_ADDRESS,
    INFINITY_BALANCE_ID,
    PREPAID_BIN_ID,
    SandboxState,
    create_sandbox_app,
)

pytestmark = pytest.mark.anyio

BASE_URL = "http://sandbox.test"
V3 = "/open-api/v3"


class Recorder(httpx.AsyncBaseTransport):
    """Pass-through to the emulator that keeps every request the client sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Starlette:
    return create_sandbox_app(clock=clock)


@pytest.fixture
def state(app: Starlette) -> SandboxState:
    result: SandboxState = app.state.sandbox
    return result


@pytest.fixture
def recorder(app: Starlette) -> Recorder:
    return Recorder(httpx.ASGITransport(app=app))


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[InterlaceClient]:
    async with InterlaceClient(
        base_url=BASE_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=recorder, backoff=False
    ) as api:
        yield api


async def new_card(client: InterlaceClient, amount: str = "50") -> Card:
    return await client.create_prepaid_card(
        bin_id=PREPAID_BIN_ID,
        cardholder_id=CARDHOLDER_ID,
        reference_id=f"ref-{uuid.uuid4()}",
        amount=Decimal(amount),
        label=None,
        idempotency_key=str(uuid.uuid4()),
    )


async def fund(client: InterlaceClient, amount: str, ctid: str, key: str | None = None, **kw: Any) -> Any:
    return await client.transfer_from_wallet(
        amount=Decimal(amount),
        currency=kw.pop("currency", "USDC"),
        client_transaction_id=ctid,
        idempotency_key=key or str(uuid.uuid4()),
        **kw,
    )


async def usdc(client: InterlaceClient) -> Decimal:
    balance = (await client.get_crypto_wallet(CRYPTO_WALLET_ID)).balance("usdc")
    assert balance is not None
    return balance.available


# ---- purchases: categories, 3-D Secure, declines, settlement -------------------------------------


async def test_simulate_authorization_sends_mcc_and_three_ds_and_reads_decline_codes(
    client: InterlaceClient, recorder: Recorder, state: SandboxState
) -> None:
    """mcc and threeDs go on the wire; a decline carries decline_code and keeps Interlace's remark."""
    card = await new_card(client, "10")
    approved = await client.simulate_authorization(
        card_id=card.id, amount=Decimal("4"), merchant_name="Shop", mcc="5734", three_ds=True
    )
    assert (approved.status, approved.decline_code, approved.mcc) == ("PENDING", None, "5734")
    body = json.loads(recorder.sent("POST", f"{V3}/vcc/simulate/auth")[0].content)
    assert (body["mcc"], body["threeDs"]) == ("5734", True)
    assert [e.event_type for e in state.webhooks] == ["CARD.3DS.OTP", "CARD_TRANSACTION.CREATED"]
    poor = await client.simulate_authorization(card_id=card.id, amount=Decimal("7"))
    assert (poor.status, poor.decline_code, poor.remark) == ("FAIL", "1201", "insufficient balance")
    risky = await client.simulate_authorization(card_id=card.id, amount=Decimal("1"), risk_decline=True)
    reason = describe_decline(risky.decline_code)
    assert reason is not None and reason.risk and reason.reason == "declined by the issuer's risk checks"
    with pytest.raises(ValidationError):
        await client.simulate_authorization(card_id=card.id, amount=Decimal("1"), mcc="57")
    assert len(recorder.sent("POST", f"{V3}/vcc/simulate/auth")) == 3


async def test_sandbox_settle_and_the_clock_settle_authorizations_the_client_then_reads(
    client: InterlaceClient, clock: Clock
) -> None:
    """A purchase reads PENDING, then CLOSED once settled (explicitly or after settle_after_seconds)."""
    card = await new_card(client, "30")
    first = await client.simulate_authorization(card_id=card.id, amount=Decimal("5"))
    second = await client.simulate_authorization(card_id=card.id, amount=Decimal("6"))
    (settled,) = await client.sandbox_settle(transaction_id=first.id)
    assert (settled.id, settled.status) == (first.id, "CLOSED")
    (reversed_,) = await client.sandbox_settle(card_id=card.id, status="FAIL")
    assert (reversed_.id, reversed_.status, reversed_.decline_code) == (second.id, "FAIL", None)
    third = await client.simulate_authorization(card_id=card.id, amount=Decimal("1"))
    clock.advance(3.5)
    page = await client.list_card_transactions(card_id=card.id)
    statuses = {t.id: t.status for t in page.items}
    assert statuses[third.id] == "CLOSED" and statuses[second.id] == "FAIL"
    summary = await client.get_card_summary(card.id)
    assert summary.balance.available == Decimal("24.00")


# ---- spend controls ------------------------------------------------------------------------------


async def test_mcc_controls_are_pushed_read_back_replaced_and_enforced(
    client: InterlaceClient, recorder: Recorder, state: SandboxState
) -> None:
    """set_card_mcc_controls makes the card's lists exactly what was asked; a disallowed MCC declines 1110/1111."""
    card = await new_card(client)
    controls = await client.set_card_mcc_controls(card.id, allow=["5734", "5942"], block=["7995"])
    assert (controls.mcc_allow, controls.mcc_block) == (["5734", "5942"], ["7995"])
    posts = recorder.sent("POST", f"{V3}/cards/spend-controls")
    assert len(posts) == 3 and all(r.headers.get("Idempotency-Key") for r in posts)
    assert json.loads(posts[0].content)["cardIds"] == [card.id]
    assert (await client.get_card_spend_controls(card.id)).mcc_allow == ["5734", "5942"]
    declined = await client.simulate_authorization(card_id=card.id, amount=Decimal("1"), mcc="5812")
    assert (declined.status, declined.decline_code) == ("FAIL", "1110")
    reason = describe_decline(declined.decline_code)
    assert reason is not None and reason.category == "category_not_allowed"
    assert (await client.simulate_authorization(card_id=card.id, amount=Decimal("1"), mcc="5942")).status == "PENDING"
    again = await client.set_card_mcc_controls(card.id, allow=["5734", "5942"], block=["7995"])
    assert len(recorder.sent("POST", f"{V3}/cards/spend-controls")) == 3  # nothing new to push
    assert again.rules == controls.rules
    replaced = await client.set_card_mcc_controls(card.id, allow=[], block=["5812"])
    assert (replaced.mcc_allow, replaced.mcc_block) == ([], ["5812"])
    assert len(state.spend_rules) == 1
    blocked = await client.simulate_authorization(card_id=card.id, amount=Decimal("1"), mcc="5812")
    assert blocked.decline_code == "1111"
    before = len(recorder.requests)
    for bad in (["57"], ["5734x"], [5734], ["1"] * 101):
        with pytest.raises(ValidationError):
            await client.set_card_mcc_controls(card.id, allow=bad)  # type: ignore[arg-type]
    assert len(recorder.requests) == before


# ---- CryptoConnect -------------------------------------------------------------------------------


async def test_crypto_wallets_show_decimal_balances_and_the_deposit_address(
    client: InterlaceClient, recorder: Recorder
) -> None:
    """The seeded wallet lists with 5000 USDC; the ETH address is found without creating one."""
    (listed,) = await client.list_crypto_wallets()
    assert (listed.id, listed.master) == (CRYPTO_WALLET_ID, True)
    usdc_balance, usdt_balance = listed.balance("USDC"), listed.balance("USDT")
    assert usdc_balance is not None and usdc_balance.available == Decimal("5000.00")
    assert usdt_balance is not None and usdt_balance.available == Decimal("0")
    assert await client.list_crypto_wallets(master=False) == []
    address = await client.get_deposit_address()
    assert (address.address, address.chain, address.currency) == (DEPOSIT_ADDRESS, "ETH", "USDC")
    assert recorder.sent("POST", f"{V3}/cryptoconnect/wallets/{CRYPTO_WALLET_ID}/addresses") == []
    arb = await client.get_deposit_address(currency="usdt", chain="arb", wallet_id=CRYPTO_WALLET_ID)
    assert arb.chain == "ARB" and arb.address.startswith("0x")
    assert len(recorder.sent("POST", f"{V3}/cryptoconnect/wallets/{CRYPTO_WALLET_ID}/addresses")) == 1
    assert (await client.get_deposit_address(currency="USDT", chain="ARB")).address == arb.address
    with pytest.raises(NotFoundError):
        await client.get_deposit_address(chain="BASE", create=False)
    with pytest.raises(NotFoundError):
        await client.get_crypto_wallet("00000000-0000-0000-0000-000000000000")


async def test_a_simulated_deposit_shows_in_the_wallet_balance(client: InterlaceClient) -> None:
    """sandbox_deposit credits the wallet; amounts beyond 6 decimals are refused before sending."""
    deposit = await client.sandbox_deposit(amount=Decimal("125.000001"))
    assert (deposit.currency, deposit.chain, deposit.address) == ("USDC", "ETH", DEPOSIT_ADDRESS)
    assert deposit.amount == Decimal("125.000001")
    assert await usdc(client) == Decimal("5125.000001")
    with pytest.raises(ValidationError):
        await client.sandbox_deposit(amount=Decimal("1.0000001"))


async def test_funding_moves_usdc_into_infinity_once_and_is_found_by_client_transaction_id(
    client: InterlaceClient, recorder: Recorder
) -> None:
    """transfer_from_wallet: wallet -> Infinity 1:1; a repeat with the same key or ctid moves nothing more."""
    transfer = await fund(client, "250.10", "fund-1", key="key-1")
    assert (transfer.status, transfer.amount, transfer.client_transaction_id) == ("CLOSED", Decimal("250.10"), "fund-1")
    assert transfer.from_ is not None and (transfer.from_.business_type, transfer.from_.currency) == (2, "USDC")
    assert transfer.to is not None and (transfer.to.business_type, transfer.to.id) == (0, INFINITY_BALANCE_ID)
    body = json.loads(recorder.sent("POST", f"{V3}/business/transfer/internal")[0].content)
    assert body["from"] == {"businessType": 2, "id": CRYPTO_WALLET_ID, "currency": "USDC"}
    assert body["amount"] == "250.10"
    replay = await fund(client, "250.10", "fund-1", key="key-1")
    same_ctid = await fund(client, "250.10", "fund-1", key="key-2")
    assert replay.id == same_ctid.id == transfer.id
    assert await usdc(client) == Decimal("4749.90")
    assert (await client.infinity_balance()).available == Decimal("10250.10")
    found = await client.list_transfers(client_transaction_id="fund-1")
    assert [t.id for t in found.items] == [transfer.id]


async def test_funding_retries_faults_without_moving_twice_and_reports_unknown_outcomes(
    client: InterlaceClient, app: Starlette
) -> None:
    """A failure after commit is retried into a replay; exhausted 5xx is unknown_outcome; lookup settles it."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    path = f"{V3}/business/transfer/internal"
    async with http:
        await http.post("/_sandbox/faults", json={"path": path, "kind": "fail_after_commit", "times": 1})
        moved = await fund(client, "10", "fund-fac")
        assert moved.amount == Decimal("10.00")
        assert await usdc(client) == Decimal("4990.00")
        await http.post("/_sandbox/faults", json={"path": path, "kind": "error", "status": 503, "times": 4})
        with pytest.raises(ServerError) as info:
            await fund(client, "5", "fund-503")
        assert info.value.unknown_outcome
        assert (await client.list_transfers(client_transaction_id="fund-503")).items == []
    assert await usdc(client) == Decimal("4990.00")


async def test_funding_refusals_are_definite_and_validated_before_sending(
    client: InterlaceClient, recorder: Recorder
) -> None:
    """Too little USDT is InsufficientFundsError (not unknown); bad currency or amount never leaves."""
    with pytest.raises(InsufficientFundsError) as info:
        await fund(client, "1", "fund-usdt", currency="USDT")
    assert not info.value.unknown_outcome and info.value.code == "100100001"
    sent = len(recorder.sent("POST", f"{V3}/business/transfer/internal"))
    for amount, currency in (("1", "USD"), ("1", "BTC"), ("1.001", "USDC"), ("0", "USDC")):
        with pytest.raises((ValidationError, AmountError)):
            await fund(client, amount, f"bad-{amount}-{currency}", currency=currency)
    assert len(recorder.sent("POST", f"{V3}/business/transfer/internal")) == sent
    assert await usdc(client) == Decimal("5000.00")


# ---- the decline-code adapter --------------------------------------------------------------------


def test_the_decline_code_adapter_reads_the_field_or_the_documented_remark() -> None:
    """declineCode first, then other names, then a remark equal to Interlace's description; FAIL only."""
    base = {"id": "1", "amount": "1", "type": 1}
    assert DeclineCodeAdapter.decline_code({**base, "status": "FAIL", "declineCode": "1111"}) == "1111"
    assert DeclineCodeAdapter.decline_code({**base, "status": "FAIL", "businessCode": 1110}) == "1110"
    remark = {**base, "status": "FAIL", "remark": "Blocked by customer MCC blacklist"}
    assert DeclineCodeAdapter.decline_code(remark) == "1111"
    assert DeclineCodeAdapter.decline_code({**base, "status": "FAIL", "remark": "Do not honour"}) is None
    assert DeclineCodeAdapter.decline_code({**base, "status": "CLOSED", "declineCode": "1005"}) is None
    parsed = CardTransaction.model_validate(remark)
    assert (parsed.decline_code, parsed.remark) == ("1111", "Blocked by customer MCC blacklist")
    unknown = describe_decline("9999")
    assert unknown is not None and unknown.reason == "declined by the card issuer (code 9999)"
    assert describe_decline(None) is None
