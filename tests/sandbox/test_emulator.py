"""The Interlace sandbox emulator, driven over real HTTP semantics in-process (httpx.ASGITransport)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from interlace_mcp.sandbox import (
    ACCOUNT_ID,
    BUDGET_BIN_ID,
    CARDHOLDER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    INFINITY_BALANCE_ID,
    PAYEE_ACCOUNT_ID,
    PAYEE_BALANCE_ID,
    PREPAID_BIN_ID,
    SEEDS,
    SandboxConnectionDropped,
    SandboxState,
    create_sandbox_app,
    decrypt_card_field,
    encrypt_card_field,
    luhn_valid,
    sandbox_banner,
)

pytestmark = pytest.mark.anyio

BASE_URL = "http://sandbox.test"
V3 = "/open-api/v3"
GMT8 = timezone(timedelta(hours=8))


class FakeClock:
    """A settable clock for the emulator (seconds since the epoch)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def open_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        yield client


async def login(client: httpx.AsyncClient) -> str:
    """Run the v3 OAuth flow and install the access token as a default header."""
    code = (await client.get(f"{V3}/oauth/authorize", params={"clientId": CLIENT_ID})).json()["data"]["code"]
    resp = await client.post(f"{V3}/oauth/access-token", json={"clientId": CLIENT_ID, "code": code})
    token: str = resp.json()["data"]["accessToken"]
    client.headers["x-access-token"] = token
    return token


@pytest.fixture
def app() -> Starlette:
    return create_sandbox_app()


@pytest.fixture
async def api(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(app) as client:
        await login(client)
        yield client


def sandbox(app: Starlette) -> SandboxState:
    state: SandboxState = app.state.sandbox
    return state


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/_sandbox/state")
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()["data"]
    return data


async def infinity(client: httpx.AsyncClient, balance_id: str = INFINITY_BALANCE_ID) -> Decimal:
    return Decimal((await snapshot(client))["infinity"][balance_id])


async def card_available(client: httpx.AsyncClient, card_id: str) -> Decimal:
    resp = await client.get(f"{V3}/cards/{card_id}/card-summary", params={"accountId": ACCOUNT_ID})
    assert resp.status_code == 200, resp.text
    return Decimal(resp.json()["data"]["balance"]["available"])


async def issue_card(
    client: httpx.AsyncClient, amount: str | None = "100", reference: str | None = None, **headers: str
) -> httpx.Response:
    body: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "binId": PREPAID_BIN_ID,
        "cardholderId": CARDHOLDER_ID,
        "referenceId": reference or f"ref-{time.monotonic_ns()}",
        "cardMode": "VIRTUAL_CARD",
        "label": "agent card",
    }
    if amount is not None:
        body["amount"] = amount
    return await client.post(f"{V3}/prepaid-card", json=body, headers=headers)


async def new_card(client: httpx.AsyncClient, amount: str | None = "100") -> str:
    resp = await issue_card(client, amount)
    assert resp.status_code == 200, resp.text
    card_id: str = resp.json()["data"]["id"]
    return card_id


async def transfer(
    client: httpx.AsyncClient, direction: str, card_id: str, amount: Any, ctid: str, **headers: str
) -> httpx.Response:
    body = {"accountId": ACCOUNT_ID, "cardId": card_id, "clientTransactionId": ctid, "amount": amount}
    return await client.post(f"{V3}/cards/transfer-{direction}", json=body, headers=headers)


async def simulate(client: httpx.AsyncClient, card_id: str, amount: str, **extra: str) -> dict[str, Any]:
    body = {"accountId": ACCOUNT_ID, "cardId": card_id, "amount": amount, "currency": "USD", **extra}
    resp = await client.post(f"{V3}/vcc/simulate/auth", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def external_body(amount: str, ctid: str) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "clientTransactionId": ctid,
        "amount": amount,
        "from": {"id": INFINITY_BALANCE_ID, "accountId": ACCOUNT_ID, "currency": "USD", "businessType": 0},
        "to": {"id": PAYEE_BALANCE_ID, "accountId": PAYEE_ACCOUNT_ID, "currency": "USD", "businessType": 0},
    }


# ---- OAuth ---------------------------------------------------------------------------------------


async def test_oauth_flow_and_code_is_single_use(app: Starlette) -> None:
    """authorize -> access-token -> authenticated call works; the same code cannot be exchanged twice."""
    async with open_client(app) as client:
        auth = await client.get(f"{V3}/oauth/authorize", params={"clientId": CLIENT_ID})
        assert auth.status_code == 200
        data = auth.json()["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", data["code"]) and isinstance(data["timestamp"], int)
        body = {"clientId": CLIENT_ID, "code": data["code"], "clientSecret": CLIENT_SECRET}
        first = await client.post(f"{V3}/oauth/access-token", json=body)
        tokens = first.json()["data"]
        assert first.json()["code"] == "000000"
        assert re.fullmatch(r"[0-9a-f]{40}", tokens["accessToken"])
        assert re.fullmatch(r"[0-9a-f]{64}", tokens["refreshToken"])
        assert tokens["expiresIn"] == 86400
        accounts = await client.get(f"{V3}/accounts", headers={"x-access-token": tokens["accessToken"]})
        assert accounts.status_code == 200
        assert accounts.json()["data"]["list"][0]["id"] == ACCOUNT_ID
        assert accounts.json()["data"]["total"] == "1"
        again = await client.post(f"{V3}/oauth/access-token", json=body)
        assert (again.status_code, again.json()["code"]) == (401, "401002")


async def test_oauth_rejects_unknown_client_and_wrong_secret(app: Starlette) -> None:
    """Unknown clientId -> 401001; a wrong clientSecret -> 401002."""
    async with open_client(app) as client:
        bad = await client.get(f"{V3}/oauth/authorize", params={"clientId": "someone-else"})
        assert (bad.status_code, bad.json()["code"]) == (401, "401001")
        code = (await client.get(f"{V3}/oauth/authorize", params={"clientId": CLIENT_ID})).json()["data"]
        resp = await client.post(
            f"{V3}/oauth/access-token",
            json={"clientId": CLIENT_ID, "code": code["code"], "clientSecret": "wrong-secret"},
        )
        assert (resp.status_code, resp.json()["code"]) == (401, "401002")


