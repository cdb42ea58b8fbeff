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


class CountingBody:
    """A streamed request body of ``total`` bytes in ``chunk``-byte pieces that counts what was pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self) -> Any:
        while self.pulled < self.total:
            piece = min(self.chunk, self.total - self.pulled)
            self.pulled += piece
            yield b"0" * piece


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_webhook_body_is_refused_while_it_is_read(tmp_path: Path, declared: bool) -> None:
    """8 MB streamed at the webhook: 413; with a Content-Length nothing is read, chunked stops at the 256 KB cap."""
    app = make_app(tmp_path, create_sandbox_app())
    body = CountingBody(8 * 1024 * 1024)
    headers = {"Content-Type": "application/json", "Signature": "x"}
    if declared:
        headers["Content-Length"] = str(body.total)
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            response = await http.post("/webhooks/interlace", content=body, headers=headers)
            small = await post(http, notification("t-small", "PENDING"))  # the endpoint still works
    assert response.status_code == 413
    assert body.pulled <= (0 if declared else 256 * 1024 + body.chunk), body.pulled
    assert response.json() == {"received": False, "error": "body too large (limit 262144 bytes)"}
    assert small.status_code == 200


def envelope(
    resource: dict[str, Any] | str, *, event: str = "CARD_TRANSACTION.CREATED", **extra: Any
) -> dict[str, Any]:
    """A notification around ``resource`` (signed as it is sent), with a fresh envelope id and time."""
    raw = resource if isinstance(resource, str) else json.dumps(resource)
    return {
        "eventType": event, "apiVersion": "v3", "code": "000000", "message": "", "resource": raw,
        "createTime": str(int(time.time() * 1000)), "id": str(uuid.uuid4()), **extra,
    }  # fmt: skip


def webhook_rows(app: Starlette) -> int:
    rt = app.state.interlace_runtime
    return int(rt.ledger._conn.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"])


def transaction(txn_id: str, status: str = "PENDING", age: float = 0, **fields: Any) -> dict[str, Any]:
    """A card transaction resource as the emulator signs it (transactionTime, no createTime)."""
    return {
        "id": txn_id, "cardId": "card-1", "type": 1, "status": status, "amount": "4.00", "currency": "USD",
        "merchantName": "Shop", "transactionTime": str(int((time.time() - age) * 1000)), **fields,
    }  # fmt: skip


HOSTILE_AMOUNTS: list[Any] = [
    "1E+30", "1e2", "NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "1.001", "0.0001", "99999999999",
    "1000000000.00", "0x10", "1_000", " 1", "", "4,00", "\u0664.00", 1e30, 4.5, True, [1], {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS, ids=repr)
async def test_a_signed_malformed_amount_is_a_400_that_records_nothing(tmp_path: Path, amount: Any) -> None:
    """Exponents, NaN, huge, sub-cent, padded or non-string amounts in a validly signed event: 400, nothing stored."""
    app = make_app(tmp_path, create_sandbox_app())
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            response = await post(http, envelope(transaction("t-bad", billingAmount=amount)))
            fine = await post(http, envelope(transaction("t-ok", billingAmount="-12.50")))
    assert response.status_code == 400, response.text
    assert response.json() == {"received": False, "error": "malformed amount in billingAmount"}
    assert fine.status_code == 200  # a refund-style negative amount with 2 decimals is fine
    assert [r["transaction_id"] for r in activity(app)] == ["t-ok"]
    assert webhook_rows(app) == 1


async def test_freshness_comes_only_from_the_signed_resource(tmp_path: Path) -> None:
    """A fresh unsigned envelope time cannot date an undated or old signed resource; the signed time decides."""
    app = make_app(tmp_path, create_sandbox_app())
    undated = transaction("t-undated")
    del undated["transactionTime"]
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            no_time = await post(http, envelope(undated))
            old = await post(http, envelope(transaction("t-old", age=2 * 86400)))
            future = await post(http, envelope(transaction("t-future", age=-3600)))
            fresh = await post(http, envelope(transaction("t-fresh")))
            settled_later = await post(
                http,
                envelope(
                    transaction("t-settled", "CLOSED", age=3 * 86400, updateTime=str(int(time.time() * 1000))),
                    event="CARD_TRANSACTION.UPDATED",
                ),
            )
    assert [no_time.status_code, old.status_code, future.status_code] == [400, 400, 400]
    assert no_time.json()["error"] == "stale or undated event"
    assert fresh.status_code == settled_later.status_code == 200
    assert sorted(r["transaction_id"] for r in activity(app)) == ["t-fresh", "t-settled"]


async def test_deduplication_rests_on_the_signed_resource_not_the_envelope_id(tmp_path: Path) -> None:
    """A captured signed resource replayed under new envelope ids is recorded once; Interlace's own retry (same
    envelope) is still a duplicate; a replayed PENDING cannot undo a later CLOSED."""
    app = make_app(tmp_path, create_sandbox_app())
    pending = json.dumps(transaction("t-1", "PENDING", age=10))
    closed = json.dumps(transaction("t-1", "CLOSED"))
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            first = envelope(pending)
            answers = [await post(http, first), await post(http, first)]  # delivery + Interlace's retry
            answers += [await post(http, envelope(pending)) for _ in range(3)]  # replays, new envelope ids
            answers.append(await post(http, envelope(closed, event="CARD_TRANSACTION.UPDATED")))
            answers += [await post(http, envelope(pending)) for _ in range(2)]  # replayed after the CLOSED
            answers.append(await post(http, envelope(pending, event="CARD_TRANSACTION.UPDATED")))  # relabelled
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert webhook_rows(app) == 2  # one PENDING, one CLOSED
    assert [(r["transaction_id"], r["status"]) for r in activity(app)] == [("t-1", "CLOSED")]


def otp_notification(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventType": "CARD.3DS.OTP",
        "apiVersion": "v3",
        "code": "000000",
        "message": "",
        "resource": json.dumps(resource),
        "createTime": str(int(time.time() * 1000)),
        "id": str(uuid.uuid4()),
    }


async def test_three_ds_codes_are_stored_whole_once_and_malformed_or_forged_ones_refused(tmp_path: Path) -> None:
    """A signed CARD.3DS.OTP is stored as sent (once); undated ones too (they expire 10 minutes after arrival);
    no card id is a 400, a bad signature a 401; other CARD.* events are answered and ignored."""
    app = make_app(tmp_path, create_sandbox_app())
    now_ms = int(time.time() * 1000)
    dated = {"cardId": "card-1", "otp": "123456", "createTime": str(now_ms), "expireTime": str(now_ms + 300_000)}
    undated = {"cardId": "card-2", "verificationCode": "654321"}
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            first = await post(http, otp_notification(dated))
            repeat = await post(http, otp_notification(dated))  # a retry under a new envelope id
            loose = await post(http, otp_notification(undated))
            no_card = await post(http, otp_notification({"otp": "111111", "createTime": str(now_ms)}))
            forged = await post(http, otp_notification(dated), secret="not-the-secret")
            card_event = await post(http, dict(otp_notification(dated), eventType="CARD.UPDATED"))
    assert [r.status_code for r in (first, repeat, loose, no_card, forged, card_event)] == [
        200,
        200,
        200,
        400,
        401,
        200,
    ]
    rt = app.state.interlace_runtime
    rows = rt.ledger._conn.execute(
        "SELECT card_id, resource_json, received_at, expires_at FROM three_ds_codes"
    ).fetchall()
    stored = {row["card_id"]: row for row in rows}
    assert set(stored) == {"card-1", "card-2"}
    assert json.loads(stored["card-1"]["resource_json"]) == dated
    assert stored["card-1"]["expires_at"] == pytest.approx((now_ms + 300_000) / 1000)  # the notification's own expiry
    assert stored["card-2"]["expires_at"] == pytest.approx(stored["card-2"]["received_at"] + 600)


async def test_a_three_ds_notification_carrying_card_data_stores_none_of_it(tmp_path: Path) -> None:
    """The OTP payload's shape is unconfirmed: should Interlace put the card number or CVV in it, neither reaches
    the database (card data is in no database file) -- while the code and what it is for still read."""
    app = make_app(tmp_path, create_sandbox_app())
    now_ms = int(time.time() * 1000)
    resource = {
        "cardId": "card-1",
        "otp": "123456",
        "createTime": str(now_ms),
        "cardNumber": "4111 1111 1111 1111",
        "cvv": "737",
        "data": {"pan": "5555555555554444", "merchantName": "Shop 4000056655665556", "maskedCard": 4242424242424242},
    }
    async with app.router.lifespan_context(app):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http:
            assert (await post(http, otp_notification(resource))).status_code == 200
    rt = app.state.interlace_runtime
    (row,) = rt.ledger._conn.execute("SELECT resource_json FROM three_ds_codes").fetchall()
    stored = json.loads(row["resource_json"])
    for number in (
        "4111 1111 1111 1111",
        "4111111111111111",
        "5555555555554444",
        "4000056655665556",
        "4242424242424242",
    ):
        assert number not in row["resource_json"], row["resource_json"]
    assert stored["cvv"] != "737" and stored["data"]["pan"] != "5555555555554444"
    assert (stored["cardId"], stored["otp"], stored["createTime"]) == ("card-1", "123456", str(now_ms))
    assert stored["data"]["merchantName"].startswith("Shop ")
