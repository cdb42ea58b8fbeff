"""CryptoConnect on the emulator: the seeded wallet, addresses, deposits, wallet -> Infinity transfers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from helpers import Clock
from interlace_mcp.sandbox import (
    ACCOUNT_ID,
    CRYPTO_WALLET_ID,
    DEPOSIT_ADDRESS,
    INFINITY_BALANCE_ID,
    PAYEE_ACCOUNT_ID,
    PAYEE_BALANCE_ID,
    create_sandbox_app,
)
from sandbox.support import V3, data, login, open_client, sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def app() -> Starlette:
    return create_sandbox_app(clock=Clock())


@pytest.fixture
async def api(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(app) as client:
        await login(client)
        yield client


async def wallet(api: httpx.AsyncClient, wallet_id: str = CRYPTO_WALLET_ID) -> dict[str, Any]:
    result: dict[str, Any] = data(await api.get(f"{V3}/cryptoconnect/wallets/{wallet_id}"))
    return result


def balances(view: dict[str, Any]) -> dict[str, str]:
    return {b["currency"]: b["available"] for b in view["balances"]}


async def infinity(api: httpx.AsyncClient) -> Decimal:
    return Decimal(data(await api.get("/_sandbox/state"))["infinity"][INFINITY_BALANCE_ID])


def fund_body(amount: str, ctid: str, *, currency: str = "USDC", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "clientTransactionId": ctid,
        "amount": amount,
        "from": {"businessType": 2, "id": CRYPTO_WALLET_ID, "currency": currency},
        "to": {"businessType": 0, "id": INFINITY_BALANCE_ID, "currency": "USD"},
    }
    body.update(overrides)
    return body


async def test_the_seeded_wallet_holds_5000_usdc_and_an_eth_address(api: httpx.AsyncClient) -> None:
    """List (by accountId, master) and get (accountId optional) show the fixed seed."""
    listed = data(await api.get(f"{V3}/cryptoconnect/wallets", params={"accountId": ACCOUNT_ID}))
    assert listed["total"] == "1"
    (view,) = listed["list"]
    assert (view["id"], view["accountId"], view["master"]) == (CRYPTO_WALLET_ID, ACCOUNT_ID, True)
    assert balances(view) == {"USDC": "5000.00", "USDT": "0.00"}
    assert [(a["currency"], a["chain"], a["address"]) for a in view["addresses"]] == [("USDC", "ETH", DEPOSIT_ADDRESS)]
    assert await wallet(api) == view
    with_account = await api.get(f"{V3}/cryptoconnect/wallets/{CRYPTO_WALLET_ID}", params={"accountId": ACCOUNT_ID})
    assert data(with_account) == view
    not_master = data(await api.get(f"{V3}/cryptoconnect/wallets", params={"accountId": ACCOUNT_ID, "master": "false"}))
    assert not_master["total"] == "0"
    assert (await api.get(f"{V3}/cryptoconnect/wallets/{PAYEE_BALANCE_ID}")).status_code == 404
    assert (await api.get(f"{V3}/cryptoconnect/wallets", params={"accountId": PAYEE_ACCOUNT_ID})).status_code == 403


async def test_address_creation_returns_the_pairs_address_and_refuses_unknown_chains(api: httpx.AsyncClient) -> None:
    """USDC/ETH is the seeded one; USDT/ETH shares the EVM address; ARB gets its own; bad input is a 400."""
    path = f"{V3}/cryptoconnect/wallets/{CRYPTO_WALLET_ID}/addresses"
    seeded = data(await api.post(path, json={"accountId": ACCOUNT_ID, "currency": "USDC", "chain": "ETH"}))
    assert seeded["address"] == DEPOSIT_ADDRESS
    usdt = data(await api.post(path, json={"accountId": ACCOUNT_ID, "currency": "USDT", "chain": "ETH"}))
    assert usdt["address"] == DEPOSIT_ADDRESS and usdt["id"] != seeded["id"]
    arb = data(await api.post(path, json={"accountId": ACCOUNT_ID, "currency": "USDC", "chain": "ARB"}))
    assert arb["address"].startswith("0x") and len(arb["address"]) == 42 and arb["address"] != DEPOSIT_ADDRESS
    again = data(await api.post(path, json={"accountId": ACCOUNT_ID, "currency": "USDC", "chain": "ARB"}))
    assert again == arb
    for body in ({"currency": "BTC", "chain": "ETH"}, {"currency": "USDC", "chain": "MOON"}, {"currency": "USDC"}):
        resp = await api.post(path, json={"accountId": ACCOUNT_ID, **body})
        assert (resp.status_code, resp.json()["code"]) == (400, "400002"), body
    assert len((await wallet(api))["addresses"]) == 3


async def test_a_simulated_deposit_increases_the_wallet_balance(api: httpx.AsyncClient) -> None:
    """POST /_sandbox/deposit credits the wallet (up to 6 decimals); bad input changes nothing."""
    result = data(await api.post("/_sandbox/deposit", json={"amount": "250.5", "currency": "USDC"}))
    deposit = result["deposit"]
    assert (deposit["walletId"], deposit["chain"], deposit["address"], deposit["amount"]) == (
        CRYPTO_WALLET_ID,
        "ETH",
        DEPOSIT_ADDRESS,
        "250.50",
    )
    assert deposit["txHash"].startswith("0x") and len(deposit["txHash"]) == 66
    assert balances(result["wallet"])["USDC"] == "5250.50"
    data(await api.post("/_sandbox/deposit", json={"amount": "0.000001", "currency": "USDT", "chain": "ARB"}))
    assert balances(await wallet(api)) == {"USDC": "5250.50", "USDT": "0.000001"}
    for body in (
        {"amount": "1", "currency": "BTC"},
        {"amount": 1},
        {"amount": "1.0000001"},
        {"amount": "0"},
        {"amount": "1", "chain": "MOON"},
    ):
        resp = await api.post("/_sandbox/deposit", json=body)
        assert resp.status_code == 400, body
    assert balances(await wallet(api)) == {"USDC": "5250.50", "USDT": "0.000001"}
    assert data(await api.get("/_sandbox/state"))["deposits_total"] == "250.500001"


async def test_an_internal_transfer_moves_usdc_from_the_wallet_to_infinity_one_to_one(
    api: httpx.AsyncClient,
) -> None:
    """businessType 2 -> 0: the wallet loses exactly what Infinity gains; the transfer says so; not spend."""
    transfer = data(await api.post(f"{V3}/business/transfer/internal", json=fund_body("100.25", "fund-1")))
    assert (transfer["status"], transfer["accountTransferType"], transfer["amount"]) == (
        "CLOSED",
        "SAME_ACCOUNT",
        "100.25",
    )
    assert (transfer["from"]["businessType"], transfer["from"]["currency"], transfer["from"]["id"]) == (
        2,
        "USDC",
        CRYPTO_WALLET_ID,
    )
    assert (transfer["to"]["businessType"], transfer["to"]["currency"], transfer["to"]["rate"]) == (0, "USD", "1")
    assert balances(await wallet(api))["USDC"] == "4899.75"
    assert await infinity(api) == Decimal("10100.25")
    listed = data(
        await api.get(f"{V3}/business/transfers", params={"accountId": ACCOUNT_ID, "clientTransactionId": "fund-1"})
    )
    assert [t["id"] for t in listed["list"]] == [transfer["id"]]
    snap = data(await api.get("/_sandbox/state"))
    assert (snap["funded_total"], snap["transfers_total"]) == ("100.25", "0.00")


async def test_the_wallet_transfer_is_deduplicated_by_client_transaction_id_and_idempotency_key(
    api: httpx.AsyncClient,
) -> None:
    """The same clientTransactionId moves once; the same Idempotency-Key replays the first answer byte for byte."""
    path = f"{V3}/business/transfer/internal"
    first = await api.post(path, json=fund_body("10", "fund-dup"), headers={"Idempotency-Key": "key-1"})
    replay = await api.post(path, json=fund_body("10", "fund-dup"), headers={"Idempotency-Key": "key-1"})
    assert replay.json() == first.json()
    same_ctid = await api.post(path, json=fund_body("10", "fund-dup"), headers={"Idempotency-Key": "key-2"})
    assert data(same_ctid)["id"] == data(first)["id"]
    assert balances(await wallet(api))["USDC"] == "4990.00"
    assert await infinity(api) == Decimal("10010.00")


async def test_wallet_transfers_refuse_what_they_cannot_do_and_change_nothing(
    app: Starlette, api: httpx.AsyncClient
) -> None:
    """Insufficient USDT/USDC is 100100001; sub-cent, wrong sides and external wallet moves are 400s."""
    path = f"{V3}/business/transfer/internal"
    cases: list[tuple[dict[str, Any], int, str]] = [
        (fund_body("1", "x1", currency="USDT"), 400, "100100001"),
        (fund_body("5000.01", "x2"), 400, "100100001"),
        (fund_body("1.001", "x3"), 400, "400002"),
        (fund_body("1", "x4", currency="USD"), 400, "400002"),
        (fund_body("1", "x5", to={"businessType": 2, "id": CRYPTO_WALLET_ID, "currency": "USDC"}), 400, "400002"),
        (fund_body("1", "x6", to={"businessType": 0, "id": PAYEE_BALANCE_ID, "currency": "USD"}), 404, "404001"),
        (
            fund_body("1", "x7", **{"from": {"businessType": 2, "id": INFINITY_BALANCE_ID, "currency": "USDC"}}),
            404,
            "404001",
        ),
        (
            fund_body("1", "x8", **{"from": {"businessType": 1, "id": CRYPTO_WALLET_ID, "currency": "USDC"}}),
            400,
            "400002",
        ),
    ]
    for body, status, code in cases:
        resp = await api.post(path, json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), body
    external = fund_body("1", "x9")
    external["from"]["accountId"] = ACCOUNT_ID
    external["to"] = {"businessType": 0, "id": PAYEE_BALANCE_ID, "accountId": PAYEE_ACCOUNT_ID, "currency": "USD"}
    resp = await api.post(f"{V3}/business/transfer/external", json=external)
    assert resp.status_code == 400
    assert balances(await wallet(api)) == {"USDC": "5000.00", "USDT": "0.00"}
    assert await infinity(api) == Decimal("10000.00")
    assert sandbox(app).transfers == {}


async def test_a_new_wallet_is_listed_after_the_master_with_zero_balances(api: httpx.AsyncClient) -> None:
    """POST /cryptoconnect/wallets: a non-master wallet, USDC/USDT at zero, no address; a reused
    referenceId is a 400 and makes nothing."""
    made = data(
        await api.post(
            f"{V3}/cryptoconnect/wallets", json={"accountId": ACCOUNT_ID, "referenceId": "team-a", "nickname": "A"}
        )
    )
    again = await api.post(f"{V3}/cryptoconnect/wallets", json={"accountId": ACCOUNT_ID, "referenceId": "team-a"})
    listed = data(await api.get(f"{V3}/cryptoconnect/wallets", params={"accountId": ACCOUNT_ID}))
    assert made["master"] is False and made["addresses"] == [] and made["nickname"] == "A"
    assert balances(made) == {"USDC": "0.00", "USDT": "0.00"}
    assert again.status_code == 400 and again.json()["code"] == "400002"
    assert [w["id"] for w in listed["list"]] == [CRYPTO_WALLET_ID, made["id"]]