async def test_auth_code_expires_after_ten_minutes() -> None:
    """An authorization code older than 10 minutes is refused."""
    clock = FakeClock(1_750_000_000.0)
    async with open_client(create_sandbox_app(clock=clock)) as client:
        code = (await client.get(f"{V3}/oauth/authorize", params={"clientId": CLIENT_ID})).json()["data"]
        clock.now += 601
        resp = await client.post(f"{V3}/oauth/access-token", json={"clientId": CLIENT_ID, "code": code["code"]})
        assert (resp.status_code, resp.json()["code"]) == (401, "401002")


async def test_refresh_token_rotates(app: Starlette) -> None:
    """refresh-token returns a new pair; the new access token works; the old refresh token is dead."""
    async with open_client(app) as client:
        code = (await client.get(f"{V3}/oauth/authorize", params={"clientId": CLIENT_ID})).json()["data"]
        tokens = (
            await client.post(f"{V3}/oauth/access-token", json={"clientId": CLIENT_ID, "code": code["code"]})
        ).json()["data"]
        body = {"clientId": CLIENT_ID, "refreshToken": tokens["refreshToken"]}
        refreshed = await client.post(f"{V3}/oauth/refresh-token", json=body)
        new = refreshed.json()["data"]
        assert refreshed.status_code == 200
        assert new["refreshToken"] != tokens["refreshToken"]
        assert new["accessToken"] != tokens["accessToken"]
        ok = await client.get(f"{V3}/accounts", headers={"x-access-token": new["accessToken"]})
        assert ok.status_code == 200
        reused = await client.post(f"{V3}/oauth/refresh-token", json=body)
        assert (reused.status_code, reused.json()["code"]) == (401, "401002")


async def test_legacy_oauth_is_bare_json(app: Starlette) -> None:
    """/open-api/oauth/* answers without the envelope and its token works on v3 calls."""
    async with open_client(app) as client:
        auth = (await client.get("/open-api/oauth/authorize", params={"clientId": CLIENT_ID})).json()
        assert set(auth) == {"code", "timestamp"}
        resp = await client.post(
            "/open-api/oauth/access-token",
            json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "code": auth["code"]},
        )
        tokens = resp.json()
        assert "data" not in tokens and tokens["expiresIn"] == 86400
        bins = await client.get(
            f"{V3}/card/bins", params={"accountId": ACCOUNT_ID}, headers={"x-access-token": tokens["accessToken"]}
        )
        assert bins.status_code == 200
        reused = await client.post("/open-api/oauth/access-token", json={"clientId": CLIENT_ID, "code": auth["code"]})
        assert reused.status_code == 401 and reused.json()["code"] == "401002"


async def test_missing_bad_and_expired_token_give_401003(app: Starlette) -> None:
    """No token, an unknown token, and a token expired via the control API all get 401/401003."""
    async with open_client(app) as client:
        params = {"accountId": ACCOUNT_ID}
        missing = await client.get(f"{V3}/card/bins", params=params)
        assert (missing.status_code, missing.json()["code"]) == (401, "401003")
        assert missing.json()["message"] == "access token invalid or expired"
        bad = await client.get(f"{V3}/card/bins", params=params, headers={"x-access-token": "f" * 40})
        assert (bad.status_code, bad.json()["code"]) == (401, "401003")
        await login(client)
        assert (await client.get(f"{V3}/card/bins", params=params)).status_code == 200
        assert (await client.post("/_sandbox/tokens/expire")).status_code == 200
        expired = await client.get(f"{V3}/card/bins", params=params)
        assert (expired.status_code, expired.json()["code"]) == (401, "401003")


async def test_access_token_expires_with_the_clock() -> None:
    """A token is valid for token_ttl_seconds (configurable), then 401003."""
    clock = FakeClock(1_750_000_000.0)
    async with open_client(create_sandbox_app(clock=clock)) as client:
        cfg = await client.post("/_sandbox/config", json={"token_ttl_seconds": 60})
        assert cfg.json()["data"]["token_ttl_seconds"] == 60
        await login(client)
        clock.now += 59
        assert (await client.get(f"{V3}/accounts")).status_code == 200
        clock.now += 2
        resp = await client.get(f"{V3}/accounts")
        assert (resp.status_code, resp.json()["code"]) == (401, "401003")


# ---- accountId -----------------------------------------------------------------------------------


async def test_account_id_required_and_checked(api: httpx.AsyncClient) -> None:
    """Missing accountId -> 400/400001 (query or body); a foreign accountId -> 403/403001."""
    resp = await api.get(f"{V3}/card/bins")
    assert (resp.status_code, resp.json()["code"]) == (400, "400001")
    assert resp.json()["message"] == "accountId is required"
    resp = await api.post(f"{V3}/cards/transfer-in", json={"cardId": "x", "amount": "1"})
    assert (resp.status_code, resp.json()["code"]) == (400, "400001")
    # accountId in the query string does not count for POST
    resp = await api.post(f"{V3}/prepaid-card", params={"accountId": ACCOUNT_ID}, json={})
    assert resp.json()["code"] == "400001"
    resp = await api.get(f"{V3}/card/bins", params={"accountId": PAYEE_ACCOUNT_ID})
    assert (resp.status_code, resp.json()["code"]) == (403, "403001")


# ---- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e3", "-1", "10.123", 10, 10.5, "NaN", "0", "0.00", "", " 10", "1,000", None])
async def test_amount_format_rejected_without_state_change(api: httpx.AsyncClient, amount: Any) -> None:
    """Anything but a positive decimal string (<= 2 places) is 400/400002 and moves nothing."""
    card_id = await new_card(api, "50")
    before = await snapshot(api)
    resp = await transfer(api, "in", card_id, amount, "ctid-bad-amount")
    assert (resp.status_code, resp.json()["code"]) == (400, "400002")
    assert "amount" in resp.json()["message"]
    after = await snapshot(api)
    assert after["infinity"] == before["infinity"]
    assert after["cards"] == before["cards"]
    assert after["movements"] == before["movements"]


