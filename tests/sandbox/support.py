"""Helpers for the emulator's tests (import as ``sandbox.support``): an in-process client, login, cards."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette

from interlace_mcp.sandbox import ACCOUNT_ID, CARDHOLDER_ID, CLIENT_ID, PREPAID_BIN_ID, SandboxState

BASE_URL = "http://sandbox.test"
V3 = "/open-api/v3"


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


def sandbox(app: Starlette) -> SandboxState:
    state: SandboxState = app.state.sandbox
    return state


def data(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()["data"]


async def new_card(client: httpx.AsyncClient, amount: str | None = "100") -> str:
    body: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "binId": PREPAID_BIN_ID,
        "cardholderId": CARDHOLDER_ID,
        "referenceId": f"ref-{time.monotonic_ns()}",
        "cardMode": "VIRTUAL_CARD",
    }
    if amount is not None:
        body["amount"] = amount
    card_id: str = data(await client.post(f"{V3}/prepaid-card", json=body))["id"]
    return card_id


async def simulate(client: httpx.AsyncClient, card_id: str, amount: str, **extra: object) -> dict[str, Any]:
    body = {"accountId": ACCOUNT_ID, "cardId": card_id, "amount": amount, "currency": "USD", **extra}
    result: dict[str, Any] = data(await client.post(f"{V3}/vcc/simulate/auth", json=body))
    return result


async def transactions(client: httpx.AsyncClient, card_id: str, **filters: str) -> list[dict[str, Any]]:
    params = {"accountId": ACCOUNT_ID, "cardId": card_id, "limit": "100", **filters}
    items: list[dict[str, Any]] = data(await client.get(f"{V3}/cards/transaction-list", params=params))["list"]
    return items


async def card_available(client: httpx.AsyncClient, card_id: str) -> Decimal:
    summary = data(await client.get(f"{V3}/cards/{card_id}/card-summary", params={"accountId": ACCOUNT_ID}))
    return Decimal(summary["balance"]["available"])
