"""Webhooks: signed notifications recorded once; forged or stale ones refused; out-of-order converges."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from helpers import call
from interlace_mcp.config import Settings
from interlace_mcp.policy import token_digest
from interlace_mcp.sandbox import CLIENT_SECRET, create_sandbox_app
from interlace_mcp.server import build_http_app, sign_resource

pytestmark = pytest.mark.anyio
BASE = "http://127.0.0.1:8765"


def make_app(tmp_path: Path, sandbox: Starlette) -> Starlette:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    )
    app = build_http_app(settings, sandbox_app=sandbox, backoff=False)
    app.state.interlace_runtime.ledger.add_token("alice", token_digest("tok-alice"))
    return app


def notification(
    txn_id: str, status: str, *, amount: str = "4.00", age: float = 0, event: str | None = None
) -> dict[str, Any]:
    resource = {
        "id": txn_id,
        "cardId": "card-1",
        "type": 1,
        "status": status,
        "amount": amount,
        "currency": "USD",
        "merchantName": "Shop\u200b\u202eevil",
        "createTime": str(int((time.time() - age) * 1000)),
    }
    return {
        "eventType": event or ("CARD_TRANSACTION.CREATED" if status == "PENDING" else "CARD_TRANSACTION.UPDATED"),
        "apiVersion": "v3",
        "code": "000000",
        "message": "",
        "resource": json.dumps(resource),
        "createTime": resource["createTime"],
        "id": str(uuid.uuid4()),
    }


async def post(http: httpx2.AsyncClient, body: dict[str, Any], secret: str = CLIENT_SECRET) -> httpx2.Response:
    headers = {
        "Signature-Method": "HMAC-SHA256",
        "Signature": sign_resource(body["resource"], secret),
        "Timestamp": str(int(time.time() * 1000)),
    }
    return await http.post("/webhooks/interlace", json=body, headers=headers)


def activity(app: Starlette) -> list[dict[str, Any]]:
    rt = app.state.interlace_runtime
    rows = rt.ledger._conn.execute("SELECT transaction_id, status, merchant FROM card_activity").fetchall()
    return [dict(row) for row in rows]


async def test_valid_forged_replayed_stale_and_out_of_order(tmp_path: Path) -> None:
    """One valid delivery is recorded once; forged and stale are refused; CLOSED-before-PENDING converges."""
    app = make_app(tmp_path, create_sandbox_app())
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            valid = notification("t-1", "PENDING")
            first = await post(http, valid)
            again = await post(http, valid)  # Interlace's duplicate delivery
            forged = await post(http, notification("t-2", "PENDING"), secret="not-the-secret")
            tampered = dict(valid, resource=valid["resource"].replace("4.00", "400.00"))
            tampered_resp = await http.post(
                "/webhooks/interlace",
                json=tampered,
                headers={"Signature": sign_resource(valid["resource"], CLIENT_SECRET)},
            )
            stale = await post(http, notification("t-3", "PENDING", age=2 * 86400))
            unsigned = await http.post("/webhooks/interlace", json=notification("t-4", "PENDING"))
            closed_first = await post(http, notification("t-5", "CLOSED", age=0))
            pending_late = await post(http, notification("t-5", "PENDING", age=5))
    assert (first.status_code, first.json()) == (200, {"received": True})
    assert again.status_code == 200
    assert forged.status_code == 401 and tampered_resp.status_code == 401 and unsigned.status_code == 401
    assert stale.status_code == 400
    assert closed_first.status_code == pending_late.status_code == 200
    rows = {r["transaction_id"]: r for r in activity(app)}
    assert set(rows) == {"t-1", "t-5"}
    assert rows["t-5"]["status"] == "CLOSED"  # the late PENDING did not overwrite the final status
    assert rows["t-1"]["merchant"] == "Shopevil"  # zero-width and bidi characters stripped


async def test_emulator_webhooks_show_merchant_spend_in_spend_status(tmp_path: Path) -> None:
    """A simulated purchase makes the emulator send a signed webhook; get_spend_status then shows it."""
    holder: dict[str, Starlette] = {}

    class ToApp(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await httpx.ASGITransport(app=holder["app"]).handle_async_request(request)

    sandbox = create_sandbox_app(webhook_url=f"{BASE}/webhooks/interlace", webhook_transport=ToApp())
    app = make_app(tmp_path, sandbox)
    holder["app"] = app
    async with app.router.lifespan_context(app):
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE, headers={"Authorization": "Bearer tok-alice"}
        )
        async with Client(streamable_http_client(f"{BASE}/mcp", http_client=http)) as c:
            card_id = (await call(c, "issue_card", {"amount": "10.00", "request_id": "i"}))["card"]["card_id"]
            await call(c, "simulate_purchase", {"card_id": card_id, "amount": "3.00", "merchant": "Books"})
            await call(c, "simulate_purchase", {"card_id": card_id, "amount": "50.00", "merchant": "Too much"})
            with anyio.fail_after(5):
                while True:
                    status = await call(c, "get_spend_status", {})
                    if status["merchant_activity"]["approved"] + status["merchant_activity"]["declined"] >= 2:
                        break
                    await anyio.sleep(0.02)
    assert status["merchant_activity"] == {
        "window": "24h", "authorized": "3.00", "approved": 1, "declined": 1, "source": "webhooks",
    }  # fmt: skip