async def test_amount_accepts_short_forms(api: httpx.AsyncClient) -> None:
    """ "10", "10.5" and "10.50" are accepted; output always has 2 places."""
    card_id = await new_card(api, None)
    for i, amount in enumerate(["10", "10.5", "10.50"]):
        resp = await transfer(api, "in", card_id, amount, f"short-{i}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["amount"] in ("10.00", "10.50")
    assert await card_available(api, card_id) == Decimal("31.00")


# ---- cards ---------------------------------------------------------------------------------------


async def test_issue_card_debits_infinity_including_fee(api: httpx.AsyncClient) -> None:
    """The initial amount plus the issuance fee come out of the Infinity balance."""
    await api.post("/_sandbox/config", json={"issuance_fee": "1.50"})
    resp = await issue_card(api, "100")
    card = resp.json()["data"]
    assert resp.status_code == 200 and card["status"] == "ACTIVE"
    assert card["bin"] == "411111" and len(card["cardLastFour"]) == 4
    assert card["cardholderId"] == CARDHOLDER_ID and card["budgetId"] == ""
    assert "cardNumber" not in card and "cvv" not in card
    assert await infinity(api) == Decimal("10000.00") - Decimal("101.50")
    assert await card_available(api, card["id"]) == Decimal("100.00")
    wallets = await api.get(f"{V3}/cards/wallets", params={"accountId": ACCOUNT_ID, "objectType": "2"})
    listed = wallets.json()["data"]["list"]
    assert [w["id"] for w in listed] == [card["balanceId"]] and listed[0]["available"] == "100.00"


async def test_issue_card_insufficient_funds(api: httpx.AsyncClient) -> None:
    """More than the Infinity balance -> 100100001 and no card is created."""
    resp = await issue_card(api, "10000.01")
    assert (resp.status_code, resp.json()["code"]) == (400, "100100001")
    state = await snapshot(api)
    assert state["card_count"] == 0 and await infinity(api) == Decimal("10000.00")


async def test_issue_card_budget_bin_and_duplicate_reference(api: httpx.AsyncClient) -> None:
    """A budget BIN -> 070033; a reused referenceId (no Idempotency-Key) -> 070010."""
    body = {
        "accountId": ACCOUNT_ID,
        "binId": BUDGET_BIN_ID,
        "cardholderId": CARDHOLDER_ID,
        "referenceId": "r-budget",
        "cardMode": "VIRTUAL_CARD",
    }
    resp = await api.post(f"{V3}/prepaid-card", json=body)
    assert (resp.status_code, resp.json()["code"]) == (400, "070033")
    assert (await issue_card(api, "1", reference="dup")).status_code == 200
    again = await issue_card(api, "1", reference="dup")
    assert (again.status_code, again.json()["code"]) == (400, "070010")
    assert (await snapshot(api))["card_count"] == 1


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    """Unknown card, BIN or cardholder -> 404/404001."""
    resp = await transfer(api, "in", "00000000-0000-4000-8000-000000000000", "1", "c-404")
    assert (resp.status_code, resp.json()["code"]) == (404, "404001")
    body = {
        "accountId": ACCOUNT_ID,
        "binId": "1",
        "cardholderId": CARDHOLDER_ID,
        "referenceId": "r",
        "cardMode": "VIRTUAL_CARD",
    }
    assert (await api.post(f"{V3}/prepaid-card", json=body)).json()["code"] == "404001"
    body |= {"binId": PREPAID_BIN_ID, "cardholderId": "1"}
    assert (await api.post(f"{V3}/prepaid-card", json=body)).json()["code"] == "404001"
    resp = await api.get(f"{V3}/cards/nope/card-summary", params={"accountId": ACCOUNT_ID})
    assert resp.status_code == 404


async def test_transfer_in_and_out_move_balances(api: httpx.AsyncClient) -> None:
    """transfer-in moves Infinity -> card (type 2), transfer-out moves card -> Infinity (type 3)."""
    card_id = await new_card(api, "20")
    resp = await transfer(api, "in", card_id, "30.25", "in-1")
    tx = resp.json()["data"]
    assert resp.status_code == 200
    assert (tx["type"], tx["status"], tx["amount"], tx["clientTransactionId"]) == (2, "CLOSED", "30.25", "in-1")
    assert await card_available(api, card_id) == Decimal("50.25")
    resp = await transfer(api, "out", card_id, "10", "out-1")
    assert resp.json()["data"]["type"] == 3
    assert await card_available(api, card_id) == Decimal("40.25")
    assert await infinity(api) == Decimal("10000.00") - Decimal("40.25")
    state = await snapshot(api)
    assert state["loaded_total"] == "50.25" and state["unloaded_total"] == "10.00"


async def test_insufficient_funds_on_transfers(api: httpx.AsyncClient) -> None:
    """transfer-out beyond the card balance and transfer-in beyond Infinity -> 100100001, nothing moves."""
    card_id = await new_card(api, "5")
    out = await transfer(api, "out", card_id, "5.01", "out-too-much")
    assert (out.status_code, out.json()["code"]) == (400, "100100001")
    into = await transfer(api, "in", card_id, "9995.01", "in-too-much")
    assert (into.status_code, into.json()["code"]) == (400, "100100001")
    assert await card_available(api, card_id) == Decimal("5.00")
    assert await infinity(api) == Decimal("9995.00")


async def test_frozen_card_refuses_transfer_in(api: httpx.AsyncClient) -> None:
    """A FROZEN card -> 070021 on transfer-in; unloading still works; unfreeze restores loading."""
    card_id = await new_card(api, "10")
    frozen = await api.post(f"{V3}/cards/{card_id}/freeze", json={"accountId": ACCOUNT_ID})
    assert frozen.json()["data"]["status"] == "FROZEN"
    again = await api.post(f"{V3}/cards/{card_id}/freeze", json={"accountId": ACCOUNT_ID})
    assert again.status_code == 200
    resp = await transfer(api, "in", card_id, "1", "frozen-in")
    assert (resp.status_code, resp.json()["code"]) == (400, "070021")
    assert (await transfer(api, "out", card_id, "1", "frozen-out")).status_code == 200
    thawed = await api.post(f"{V3}/cards/{card_id}/unfreeze", json={"accountId": ACCOUNT_ID})
    assert thawed.json()["data"]["status"] == "ACTIVE"
    assert (await transfer(api, "in", card_id, "1", "frozen-in")).status_code == 200
    assert await card_available(api, card_id) == Decimal("10.00")


async def test_client_transaction_id_dedup(api: httpx.AsyncClient) -> None:
    """The same clientTransactionId twice -> the original transaction, one movement; per endpoint."""
    card_id = await new_card(api, None)
    first = await transfer(api, "in", card_id, "7", "dedup-1")
    second = await transfer(api, "in", card_id, "7", "dedup-1")
    assert second.status_code == 200
    assert second.json()["data"] == first.json()["data"]
    assert await card_available(api, card_id) == Decimal("7.00")
    moves = [m for m in (await snapshot(api))["movements"] if m["clientTransactionId"] == "dedup-1"]
    assert moves == [{"kind": "transfer_in", "clientTransactionId": "dedup-1", "amount": "7.00"}]
    # the same id on another endpoint is a different movement
    out = await transfer(api, "out", card_id, "2", "dedup-1")
    assert out.json()["data"]["id"] != first.json()["data"]["id"]
    assert await card_available(api, card_id) == Decimal("5.00")
    listed = await api.get(
        f"{V3}/cards/transaction-list", params={"accountId": ACCOUNT_ID, "clientTransactionId": "dedup-1"}
    )
    assert listed.json()["data"]["total"] == "2"


async def test_failed_movement_is_not_remembered(api: httpx.AsyncClient) -> None:
    """A clientTransactionId whose first attempt failed executes when retried."""
    card_id = await new_card(api, "1")
    assert (await transfer(api, "out", card_id, "5", "retry-me")).json()["code"] == "100100001"
    await transfer(api, "in", card_id, "10", "top-up")
    retry = await transfer(api, "out", card_id, "5", "retry-me")
    assert retry.status_code == 200 and retry.json()["data"]["type"] == 3
    assert await card_available(api, card_id) == Decimal("6.00")


async def test_idempotency_key_replays_first_success(api: httpx.AsyncClient) -> None:
    """Same key + account + path -> byte-identical data and one card; another path is independent."""
    key = "1b7e5f1a-9d1c-4b8e-a3a4-6a0c3b6e2f10"
    first = await issue_card(api, "10", reference="idem-card", **{"Idempotency-Key": key})
    second = await issue_card(api, "10", reference="idem-card", **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert second.json()["data"] == first.json()["data"]
    assert json.dumps(second.json()["data"]) == json.dumps(first.json()["data"])
    state = await snapshot(api)
    assert state["card_count"] == 1 and await infinity(api) == Decimal("9990.00")
    card_id = first.json()["data"]["id"]
    moved = await transfer(api, "in", card_id, "3", "with-key", **{"Idempotency-Key": key})
    assert moved.status_code == 200 and moved.json()["data"]["type"] == 2


async def test_idempotency_failed_attempt_not_stored(api: httpx.AsyncClient) -> None:
    """A first attempt that failed is not replayed: the retry with the same key executes."""
    key = "2c8f6a2b-0e2d-4c9f-b4b5-7b1d4c7f3a21"
    card_id = await new_card(api, None)
    failed = await transfer(api, "out", card_id, "1", "k-out", **{"Idempotency-Key": key})
    assert failed.json()["code"] == "100100001"
    await transfer(api, "in", card_id, "4", "k-in")
    ok = await transfer(api, "out", card_id, "1", "k-out", **{"Idempotency-Key": key})
    assert ok.status_code == 200
    assert await card_available(api, card_id) == Decimal("3.00")


async def test_idempotency_concurrent_duplicate_is_409(app: Starlette, api: httpx.AsyncClient) -> None:
    """While the first request is being processed, a duplicate gets 409/409001; afterwards it replays."""
    sandbox(app).add_fault(f"{V3}/prepaid-card", "latency", delay_ms=200)
    key = "3d9a7b3c-1f3e-4dab-85c6-8c2e5d8a4b32"
    results: list[httpx.Response] = []

    async def call() -> None:
        results.append(await issue_card(api, "5", reference="concurrent", **{"Idempotency-Key": key}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(call)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409]
    conflict = next(r for r in results if r.status_code == 409)
    assert conflict.json()["code"] == "409001" and conflict.json()["message"] == "transaction in progress"
    sandbox(app).clear_faults()
    replay = await issue_card(api, "5", reference="concurrent", **{"Idempotency-Key": key})
    winner = next(r for r in results if r.status_code == 200)
    assert replay.json()["data"] == winner.json()["data"]
    assert (await snapshot(api))["card_count"] == 1


async def test_concurrent_transfers_never_double_apply(app: Starlette, api: httpx.AsyncClient) -> None:
    """20 concurrent loads (10 ids, each sent twice, with latency) apply exactly 10 times."""
    card_id = await new_card(api, None)
    sandbox(app).add_fault(f"{V3}/cards/transfer-in", "latency", delay_ms=20)
    responses: list[httpx.Response] = []

    async def load(i: int) -> None:
        responses.append(await transfer(api, "in", card_id, "1.10", f"conc-{i % 10}"))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(load, i)
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["data"]["id"] for r in responses}) == 10
    assert await card_available(api, card_id) == Decimal("11.00")
    assert await infinity(api) == Decimal("9989.00")


async def test_delete_sweeps_balance_back(api: httpx.AsyncClient) -> None:
    """DELETE returns the balance to Infinity, hides the card, and a second DELETE is 404001."""
    card_id = await new_card(api, "60")
    await transfer(api, "out", card_id, "10", "pre-delete")
    assert await infinity(api) == Decimal("9950.00")
    resp = await api.delete(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})
    assert resp.status_code == 200 and resp.json()["data"] == {"id": card_id, "status": "DELETED"}
    assert await infinity(api) == Decimal("10000.00")
    state = await snapshot(api)
    assert state["cards"][card_id] == {"status": "DELETED", "available": "0.00"} and state["card_count"] == 0
    listed = await api.get(f"{V3}/card-list", params={"accountId": ACCOUNT_ID})
    assert listed.json()["data"] == {"list": [], "total": "0"}
    again = await api.delete(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})
    assert (again.status_code, again.json()["code"]) == (404, "404001")
    assert await infinity(api) == Decimal("10000.00")


