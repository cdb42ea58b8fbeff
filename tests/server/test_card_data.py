"""Planted-number test: the emulator's card numbers and CVVs appear nowhere but the one allowed reveal."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from helpers import ServerFactory, call, sandbox_of
from interlace_mcp.sandbox import CLIENT_SECRET

pytestmark = pytest.mark.anyio


async def _full_flow(c: Client, *, reveal: bool) -> tuple[list[str], dict[str, Any] | None]:
    """Every tool, some errors; returns every result/error text except the allowed reveal, and the reveal."""
    texts: list[str] = []

    async def run(tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        result = await c.call_tool(tool, args)
        texts.append(json.dumps(result.model_dump(mode="json", by_alias=True)))
        return result.structured_content

    first = await run("issue_card", {"amount": "10.00", "request_id": "p-1", "label": "canary"})
    assert first is not None
    card_id = first["card"]["card_id"]
    await run("issue_card", {"amount": "10.00", "request_id": "p-1", "label": "canary"})  # replay
    await run("top_up_card", {"card_id": card_id, "amount": "5.00", "request_id": "p-2"})
    await run("get_card", {"card_id": card_id})
    await run("list_cards", {})
    await run("simulate_purchase", {"card_id": card_id, "amount": "1.00", "merchant": "Shop"})
    await run("simulate_purchase", {"card_id": card_id, "amount": "99.00"})
    await run("get_card_transactions", {"card_id": card_id, "limit": 50})
    await run("freeze_card", {"card_id": card_id})
    await run("top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "p-3"})  # card_frozen
    await run("unfreeze_card", {"card_id": card_id})
    await run("get_card", {"card_id": "nope"})
    await run("top_up_card", {"card_id": card_id, "amount": "1e3", "request_id": "p-4"})
    await run("get_spend_status", {})
    await run("get_request_status", {"request_id": "p-2"})
    revealed = None
    result = await c.call_tool("get_card", {"card_id": card_id, "reveal": True})
    if reveal:
        assert not result.is_error
        revealed = result.structured_content
    else:
        texts.append(json.dumps(result.model_dump(mode="json", by_alias=True)))
    await run("close_card", {"card_id": card_id, "request_id": "p-5"})
    return texts, revealed


@pytest.mark.parametrize("reveal", [True, False], ids=["reveal-on", "reveal-off"])
async def test_no_card_number_or_cvv_outside_the_allowed_reveal(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, reveal: bool
) -> None:
    """Logs (DEBUG, httpx included), audit records, database files, results and errors hold 0 PANs/CVVs."""
    caplog.set_level(logging.DEBUG)
    server = make_server(policy=f"[defaults]\nreveal = {'true' if reveal else 'false'}\n")
    async with Client(server) as c:
        texts, revealed = await _full_flow(c, reveal=reveal)
    cards = list(sandbox_of(sandbox_app).cards.values())
    assert cards
    pans = {card.pan for card in cards}
    cvvs = {card.cvv for card in cards}
    if reveal:
        assert revealed is not None and revealed["card_number"] in pans and revealed["cvv"] in cvvs
    cvv_field = re.compile(r'"cvv"\s*:\s*"(\d{3,4})"')

    haystacks = {"tool results and errors": "\n".join(texts)}
    haystacks["log records"] = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "sandbox-state" not in path.name:  # the fake issuer's own database is exempt
            haystacks[str(path.relative_to(tmp_path))] = path.read_bytes().decode("latin-1")
    assert any("ledger.sqlite3" in name for name in haystacks)
    for name, text in haystacks.items():
        for pan in pans:
            assert pan not in text, f"card number in {name}"
            assert f"{pan[:4]} {pan[4:8]}" not in text, f"spaced card number in {name}"
        assert not [m for m in cvv_field.findall(text) if m in cvvs], f"CVV in {name}"
        assert CLIENT_SECRET not in text, f"client secret in {name}"
    audit = server.interlace_runtime.audit  # type: ignore[attr-defined]
    assert audit.verify().ok
    assert audit.count(event="card_data_access") == 1
    assert audit.count(event="decision") >= 3 and audit.count(event="outcome") >= 3


async def test_money_tools_and_reveals_fail_closed_when_the_audit_log_cannot_be_written(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path
) -> None:
    """With the audit store broken: no movement, no reservation, no card data; reads still answer."""
    from interlace_mcp.audit import AuditLog

    server = make_server()
    rt = server.interlace_runtime  # type: ignore[attr-defined]
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "ok"}))["card"]["card_id"]
        blocked = tmp_path / "anchor-is-a-directory"
        blocked.mkdir()
        rt.audit = AuditLog(tmp_path / "ledger.sqlite3", anchor_path=blocked)
        before = sandbox_of(sandbox_app).snapshot()["movements"]
        top = await c.call_tool("top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "t"})
        shown = await c.call_tool("get_card", {"card_id": card_id, "reveal": True})
        spend = await call(c, "get_spend_status", {})
    for result in (top, shown):
        assert result.is_error and result.content[0].text.startswith("[audit_unavailable]")  # type: ignore[union-attr]
    assert sandbox_of(sandbox_app).snapshot()["movements"] == before
    assert next(w for w in spend["windows"] if w["window"] == "day")["reserved"] == "0.00"


#: Card-number shapes an agent might paste into free text: Luhn-valid or not, any separators, other scripts.
PASTED_NUMBERS = [
    "4111.1149.8468.0519",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111/1111/1111/1111",
    "4111 - 1111 - 1111 - 1111",
    "4111\u200b1111\u200b1111\u200b1111",
    "1234 5678 9012 3456",  # not Luhn-valid: still refused
    "3782 822463 10005",
    "411111111111111100312",  # longer than 19 digits: holds one
    "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
]


@pytest.mark.parametrize("number", PASTED_NUMBERS)
async def test_card_numbers_in_labels_memos_and_merchants_are_refused_and_stored_nowhere(
    make_server: ServerFactory, sandbox_app: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, number: str
) -> None:
    """A card-number shape in label, memo or merchant: [validation_error] naming the field; no card, transfer,
    purchase, request record or audit record carries it; the same text without the number works."""
    caplog.set_level(logging.DEBUG)
    server = make_server(policy='[defaults]\nper_transaction = "100.00"\ndaily = "500.00"\n')
    rt = server.interlace_runtime  # type: ignore[attr-defined]
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "setup"}))["card"]["card_id"]
        before = sandbox_of(sandbox_app).snapshot()
        transactions = len(sandbox_of(sandbox_app).card_transactions)
        attempts = [
            ("label", "issue_card", {"amount": "5.00", "request_id": "r-1", "label": f"card {number}"}),
            ("memo", "create_transfer", {"payee": "sandbox-payee", "amount": "1.00", "request_id": "r-2",
                                         "memo": f"pay {number} now"}),
            ("merchant", "simulate_purchase", {"card_id": card_id, "amount": "1.00", "merchant": number}),
        ]  # fmt: skip
        texts = []
        for field, tool, args in attempts:
            result = await c.call_tool(tool, args)
            text = result.content[0].text  # type: ignore[union-attr]
            assert result.is_error, (tool, text)
            assert text.startswith(f"[validation_error] {field}: "), text
            assert "card number" in text and text.endswith("nothing was changed"), text
            texts.append(text)
        after = sandbox_of(sandbox_app).snapshot()
        ok = await call(c, "issue_card", {"amount": "5.00", "request_id": "r-3", "label": "team lunch 2026-11-29"})
    assert after["movements"] == before["movements"] and after["cards"] == before["cards"]
    assert len(sandbox_of(sandbox_app).card_transactions) == transactions + 1  # r-3's load; no purchase
    assert ok["status"] == "completed"
    assert {r.request_id for r in rt.audit.tail(500)} <= {"setup", "r-3", None}
    digits = "".join(ch for ch in number if ch.isdigit())
    assert not [t for t in texts if digits in "".join(ch for ch in t if ch.isdigit())]  # never echoed back
    stored = [json.dumps(r.__dict__, default=str, ensure_ascii=False) for r in rt.audit.tail(500)]
    stored += [r.getMessage() for r in caplog.records]
    for path in tmp_path.rglob("*"):
        if path.is_file() and "sandbox-state" not in path.name:
            stored.append(path.read_bytes().decode("utf-8", "replace"))
    assert not [text[:300] for text in stored if number in text]
