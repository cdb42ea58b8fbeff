"""InterlaceClient end to end against the in-process sandbox emulator (docs/wire-contract.md)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pydantic
import pytest
from starlette.applications import Starlette

from interlace_mcp.client import (
    Card,
    CardStateError,
    CardTransaction,
    DuplicateError,
    InsufficientFundsError,
    InterlaceClient,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from interlace_mcp.sandbox import (
    ACCOUNT_ID,
    BUDGET_BIN_ID,
    CARDHOLDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    INFINITY_BALANCE_ID,
    PAYEE_ACCOUNT_ID,
    PAYEE_BALANCE_ID,
    PREPAID_BIN,
    PREPAID_BIN_ID,
    create_sandbox_app,
    luhn_valid,
)

pytestmark = pytest.mark.anyio

BASE_URL = "http://sandbox.test"
V3 = "/open-api/v3"


class RecordingTransport(httpx.AsyncBaseTransport):
    """Pass-through to the emulator that keeps every request and response the client sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.responses.append(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == V3 + path]


class Sandbox:
    """The emulator's control API (/_sandbox/...) on the same app."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)

    async def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._ok(await self.http.get("/_sandbox/state"))
        return result

    async def requests(self, method: str, path: str) -> int:
        counts: dict[str, int] = (await self.state())["requests"]
        return counts.get(f"{method} {V3}{path}", 0)

    async def auth_requests(self) -> dict[str, int]:
        return {
            "authorize": await self.requests("GET", "/oauth/authorize"),
            "access-token": await self.requests("POST", "/oauth/access-token"),
            "refresh-token": await self.requests("POST", "/oauth/refresh-token"),
        }

    async def fault(self, path: str, kind: str, **extra: object) -> None:
        await self._ok(await self.http.post("/_sandbox/faults", json={"path": V3 + path, "kind": kind, **extra}))

    async def expire_tokens(self) -> None:
        await self._ok(await self.http.post("/_sandbox/tokens/expire"))

    async def config(self, **values: object) -> None:
        await self._ok(await self.http.post("/_sandbox/config", json=values))


@pytest.fixture
def app() -> Starlette:
    """A fresh emulator per test."""
    return create_sandbox_app()


@pytest.fixture
def recorder(app: Starlette) -> RecordingTransport:
    """The transport the client talks through, recording what it sends."""
    return RecordingTransport(httpx.ASGITransport(app=app))


@pytest.fixture
async def sandbox(app: Starlette) -> AsyncIterator[Sandbox]:
    """Control-API helper for the emulator."""
    helper = Sandbox(app)
    async with helper.http:
        yield helper


def make_client(recorder: RecordingTransport, **kwargs: Any) -> InterlaceClient:
    return InterlaceClient(
        base_url=BASE_URL,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=recorder,
        backoff=False,
        **kwargs,
    )


@pytest.fixture
async def client(recorder: RecordingTransport) -> AsyncIterator[InterlaceClient]:
    """A client on the emulator with backoff off (tests never sleep)."""
    async with make_client(recorder) as api:
        yield api


async def new_card(client: InterlaceClient, amount: str | None = "50") -> Card:
    return await client.create_prepaid_card(
        bin_id=PREPAID_BIN_ID,
        cardholder_id=CARDHOLDER_ID,
        reference_id=f"ref-{uuid.uuid4()}",
        amount=None if amount is None else Decimal(amount),
        label="test card",
        idempotency_key=str(uuid.uuid4()),
    )


async def load(client: InterlaceClient, card_id: str, amount: str, ctid: str | None = None) -> CardTransaction:
    return await client.transfer_in(
        card_id=card_id,
        amount=Decimal(amount),
        client_transaction_id=ctid or f"ct-{uuid.uuid4()}",
        idempotency_key=str(uuid.uuid4()),
    )


# -- auth -----------------------------------------------------------------------------------------


async def test_authenticates_with_the_code_flow_and_sends_x_access_token(
    client: InterlaceClient, recorder: RecordingTransport
) -> None:
    """authorize -> access-token, then every call carries the token in x-access-token."""
    bins = await client.list_bins()
    assert {b.id for b in bins} >= {PREPAID_BIN_ID, BUDGET_BIN_ID}

    authorize, exchange, accounts, bins_request = recorder.requests[:4]
    assert authorize.method == "GET"
    assert authorize.url.path == f"{V3}/oauth/authorize"
    assert authorize.url.params["clientId"] == CLIENT_ID
    assert "x-access-token" not in authorize.headers
    code = recorder.responses[0].json()["data"]["code"]
    assert exchange.url.path == f"{V3}/oauth/access-token"
    assert json.loads(exchange.content) == {"clientId": CLIENT_ID, "code": code, "clientSecret": CLIENT_SECRET}
    token = recorder.responses[1].json()["data"]["accessToken"]
    assert accounts.url.path == f"{V3}/accounts"
    assert accounts.headers["x-access-token"] == token
    assert bins_request.url.path == f"{V3}/card/bins"
    assert bins_request.headers["x-access-token"] == token
    assert bins_request.url.params["accountId"] == ACCOUNT_ID
    assert "authorization" not in bins_request.headers
    assert client.account_id == ACCOUNT_ID


async def test_refreshes_the_token_before_it_expires() -> None:
    """With one clock for client and emulator, the token is refreshed inside the margin, never rejected."""
    now = [1_000_000.0]
    app = create_sandbox_app(clock=lambda: now[0])
    sandbox = Sandbox(app)
    recorder = RecordingTransport(httpx.ASGITransport(app=app))
    async with sandbox.http, make_client(recorder, clock=lambda: now[0], refresh_margin=300.0) as client:
        await client.list_bins()
        now[0] += 86400 - 301
        await client.list_bins()
        assert await sandbox.auth_requests() == {"authorize": 1, "access-token": 1, "refresh-token": 0}
        now[0] += 2  # 299 s left: inside the margin
        await client.list_bins()
        assert await sandbox.auth_requests() == {"authorize": 1, "access-token": 1, "refresh-token": 1}
        now[0] += 86400 - 250  # the first token is long dead; the refreshed one is not
        await client.list_bins()
        assert await sandbox.requests("GET", "/card/bins") == 4  # no call was ever rejected
        assert await sandbox.auth_requests() == {"authorize": 1, "access-token": 1, "refresh-token": 2}


async def test_a_short_lived_token_is_not_renewed_on_every_call(client: InterlaceClient, sandbox: Sandbox) -> None:
    """A token_ttl shorter than the margin still serves calls (the margin is capped at half the ttl)."""
    await sandbox.config(token_ttl_seconds=120)
    for _ in range(5):
        await client.list_bins()
    assert await sandbox.auth_requests() == {"authorize": 1, "access-token": 1, "refresh-token": 0}


async def test_a_rejected_token_is_renewed_once_and_the_call_succeeds(
    client: InterlaceClient, sandbox: Sandbox
) -> None:
    """After /_sandbox/tokens/expire the 401 causes exactly one re-auth and one repeat of the call."""
    await client.list_bins()
    await sandbox.expire_tokens()
    bins = await client.list_bins()
    assert bins
    auth = await sandbox.auth_requests()
    assert auth["authorize"] + auth["refresh-token"] == 2  # the first login + one renewal
    assert await sandbox.requests("GET", "/card/bins") == 3  # ok, rejected, repeated


async def test_twenty_concurrent_calls_with_an_expired_token_share_one_refresh(
    recorder: RecordingTransport, sandbox: Sandbox
) -> None:
    """Single flight: 20 callers past the expiry cause exactly one refresh."""
    now = [0.0]
    async with make_client(recorder, clock=lambda: now[0]) as client:
        await client.list_bins()
        now[0] = 86400.0 + 1
        results: list[int] = []

        async def call() -> None:
            results.append(len(await client.list_bins()))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(call)
    assert len(results) == 20
    assert await sandbox.auth_requests() == {"authorize": 1, "access-token": 1, "refresh-token": 1}


async def test_twenty_concurrent_calls_rejected_with_401_share_one_renewal(
    client: InterlaceClient, sandbox: Sandbox
) -> None:
    """Single flight on the 401 path too: one renewal however many callers saw the rejection."""
    await client.list_bins()
    await sandbox.expire_tokens()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.list_bins)
    auth = await sandbox.auth_requests()
    assert auth["authorize"] + auth["refresh-token"] == 2


# -- errors ---------------------------------------------------------------------------------------


async def test_envelope_errors_map_to_typed_errors(client: InterlaceClient) -> None:
    """Not found, insufficient funds, validation, duplicate and frozen-card answers raise their class."""
    with pytest.raises(NotFoundError) as not_found:
        await client.get_card_summary(str(uuid.uuid4()))
    assert not_found.value.code == "404001"
    assert not_found.value.status_code == 404

    with pytest.raises(InsufficientFundsError) as broke:
        await new_card(client, amount="20000")
    assert broke.value.code == "100100001"
    assert not broke.value.unknown_outcome

    with pytest.raises(ValidationError) as budget_bin:
        await client.create_prepaid_card(
            bin_id=BUDGET_BIN_ID,
            cardholder_id=CARDHOLDER_ID,
            reference_id="r-budget",
            amount=None,
            label=None,
            idempotency_key=str(uuid.uuid4()),
        )
    assert budget_bin.value.code == "070033"

    card = await new_card(client)
    with pytest.raises(ValidationError) as bad_limit:
        await client.set_velocity_control(card.id, limit_type="FORTNIGHT", amount=Decimal("5"))
    assert bad_limit.value.code == "400002"

    with pytest.raises(DuplicateError):
        await client.create_prepaid_card(
            bin_id=PREPAID_BIN_ID,
            cardholder_id=CARDHOLDER_ID,
            reference_id=str(card.reference_id),
            amount=None,
            label=None,
            idempotency_key=str(uuid.uuid4()),
        )

    frozen = await client.freeze_card(card.id)
    assert frozen.status == "FROZEN"
    with pytest.raises(CardStateError) as state_error:
        await load(client, card.id, "5")
    assert state_error.value.code == "070021"
    assert (await client.unfreeze_card(card.id)).status == "ACTIVE"
    await load(client, card.id, "5")


async def test_a_failed_post_is_never_retried(client: InterlaceClient, sandbox: Sandbox) -> None:
    """Business refusals (4xx) are final: one request, no retry."""
    card = await new_card(client)
    with pytest.raises(InsufficientFundsError):
        await client.transfer_out(
            card_id=card.id, amount=Decimal("999"), client_transaction_id="co-1", idempotency_key="k-co-1"
        )
    assert await sandbox.requests("POST", "/cards/transfer-out") == 1


# -- retries --------------------------------------------------------------------------------------


async def test_a_500_is_retried_with_the_same_body_and_idempotency_key(
    client: InterlaceClient, recorder: RecordingTransport, sandbox: Sandbox
) -> None:
    """An injected 500 before processing: one retry, same clientTransactionId and key, one movement."""
    card = await new_card(client, amount=None)
    await sandbox.fault("/cards/transfer-in", "error", status=500, times=1)
    tx = await client.transfer_in(
        card_id=card.id, amount=Decimal("12.5"), client_transaction_id="ct-500", idempotency_key="key-500"
    )
    assert tx.amount == Decimal("12.50")
    assert tx.client_transaction_id == "ct-500"
    sent = recorder.sent("POST", "/cards/transfer-in")
    assert len(sent) == 2
    assert {r.headers["Idempotency-Key"] for r in sent} == {"key-500"}
    assert sent[0].content == sent[1].content
    assert json.loads(sent[0].content)["clientTransactionId"] == "ct-500"
    state = await sandbox.state()
    assert [m for m in state["movements"] if m["clientTransactionId"] == "ct-500"] == [
        {"kind": "transfer_in", "clientTransactionId": "ct-500", "amount": "12.50"}
    ]
    assert state["cards"][card.id]["available"] == "12.50"


async def test_a_failure_after_commit_is_retried_without_moving_money_twice(
    client: InterlaceClient, recorder: RecordingTransport, sandbox: Sandbox
) -> None:
    """The emulator commits then answers 500; the retry replays and the money moved exactly once."""
    card = await new_card(client, amount=None)
    await sandbox.fault("/cards/transfer-in", "fail_after_commit", times=1)
    tx = await client.transfer_in(
        card_id=card.id, amount=Decimal("7"), client_transaction_id="ct-fac", idempotency_key="key-fac"
    )
    assert tx.amount == Decimal("7.00")
    assert await sandbox.requests("POST", "/cards/transfer-in") == 2
    sent = recorder.sent("POST", "/cards/transfer-in")
    assert sent[0].content == sent[1].content
    assert sent[0].headers["Idempotency-Key"] == sent[1].headers["Idempotency-Key"] == "key-fac"
    state = await sandbox.state()
    moves = [m for m in state["movements"] if m["clientTransactionId"] == "ct-fac"]
    assert len(moves) == 1
    assert state["cards"][card.id]["available"] == "7.00"


async def test_exhausted_retries_raise_server_error_with_unknown_outcome(
    client: InterlaceClient, sandbox: Sandbox
) -> None:
    """Four 503s in a row (1 + 3 retries) surface as ServerError flagged unknown_outcome."""
    card = await new_card(client, amount=None)
    await sandbox.fault("/cards/transfer-in", "error", status=503, times=4)
    with pytest.raises(ServerError) as info:
        await load(client, card.id, "3", ctid="ct-exhaust")
    assert info.value.unknown_outcome
    assert info.value.status_code == 503
    assert await sandbox.requests("POST", "/cards/transfer-in") == 4
    # The caller's recovery: the same clientTransactionId later moves the money once.
    tx = await load(client, card.id, "3", ctid="ct-exhaust")
    assert tx.client_transaction_id == "ct-exhaust"


async def test_429_is_retried_and_retry_after_is_read(
    recorder: RecordingTransport, sandbox: Sandbox, client: InterlaceClient
) -> None:
    """A rate limit is retried; when retries run out RateLimitError carries Retry-After."""
    await sandbox.fault("/card/bins", "rate_limit", retry_after=7, times=1)
    assert await client.list_bins()
    assert await sandbox.requests("GET", "/card/bins") == 2

    await sandbox.fault("/card/bins", "rate_limit", retry_after=7, times=1)
    async with make_client(recorder, max_retries=0) as no_retry:
        with pytest.raises(RateLimitError) as info:
            await no_retry.list_bins()
    assert info.value.retry_after == 7.0
    assert info.value.code == "429001"


async def test_an_idempotent_replay_returns_the_same_card(client: InterlaceClient) -> None:
    """Repeating create_prepaid_card with the same key and referenceId returns the first card."""
    kwargs: dict[str, Any] = {
        "bin_id": PREPAID_BIN_ID,
        "cardholder_id": CARDHOLDER_ID,
        "reference_id": "ref-replay",
        "amount": Decimal("10"),
        "label": None,
        "idempotency_key": "key-replay",
    }
    first = await client.create_prepaid_card(**kwargs)
    second = await client.create_prepaid_card(**kwargs)
    assert first.id == second.id
    assert (await client.list_cards(reference_id="ref-replay")).total == 1


# -- money is never a float -----------------------------------------------------------------------


def _no_float(value: str) -> Any:
    raise AssertionError(f"float in a request body: {value}")


async def test_amounts_go_on_the_wire_as_two_place_strings(
    client: InterlaceClient, recorder: RecordingTransport
) -> None:
    """Every amount the client sends is a "N.NN" string; no JSON number appears in any body."""
    card = await new_card(client, amount="10")
    await load(client, card.id, "2.5")
    await client.transfer_out(
        card_id=card.id, amount=Decimal("1"), client_transaction_id="ct-out", idempotency_key="k-out"
    )
    await client.set_velocity_control(card.id, limit_type="DAY", amount=Decimal("100"))
    await client.simulate_authorization(card_id=card.id, amount=Decimal("1.25"), merchant_name="Shop")
    await client.create_transfer(
        to_account_id=PAYEE_ACCOUNT_ID,
        to_balance_id=PAYEE_BALANCE_ID,
        amount=Decimal("3"),
        currency="USD",
        client_transaction_id="ct-pay",
        idempotency_key="k-pay",
    )
    amounts: list[str] = []
    for request in recorder.requests:
        if request.content:
            body = json.loads(request.content, parse_float=_no_float)
            if request.url.path.startswith(f"{V3}/oauth/"):
                continue
            assert body["accountId"] == ACCOUNT_ID
            amounts.extend(body[key] for key in ("amount", "amountLimit") if key in body)
    assert amounts == ["10.00", "2.50", "1.00", "100.00", "1.25", "3.00"]
    assert all(isinstance(a, str) and re.fullmatch(r"\d+\.\d\d", a) for a in amounts)


async def test_models_reject_a_float_amount() -> None:
    """A float amount cannot get into a model even if something upstream produced one."""
    with pytest.raises(pydantic.ValidationError):
        CardTransaction.model_validate({"id": "t", "amount": 1.1, "type": 2})


# -- card data ------------------------------------------------------------------------------------


async def test_card_details_decrypt_to_a_luhn_valid_pan_that_is_never_printed(
    client: InterlaceClient, sandbox: Sandbox
) -> None:
    """PAN/CVV decrypt with the client secret; repr/str of details and errors hide PAN, CVV and secrets."""
    card = await new_card(client)
    details = await client.get_card_details(card.id)
    pan, cvv = details.reveal()
    assert luhn_valid(pan)
    assert len(pan) == 16
    assert pan.startswith(PREPAID_BIN)
    assert pan.endswith(str(card.card_last_four))
    assert re.fullmatch(r"\d{3}", cvv)
    assert re.fullmatch(r"\d\d/\d\d", str(details.expiry_date))
    assert details.id == card.id

    await sandbox.expire_tokens()
    with pytest.raises(NotFoundError) as info:
        await client.get_card_details(str(uuid.uuid4()))
    token = client._token.access if client._token else ""  # the live token, to prove it never leaks
    assert token
    texts = [
        repr(details),
        str(details),
        str(details.model_dump()),
        details.model_dump_json(),
        repr(client),
        str(info.value),
        repr(info.value),
    ]
    for text in texts:
        assert pan not in text
        assert f"'{cvv}'" not in text and f'"{cvv}"' not in text
        assert CLIENT_SECRET not in text
        assert token not in text


async def test_private_info_token_and_card_lifecycle(client: InterlaceClient, sandbox: Sandbox) -> None:
    """Get/list/summary/limits/delete work end to end; a deleted card is NotFound."""
    card = await new_card(client, amount="20")
    assert (await client.get_card(card.id)).id == card.id
    assert isinstance(await client.get_private_info_token(card.id), str)

    limited = await client.set_velocity_control(card.id, limit_type="DAY", amount=Decimal("15"))
    assert [(t.type, t.value) for t in limited.transaction_limits] == [("DAY", Decimal("15"))]
    summary = await client.get_card_summary(card.id)
    assert summary.card_id == card.id
    assert summary.balance.available == Decimal("20")
    assert summary.velocity_control is not None
    assert summary.velocity_control.limit == Decimal("15")

    page = await client.list_cards(card_id=card.id)
    assert page.total == 1
    assert [c.id for c in page.items] == [card.id]

    await client.delete_card(card.id)
    with pytest.raises(NotFoundError):
        await client.get_card(card.id)
    with pytest.raises(NotFoundError):
        await client.delete_card(card.id)
    infinity = await client.infinity_balance()
    assert infinity.id == INFINITY_BALANCE_ID
    assert infinity.available == Decimal("10000.00")  # 20 swept back


async def test_simulated_purchases_and_transaction_list(client: InterlaceClient) -> None:
    """An approved authorization is PENDING; a declined one is FAIL with a remark; both are listed."""
    card = await new_card(client, amount="10")
    approved = await client.simulate_authorization(
        card_id=card.id, amount=Decimal("4"), merchant_name="API Shop", mcc="5734"
    )
    assert (approved.type, approved.status, approved.amount) == (1, "PENDING", Decimal("4.00"))
    declined = await client.simulate_authorization(card_id=card.id, amount=Decimal("100"))
    assert declined.status == "FAIL"
    assert declined.remark

    page = await client.list_card_transactions(card_id=card.id)
    assert {approved.id, declined.id} <= {t.id for t in page.items}
    by_ctid = await client.list_card_transactions(client_transaction_id="none-such")
    assert by_ctid.items == []


async def test_create_transfer_to_the_seeded_payee_moves_money(
    client: InterlaceClient, recorder: RecordingTransport, sandbox: Sandbox
) -> None:
    """An external transfer from our Infinity balance reaches the payee, exactly once."""
    transfer = await client.create_transfer(
        to_account_id=PAYEE_ACCOUNT_ID,
        to_balance_id=PAYEE_BALANCE_ID,
        amount=Decimal("25.5"),
        currency="USD",
        client_transaction_id="pay-1",
        idempotency_key="k-pay-1",
    )
    assert transfer.status == "CLOSED"
    assert transfer.amount == Decimal("25.50")
    assert transfer.client_transaction_id == "pay-1"
    assert transfer.to is not None and transfer.to.account_id == PAYEE_ACCOUNT_ID

    (request,) = recorder.sent("POST", "/business/transfer/external")
    body = json.loads(request.content)
    assert body["from"] == {
        "id": INFINITY_BALANCE_ID,
        "currency": "USD",
        "businessType": 0,
        "accountId": ACCOUNT_ID,
    }
    assert body["to"]["id"] == PAYEE_BALANCE_ID
    state = await sandbox.state()
    assert state["infinity"][PAYEE_BALANCE_ID] == "25.50"
    assert state["infinity"][INFINITY_BALANCE_ID] == "9974.50"

    listed = await client.list_transfers(client_transaction_id="pay-1")
    assert [t.id for t in listed.items] == [transfer.id]

    again = await client.create_transfer(
        to_account_id=PAYEE_ACCOUNT_ID,
        to_balance_id=PAYEE_BALANCE_ID,
        amount=Decimal("25.5"),
        currency="USD",
        client_transaction_id="pay-1",
        idempotency_key="k-pay-1-retry",
    )
    assert again.id == transfer.id
    assert (await sandbox.state())["infinity"][PAYEE_BALANCE_ID] == "25.50"


async def test_reference_data_lists(client: InterlaceClient) -> None:
    """BINs, cardholders and balances parse from the emulator's seeds."""
    prepaid = next(b for b in await client.list_bins() if b.id == PREPAID_BIN_ID)
    assert (prepaid.bin, prepaid.type) == (PREPAID_BIN, 1)
    holders = await client.list_cardholders()
    assert [h.id for h in holders] == [CARDHOLDER_ID]
    (infinity,) = await client.list_balances(0)
    assert infinity.available == Decimal("10000.00")
    assert infinity.object_type == 0


async def test_debug_logs_name_method_path_status_and_attempt_only(
    client: InterlaceClient, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs carry no bodies, tokens, secrets or amounts, but do show each attempt."""
    card = await new_card(client, amount=None)
    await sandbox.fault("/cards/transfer-in", "error", status=502, times=1)
    with caplog.at_level(logging.DEBUG, logger="interlace_mcp.client"):
        await load(client, card.id, "9.99", ctid="ct-log")
    token = client._token.access if client._token else ""
    lines = [r.getMessage() for r in caplog.records if r.name == "interlace_mcp.client"]
    assert "interlace POST /open-api/v3/cards/transfer-in -> 502 (attempt 1)" in lines
    assert "interlace POST /open-api/v3/cards/transfer-in -> 200 (attempt 2)" in lines
    for line in lines:
        for secret in (token, CLIENT_SECRET, "ct-log", "9.99", card.id):
            assert secret not in line