async def test_card_details_decrypt_to_luhn_valid_pan(api: httpx.AsyncClient) -> None:
    """GET /cards/{id} carries AES-encrypted PAN/CVV that decrypt with the client secret; lists never do."""
    card_id = await new_card(api, "1")
    resp = await api.get(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})
    data = resp.json()["data"]
    pan = decrypt_card_field(data["cardNumber"], CLIENT_SECRET)
    cvv = decrypt_card_field(data["cvv"], CLIENT_SECRET)
    assert re.fullmatch(r"411111[0-9]{10}", pan) and luhn_valid(pan)
    assert re.fullmatch(r"[0-9]{3}", cvv)
    assert pan[-4:] == data["cardLastFour"]
    month, year = data["expiryDate"].split("/")
    assert 1 <= int(month) <= 12 and int(year) == (datetime.now(UTC).year + 3) % 100
    assert pan not in data["cardNumber"]
    for path in (f"{V3}/card-list", f"{V3}/cards/transaction-list", f"{V3}/cards/{card_id}/card-summary"):
        assert pan not in (await api.get(path, params={"accountId": ACCOUNT_ID})).text
    assert pan not in (await api.get("/_sandbox/state")).text
    token = await api.get(f"{V3}/cards/{card_id}/private-info/access-token", params={"accountId": ACCOUNT_ID})
    assert token.status_code == 200 and token.json()["data"]["accessToken"]


async def test_pans_are_unique_and_luhn_valid(app: Starlette, api: httpx.AsyncClient) -> None:
    """Every issued PAN is a distinct Luhn-valid 16-digit number on BIN 411111."""
    for _ in range(15):
        await new_card(api, None)
    pans = [c.pan for c in sandbox(app).cards.values()]
    assert len(set(pans)) == 15
    assert all(len(p) == 16 and p.startswith("411111") and luhn_valid(p) for p in pans)


async def test_business_external_transfer_moves_between_accounts(api: httpx.AsyncClient) -> None:
    """External transfer debits our Infinity, credits the payee's; de-dups; is listed."""
    resp = await api.post(f"{V3}/business/transfer/external", json=external_body("125.50", "pay-1"))
    data = resp.json()["data"]
    assert resp.status_code == 200
    assert (data["status"], data["accountTransferType"], data["amount"]) == ("CLOSED", "DIFFERENT_ACCOUNT", "125.50")
    assert data["to"]["accountId"] == PAYEE_ACCOUNT_ID and data["from"]["rate"] == "1"
    assert re.fullmatch(r"[0-9]{19}", data["id"])
    assert await infinity(api) == Decimal("9874.50")
    assert await infinity(api, PAYEE_BALANCE_ID) == Decimal("125.50")
    dup = await api.post(f"{V3}/business/transfer/external", json=external_body("125.50", "pay-1"))
    assert dup.json()["data"]["id"] == data["id"]
    assert await infinity(api, PAYEE_BALANCE_ID) == Decimal("125.50")
    listed = await api.get(f"{V3}/business/transfers", params={"accountId": ACCOUNT_ID, "clientTransactionId": "pay-1"})
    assert listed.json()["data"]["total"] == "1" and listed.json()["data"]["list"][0]["id"] == data["id"]
    too_much = await api.post(f"{V3}/business/transfer/external", json=external_body("9874.51", "pay-2"))
    assert too_much.json()["code"] == "100100001"
    assert (await snapshot(api))["transfers_total"] == "125.50"


async def test_business_transfer_validation(api: httpx.AsyncClient) -> None:
    """Unknown balance -> 404001; from another account -> 403001; internal to itself -> 400002."""
    body = external_body("1", "v-1")
    body["to"]["id"] = "00000000-0000-4000-8000-000000000000"
    assert (await api.post(f"{V3}/business/transfer/external", json=body)).json()["code"] == "404001"
    body = external_body("1", "v-2")
    body["from"]["accountId"] = PAYEE_ACCOUNT_ID
    assert (await api.post(f"{V3}/business/transfer/external", json=body)).json()["code"] == "403001"
    internal = {
        "accountId": ACCOUNT_ID,
        "clientTransactionId": "v-3",
        "amount": "1",
        "from": {"id": INFINITY_BALANCE_ID, "currency": "USD", "businessType": 0},
        "to": {"id": INFINITY_BALANCE_ID, "currency": "USD", "businessType": 0},
    }
    resp = await api.post(f"{V3}/business/transfer/internal", json=internal)
    assert (resp.status_code, resp.json()["code"]) == (400, "400002")
    assert await infinity(api) == Decimal("10000.00")


async def test_simulate_auth_approves_and_declines(api: httpx.AsyncClient) -> None:
    """Approved -> type 1 PENDING and the card is debited; insufficient / frozen -> FAIL with a remark."""
    card_id = await new_card(api, "20")
    merchant = "ACME <script>Store</script>"
    ok = await simulate(api, card_id, "12.34", merchantName=merchant, mcc="5734", merchantCountry="US")
    assert (ok["type"], ok["status"], ok["amount"], ok["remark"]) == (1, "PENDING", "12.34", "")
    assert ok["merchantName"] == merchant and ok["mcc"] == "5734"
    assert await card_available(api, card_id) == Decimal("7.66")
    poor = await simulate(api, card_id, "7.67")
    assert (poor["status"], poor["remark"]) == ("FAIL", "insufficient balance")
    await api.post(f"{V3}/cards/{card_id}/freeze", json={"accountId": ACCOUNT_ID})
    frozen = await simulate(api, card_id, "1")
    assert (frozen["status"], frozen["remark"]) == ("FAIL", "card frozen")
    assert await card_available(api, card_id) == Decimal("7.66")
    summary = (await api.get(f"{V3}/cards/{card_id}/card-summary", params={"accountId": ACCOUNT_ID})).json()
    assert summary["data"]["statistics"]["consumption"] == "12.34"
    # the control-API shortcut behaves the same
    await api.post(f"{V3}/cards/{card_id}/unfreeze", json={"accountId": ACCOUNT_ID})
    ctl = await api.post("/_sandbox/simulate-purchase", json={"cardId": card_id, "amount": "0.66"})
    assert ctl.json()["data"]["status"] == "PENDING"
    assert await card_available(api, card_id) == Decimal("7.00")


async def test_velocity_control_limits_and_resets_at_gmt8_midnight() -> None:
    """A DAY limit shows in the card and summary, declines over-limit purchases, resets at 00:00 GMT+8."""
    start = datetime(2025, 1, 15, 23, 30, tzinfo=GMT8)  # 15:30 UTC, same UTC day as the next step
    clock = FakeClock(start.timestamp())
    app = create_sandbox_app(clock=clock)
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "100")
        resp = await api.put(
            f"{V3}/cards/{card_id}/velocity-control",
            json={"accountId": ACCOUNT_ID, "transactionLimitsType": "DAY", "amountLimit": "10"},
        )
        assert resp.json()["data"]["transactionLimits"] == [{"type": "DAY", "value": "10.00", "currency": "USD"}]
        assert (await simulate(api, card_id, "6"))["status"] == "PENDING"
        over = await simulate(api, card_id, "5")
        assert (over["status"], over["remark"]) == ("FAIL", "exceeds velocity limit")
        summary = await api.get(f"{V3}/cards/{card_id}/card-summary", params={"accountId": ACCOUNT_ID})
        assert summary.json()["data"]["velocityControl"] == {"type": "DAY", "limit": "10.00", "available": "4.00"}
        clock.now = datetime(2025, 1, 16, 0, 30, tzinfo=GMT8).timestamp()  # still 2025-01-15 in UTC
        summary = await api.get(f"{V3}/cards/{card_id}/card-summary", params={"accountId": ACCOUNT_ID})
        assert summary.json()["data"]["velocityControl"]["available"] == "10.00"
        assert (await simulate(api, card_id, "9"))["status"] == "PENDING"
        cleared = await api.put(
            f"{V3}/cards/{card_id}/velocity-control",
            json={"accountId": ACCOUNT_ID, "transactionLimitsType": "NA"},
        )
        assert cleared.json()["data"]["transactionLimits"] == []
        bad = await api.put(
            f"{V3}/cards/{card_id}/velocity-control",
            json={"accountId": ACCOUNT_ID, "transactionLimitsType": "HOUR", "amountLimit": "1"},
        )
        assert bad.json()["code"] == "400002"


async def test_transaction_list_filters_order_and_paging(api: httpx.AsyncClient) -> None:
    """Newest first, total as a string, filters by type/status/card, limit validated."""
    card_id = await new_card(api, None)
    for i in range(3):
        await transfer(api, "in", card_id, "2", f"list-{i}")
    await simulate(api, card_id, "1")
    await simulate(api, card_id, "100")  # declined
    params: dict[str, str] = {"accountId": ACCOUNT_ID, "cardId": card_id}
    everything = (await api.get(f"{V3}/cards/transaction-list", params=params)).json()["data"]
    assert everything["total"] == "5"
    assert [t["status"] for t in everything["list"][:2]] == ["FAIL", "PENDING"]
    assert [t["clientTransactionId"] for t in everything["list"][2:]] == ["list-2", "list-1", "list-0"]
    page2 = (await api.get(f"{V3}/cards/transaction-list", params=params | {"limit": "2", "page": "2"})).json()
    assert [t["clientTransactionId"] for t in page2["data"]["list"]] == ["list-2", "list-1"]
    assert page2["data"]["total"] == "5"
    loads = (await api.get(f"{V3}/cards/transaction-list", params=params | {"type": "2"})).json()["data"]
    assert loads["total"] == "3"
    failed = (await api.get(f"{V3}/cards/transaction-list", params=params | {"status": "FAIL"})).json()["data"]
    assert failed["total"] == "1" and failed["list"][0]["remark"] == "insufficient balance"
    for bad in ({"limit": "0"}, {"limit": "101"}, {"page": "0"}, {"type": "x"}, {"status": "DONE"}):
        resp = await api.get(f"{V3}/cards/transaction-list", params=params | bad)
        assert (resp.status_code, resp.json()["code"]) == (400, "400002"), bad


async def test_reference_lists(api: httpx.AsyncClient) -> None:
    """BINs, cardholders and wallets expose the seeds."""
    bins = (await api.get(f"{V3}/card/bins", params={"accountId": ACCOUNT_ID})).json()["data"]
    assert {(b["id"], b["type"]) for b in bins["list"]} == {(PREPAID_BIN_ID, 1), (BUDGET_BIN_ID, 0)}
    holders = (await api.get(f"{V3}/cardholders", params={"accountId": ACCOUNT_ID})).json()["data"]
    assert holders["list"][0]["id"] == CARDHOLDER_ID and holders["list"][0]["status"] == "ACTIVE"
    wallets = await api.get(f"{V3}/cards/wallets", params={"accountId": ACCOUNT_ID, "objectType": "0"})
    (wallet,) = wallets.json()["data"]["list"]
    assert (wallet["id"], wallet["available"], wallet["objectType"]) == (INFINITY_BALANCE_ID, "10000.00", 0)


# ---- fault injection -----------------------------------------------------------------------------


async def test_fault_error_is_not_executed(api: httpx.AsyncClient) -> None:
    """kind=error answers 500/500001 without moving money; the request is still counted."""
    card_id = await new_card(api, None)
    rule = await api.post("/_sandbox/faults", json={"path": f"{V3}/cards/transfer-in", "kind": "error", "status": 503})
    assert rule.status_code == 200
    resp = await transfer(api, "in", card_id, "5", "fault-error")
    assert (resp.status_code, resp.json()["code"]) == (503, "500001")
    state = await snapshot(api)
    assert state["cards"][card_id]["available"] == "0.00"
    assert state["requests"]["POST /open-api/v3/cards/transfer-in"] == 1
    await api.delete("/_sandbox/faults")
    assert (await transfer(api, "in", card_id, "5", "fault-error")).status_code == 200


async def test_fault_fail_after_commit_executes(api: httpx.AsyncClient) -> None:
    """kind=fail_after_commit returns 500 but the movement happened; the retry replays it."""
    card_id = await new_card(api, None)
    await api.post(
        "/_sandbox/faults", json={"path": f"{V3}/cards/transfer-in", "kind": "fail_after_commit", "times": 1}
    )
    resp = await transfer(api, "in", card_id, "8", "fac-1")
    assert (resp.status_code, resp.json()["code"]) == (500, "500001")
    assert await card_available(api, card_id) == Decimal("8.00")
    retry = await transfer(api, "in", card_id, "8", "fac-1")
    assert retry.status_code == 200
    assert await card_available(api, card_id) == Decimal("8.00")


async def test_fault_fail_after_commit_drop_and_reset(app: Starlette, api: httpx.AsyncClient) -> None:
    """status 0 drops the connection after committing; kind=reset drops it without executing."""
    card_id = await new_card(api, None)
    state = sandbox(app)
    state.add_fault(f"{V3}/cards/transfer-in", "fail_after_commit", status=0, times=1)
    with pytest.raises(SandboxConnectionDropped):
        await transfer(api, "in", card_id, "4", "drop-1")
    assert await card_available(api, card_id) == Decimal("4.00")
    state.add_fault(f"{V3}/cards/transfer-in", "reset", method="POST", times=1)
    with pytest.raises(SandboxConnectionDropped):
        await transfer(api, "in", card_id, "4", "drop-2")
    assert await card_available(api, card_id) == Decimal("4.00")
    assert state.faults == []


async def test_fault_rate_limit(api: httpx.AsyncClient) -> None:
    """kind=rate_limit -> 429/429001 with Retry-After, nothing executed."""
    await api.post("/_sandbox/faults", json={"path": f"{V3}/prepaid-card", "kind": "rate_limit", "retry_after": 7})
    resp = await issue_card(api, "10")
    assert (resp.status_code, resp.json()["code"]) == (429, "429001")
    assert resp.headers["Retry-After"] == "7"
    assert (await snapshot(api))["card_count"] == 0 and await infinity(api) == Decimal("10000.00")


async def test_fault_times_and_method(api: httpx.AsyncClient) -> None:
    """times=1 applies to exactly one request; a method-restricted rule ignores other methods."""
    await api.post("/_sandbox/faults", json={"path": f"{V3}/card-list", "kind": "error", "method": "GET", "times": 1})
    await api.post("/_sandbox/faults", json={"path": f"{V3}/card/bins", "kind": "error", "method": "POST"})
    params = {"accountId": ACCOUNT_ID}
    assert (await api.get(f"{V3}/card-list", params=params)).status_code == 500
    assert (await api.get(f"{V3}/card-list", params=params)).status_code == 200
    assert (await api.get(f"{V3}/card/bins", params=params)).status_code == 200
    faults = (await api.get("/_sandbox/faults")).json()["data"]
    assert faults["total"] == "1" and faults["list"][0]["method"] == "POST"


async def test_fault_latency_delays(app: Starlette, api: httpx.AsyncClient) -> None:
    """kind=latency sleeps delay_ms before executing (and then executes)."""
    sandbox(app).add_fault(f"{V3}/accounts", "latency", delay_ms=150)
    t0 = time.monotonic()
    resp = await api.get(f"{V3}/accounts")
    assert resp.status_code == 200 and time.monotonic() - t0 >= 0.14


async def test_fault_rule_validation(app: Starlette, api: httpx.AsyncClient) -> None:
    """Malformed rules are refused both over HTTP (400002) and from Python (ValueError)."""
    resp = await api.post("/_sandbox/faults", json={"path": f"{V3}/card-list", "kind": "explode"})
    assert resp.json()["code"] == "400002"
    with pytest.raises(ValueError):
        sandbox(app).add_fault(f"{V3}/card-list", "error", times=0)
    assert sandbox(app).faults == []


# ---- webhooks ------------------------------------------------------------------------------------


async def test_webhook_is_signed_v3_notification() -> None:
    """A simulated authorization POSTs a CARD_TRANSACTION.CREATED notification signed with the secret."""
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={"received": True})

    app = create_sandbox_app(webhook_url="http://hooks.test/interlace", webhook_transport=httpx.MockTransport(receiver))
    async with open_client(app) as api:
        await login(api)
        card_id = await new_card(api, "5")
        tx = await simulate(api, card_id, "2", merchantName="Shop")
    assert len(received) == 1
    request = received[0]
    assert str(request.url) == "http://hooks.test/interlace"
    payload = json.loads(request.content)
    assert payload["eventType"] == "CARD_TRANSACTION.CREATED" and payload["apiVersion"] == "v3"
    assert json.loads(payload["resource"]) == tx
    expected = base64.b64encode(
        hmac.new(CLIENT_SECRET.encode(), payload["resource"].encode(), hashlib.sha256).digest()
    ).decode()
    assert request.headers["Signature"] == expected
    assert request.headers["Signature-Method"] == "HMAC-SHA256"
    assert request.headers["Timestamp"] == payload["createTime"]


async def test_webhook_failure_does_not_fail_request(caplog: pytest.LogCaptureFixture) -> None:
    """A dead webhook receiver is logged and ignored; the authorization still succeeds."""

    def receiver(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    app = create_sandbox_app(webhook_transport=httpx.MockTransport(receiver))
    async with open_client(app) as api:
        await login(api)
        await api.post("/_sandbox/config", json={"webhook_url": "http://hooks.test/x"})
        card_id = await new_card(api, "5")
        with caplog.at_level(logging.WARNING, logger="interlace_mcp.sandbox"):
            tx = await simulate(api, card_id, "1")
    assert tx["status"] == "PENDING"
    assert "webhook delivery failed" in caplog.text


# ---- persistence and control ---------------------------------------------------------------------


async def test_persistence_round_trip(tmp_path: Path) -> None:
    """A state_path app saves after each mutation; a new app on the same file sees the same world."""
    path = tmp_path / "state" / "sandbox.json"
    app1 = create_sandbox_app(state_path=path)
    async with open_client(app1) as api:
        token = await login(api)
        card_id = await new_card(api, "40")
        await transfer(api, "out", card_id, "15", "persist-out")
        await api.post(f"{V3}/business/transfer/external", json=external_body("5", "persist-pay"))
        details = (await api.get(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})).json()["data"]
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert all(isinstance(b["available"], str) for b in raw["balances"])

    app2 = create_sandbox_app(state_path=path)
    async with open_client(app2) as api:
        api.headers["x-access-token"] = token  # tokens survive a restart
        assert await card_available(api, card_id) == Decimal("25.00")
        assert await infinity(api) == Decimal("9970.00")
        assert await infinity(api, PAYEE_BALANCE_ID) == Decimal("5.00")
        again = (await api.get(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})).json()["data"]
        assert decrypt_card_field(again["cardNumber"], CLIENT_SECRET) == decrypt_card_field(
            details["cardNumber"], CLIENT_SECRET
        )
        dup = await transfer(api, "out", card_id, "15", "persist-out")
        assert dup.status_code == 200 and await card_available(api, card_id) == Decimal("25.00")


async def test_state_save_load_direct(tmp_path: Path) -> None:
    """SandboxState.save / load round-trips everything but fault rules."""
    state = SandboxState()
    card = state.issue_prepaid_card(
        ACCOUNT_ID,
        bin_id=PREPAID_BIN_ID,
        cardholder_id=CARDHOLDER_ID,
        reference_id="direct",
        card_mode="VIRTUAL_CARD",
        amount=Decimal("12.50"),
    )
    state.add_fault("/x", "error")
    path = tmp_path / "s.json"
    state.save(path)
    loaded = SandboxState.load(path)
    assert loaded.to_dict() == state.to_dict()
    assert loaded.balances[card.balance_id].available == Decimal("12.50")
    assert loaded.faults == []
    path.write_text('{"version": 99}')
    with pytest.raises(ValueError):
        SandboxState.load(path)


async def test_reset_restores_seeds(api: httpx.AsyncClient) -> None:
    """POST /_sandbox/reset wipes cards and tokens and restores the 10,000.00 balance."""
    await new_card(api, "500")
    resp = await api.post("/_sandbox/reset")
    assert resp.status_code == 200
    state = resp.json()["data"]
    assert state["card_count"] == 0 and state["infinity"][INFINITY_BALANCE_ID] == "10000.00"
    assert (await api.get(f"{V3}/accounts")).status_code == 401


async def test_unknown_endpoint_and_method(api: httpx.AsyncClient) -> None:
    """Unknown paths are 404 and wrong methods 405, both enveloped."""
    resp = await api.get(f"{V3}/nope", params={"accountId": ACCOUNT_ID})
    assert resp.status_code == 404 and resp.json()["code"] == "404000"
    resp = await api.put(f"{V3}/cards/transfer-in", json={"accountId": ACCOUNT_ID})
    assert resp.status_code == 405


async def test_no_card_secrets_in_logs(
    api: httpx.AsyncClient, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    """A full flow never logs a PAN, CVV, client secret or access token."""
    with caplog.at_level(logging.DEBUG):
        card_id = await new_card(api, "3")
        await api.get(f"{V3}/cards/{card_id}", params={"accountId": ACCOUNT_ID})
        await simulate(api, card_id, "1")
        sandbox(app).add_fault(f"{V3}/cards/transfer-in", "error", times=1)
        await transfer(api, "in", card_id, "1", "log-1")
    card = sandbox(app).cards[card_id]
    assert card.pan not in caplog.text and CLIENT_SECRET not in caplog.text
    assert api.headers["x-access-token"] not in caplog.text
    assert f"cvv={card.cvv}" not in caplog.text


# ---- crypto, seeds, runner -----------------------------------------------------------------------


def test_card_field_crypto_round_trip_and_key_sizes() -> None:
    """AES-ECB/PKCS7 hex round-trips; ECB is deterministic; only 16/24/32-byte keys are accepted."""
    for key in ("k" * 16, "k" * 24, CLIENT_SECRET):
        cipher = encrypt_card_field("4111111111111111", key)
        assert re.fullmatch(r"[0-9a-f]{64}", cipher)  # 16 bytes + a full padding block
        assert cipher == encrypt_card_field("4111111111111111", key)
        assert decrypt_card_field(cipher, key) == "4111111111111111"
    assert len(encrypt_card_field("123", CLIENT_SECRET)) == 32
    with pytest.raises(ValueError):
        encrypt_card_field("123", "short-key")
    with pytest.raises(ValueError):
        decrypt_card_field("zz", CLIENT_SECRET)
    with pytest.raises(ValueError):
        decrypt_card_field("00" * 15, CLIENT_SECRET)


def test_seeds_and_banner() -> None:
    """The seeds match the contract and the banner prints what a client needs."""
    assert len(CLIENT_SECRET.encode()) == 32
    assert SEEDS["account_id"] == ACCOUNT_ID and SEEDS["initial_infinity_balance"] == "10000.00"
    banner = sandbox_banner("http://127.0.0.1:8766")
    for value in (CLIENT_ID, CLIENT_SECRET, ACCOUNT_ID, INFINITY_BALANCE_ID, PREPAID_BIN_ID, PAYEE_BALANCE_ID):
        assert value in banner
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


@pytest.mark.slow
async def test_connection_drop_over_real_http(tmp_path: Path) -> None:
    """Over uvicorn, reset and fail_after_commit+0 drop the socket; only the latter commits."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_sandbox_app(state_path=tmp_path / "s.json")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            await anyio.sleep(0.02)
        assert server.started
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
            await login(api)
            card_id = await new_card(api, None)
            path = f"{V3}/cards/transfer-in"
            await api.post("/_sandbox/faults", json={"path": path, "kind": "reset", "times": 1})
            with pytest.raises(httpx.TransportError):
                await transfer(api, "in", card_id, "3", "real-1")
            assert await card_available(api, card_id) == Decimal("0.00")
            await api.post(
                "/_sandbox/faults", json={"path": path, "kind": "fail_after_commit", "status": 0, "times": 1}
            )
            with pytest.raises(httpx.TransportError):
                await transfer(api, "in", card_id, "3", "real-2")
            assert await card_available(api, card_id) == Decimal("3.00")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
