"""The emulator's HTTP layer: an ASGI (Starlette) app speaking docs/wire-contract.md.

Request pipeline (one catch-all route, our own small router so that request counters and fault
rules can key on the path template):

count -> fault (error/rate_limit/reset answer here) -> auth -> body -> accountId ->
Idempotency-Key (replay / 409 / mark in progress) -> fault delay -> [lock: handler, save] ->
fail_after_commit -> response (+ webhook background task).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import _seeds as seeds
from ._identity import IDENTITY_MARKER, IDENTITY_NONCE_CHARS, identity_proof
from ._records import LIMIT_TYPES, STABLECOINS, SandboxError
from ._state import SandboxState
from ._webhooks import WebhookEnvelope, WebhookSink

__all__ = ["SandboxConnectionDropped", "create_sandbox_app"]

logger = logging.getLogger(__name__)

V3: Final = "/open-api/v3"
_AMOUNT_RE: Final = re.compile(r"[0-9]{1,9}(\.[0-9]{1,2})?")
_CENT: Final = Decimal("0.01")
_INT_RE: Final = re.compile(r"[0-9]{1,15}")
_MAX_ID_LEN: Final = 128
_BODY_METHODS: Final = ("POST", "PUT", "PATCH")
_CRYPTO_AMOUNT_RE: Final = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_MCC_RE: Final = re.compile(r"[0-9]{4}")


class SandboxConnectionDropped(Exception):
    """Raised by the app to drop the connection (fault kinds ``reset`` / ``fail_after_commit`` + 0).

    In-process (``httpx.ASGITransport``) the caller sees this exception; over uvicorn the response
    is started and the socket closed, so the client sees a protocol error.
    """


# --------------------------------------------------------------------------------------------------
# input validation


def _bad(message: str) -> SandboxError:
    return SandboxError(400, "400002", message)


def _req_str(body: dict[str, Any], name: str, *, max_len: int = _MAX_ID_LEN) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise _bad(f"{name} is required")
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if len(value) > max_len:
        raise _bad(f"{name} is longer than {max_len} characters")
    return value


def _opt_str(body: dict[str, Any], name: str, *, max_len: int | None = None, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if max_len is not None and len(value) > max_len:
        raise _bad(f"{name} is longer than {max_len} characters")
    return value


def _amount(value: object, name: str, *, allow_zero: bool = False) -> Decimal:
    """A JSON string of 1-9 digits with at most 2 decimals, > 0 (>= 0 with allow_zero)."""
    if not isinstance(value, str):
        raise _bad(f'{name} must be a JSON string like "10.50"')
    if not _AMOUNT_RE.fullmatch(value):
        raise _bad(f'{name} must look like "10" or "10.50" (digits, at most 2 decimals, no sign/exponent)')
    amount = Decimal(value).quantize(_CENT)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise _bad(f"{name} must be greater than zero")
    return amount


def _req_amount(body: dict[str, Any], name: str = "amount") -> Decimal:
    if name not in body:
        raise _bad(f"{name} is required")
    return _amount(body[name], name)


def _query_int(query: QueryParams, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not _INT_RE.fullmatch(raw):
        raise _bad(f"{name} must be an integer")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise _bad(f"{name} must be between {low} and {high}" if high else f"{name} must be >= {low}")
    return value


def _paged(query: QueryParams, items: list[dict[str, Any]]) -> dict[str, Any]:
    page = _query_int(query, "page", 1, 1)
    limit = _query_int(query, "limit", 10, 1, 100)
    start = (page - 1) * limit
    return {"list": items[start : start + limit], "total": str(len(items))}


def _crypto_amount(value: object, name: str) -> Decimal:
    """A stablecoin amount: up to 6 decimals on the wire (USDC/USDT precision), > 0."""
    if not isinstance(value, str):
        raise _bad(f'{name} must be a JSON string like "10.50"')
    if not _CRYPTO_AMOUNT_RE.fullmatch(value):
        raise _bad(f'{name} must look like "10" or "10.123456" (digits, at most 6 decimals, no sign/exponent)')
    amount = Decimal(value)
    if amount <= 0:
        raise _bad(f"{name} must be greater than zero")
    return amount


def _opt_bool(body: dict[str, Any], *names: str) -> bool:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise _bad(f"{name} must be true or false")
        return value
    return False


def _opt_mcc(body: dict[str, Any]) -> str:
    mcc = _opt_str(body, "mcc")
    if mcc and not _MCC_RE.fullmatch(mcc):
        raise _bad("mcc must be 4 digits")
    return mcc


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= _MAX_ID_LEN for v in value):
        raise _bad(f"{name} must be a list of ids")
    if len(value) > 100:
        raise _bad(f"{name} has more than 100 entries")
    return list(value)


@dataclass(frozen=True)
class _Side:
    balance_id: str
    account_id: str
    business_type: int
    currency: str


def _side(body: dict[str, Any], name: str, *, external: bool) -> _Side:
    side = body.get(name)
    if not isinstance(side, dict):
        raise _bad(f"{name} must be an object")
    balance_id = _req_str(side, "id")
    business_type = side.get("businessType")
    # internal transfers may come from a CryptoConnect wallet (businessType 2, USDC/USDT)
    allowed = (0, 2) if name == "from" and not external else (0,)
    if isinstance(business_type, bool) or business_type not in allowed:
        raise _bad(
            f"{name}.businessType must be 0 (Infinity Account) or 2 (CryptoConnect wallet)"
            if len(allowed) == 2
            else f"{name}.businessType must be 0 (Infinity Account)"
        )
    currency = side.get("currency")
    expected = STABLECOINS if business_type == 2 else ("USD",)
    if currency not in expected:
        raise _bad(f"{name}.currency must be {' or '.join(expected)}")
    account_id = _req_str(side, "accountId") if external else str(body["accountId"])
    return _Side(balance_id, account_id, 2 if business_type == 2 else 0, str(currency))


# --------------------------------------------------------------------------------------------------
# handlers: (ctx) -> data; run under the state lock


@dataclass
class _Ctx:
    state: SandboxState
    params: dict[str, str]
    query: QueryParams
    body: dict[str, Any]
    account_id: str
    app: _SandboxDispatcher


Handler = Callable[[_Ctx], Any]


def _h_authorize(ctx: _Ctx) -> Any:
    code, timestamp = ctx.state.authorize(ctx.query.get("clientId") or "")
    return {"code": code, "timestamp": timestamp}


def _h_access_token(ctx: _Ctx) -> Any:
    client_id = _req_str(ctx.body, "clientId")
    code = _req_str(ctx.body, "code")
    secret = ctx.body.get("clientSecret")
    if secret is not None and not isinstance(secret, str):
        raise _bad("clientSecret must be a string")
    return ctx.state.exchange_code(client_id, code, secret)


def _h_refresh_token(ctx: _Ctx) -> Any:
    return ctx.state.refresh(_req_str(ctx.body, "clientId"), _req_str(ctx.body, "refreshToken"))


def _h_accounts(ctx: _Ctx) -> Any:
    return _paged(ctx.query, [ctx.state.account_view(ctx.state.accounts[seeds.ACCOUNT_ID])])


def _h_bins(ctx: _Ctx) -> Any:
    return _paged(ctx.query, [ctx.state.bin_view(b) for b in ctx.state.bins.values()])


def _h_cardholders(ctx: _Ctx) -> Any:
    holders = [h for h in ctx.state.cardholders.values() if h.account_id == ctx.account_id]
    return _paged(ctx.query, [ctx.state.cardholder_view(h) for h in holders])


def _h_wallets(ctx: _Ctx) -> Any:
    object_type = ctx.query.get("objectType")
    if object_type not in (None, "", "0", "1", "2"):
        raise _bad("objectType must be 0, 1 or 2")
    state = ctx.state
    items = []
    for balance in state.balances.values():
        if balance.account_id != ctx.account_id:
            continue
        if object_type and balance.object_type != int(object_type):
            continue
        if balance.card_id is not None and state.cards[balance.card_id].deleted:
            continue
        items.append(state.balance_view(balance))
    return _paged(ctx.query, items)


def _h_create_card(ctx: _Ctx) -> Any:
    body = ctx.body
    card_mode = _req_str(body, "cardMode")
    if card_mode != "VIRTUAL_CARD":
        raise _bad("cardMode must be VIRTUAL_CARD (the sandbox issues virtual cards only)")
    amount = _amount(body["amount"], "amount") if body.get("amount") is not None else None
    card = ctx.state.issue_prepaid_card(
        ctx.account_id,
        bin_id=_req_str(body, "binId"),
        cardholder_id=_req_str(body, "cardholderId"),
        reference_id=_req_str(body, "referenceId"),
        card_mode=card_mode,
        amount=amount,
        label=_opt_str(body, "label", max_len=50),
        use_type=_opt_str(body, "useType", max_len=64, default="default"),
    )
    return ctx.state.card_view(card)


def _h_card_list(ctx: _Ctx) -> Any:
    filters = (("cardId", "id"), ("referenceId", "reference_id"), ("cardholderId", "cardholder_id"))
    cards = [c for c in ctx.state.cards.values() if c.account_id == ctx.account_id and not c.deleted]
    for name, attr in (*filters, ("label", "label")):
        wanted = ctx.query.get(name)
        if wanted:
            cards = [c for c in cards if getattr(c, attr) == wanted]
    cards.reverse()  # newest first
    return _paged(ctx.query, [ctx.state.card_view(c) for c in cards])


def _h_card_summary(ctx: _Ctx) -> Any:
    return ctx.state.card_summary_view(ctx.state.get_card(ctx.account_id, ctx.params["cardId"]))


def _h_card_details(ctx: _Ctx) -> Any:
    card = ctx.state.get_card(ctx.account_id, ctx.params["cardId"])
    return ctx.state.card_details_view(card, seeds.CLIENT_SECRET)


def _h_private_info(ctx: _Ctx) -> Any:
    return {"accessToken": ctx.state.private_info_token(ctx.account_id, ctx.params["cardId"])}


def _card_transfer(ctx: _Ctx, direction: str) -> Any:
    card_id = _req_str(ctx.body, "cardId")
    client_transaction_id = _req_str(ctx.body, "clientTransactionId")
    amount = _req_amount(ctx.body)
    tx = ctx.state.card_transfer(
        ctx.account_id,
        direction=direction,
        card_id=card_id,
        client_transaction_id=client_transaction_id,
        amount=amount,
    )
    return ctx.state.transaction_view(tx)


def _h_transfer_in(ctx: _Ctx) -> Any:
    return _card_transfer(ctx, "in")


def _h_transfer_out(ctx: _Ctx) -> Any:
    return _card_transfer(ctx, "out")


def _set_status(ctx: _Ctx, status: str) -> Any:
    """Freeze / unfreeze; a change is announced with ``CARD.UPDATED`` (Interlace's event; the card as resource)."""
    before = ctx.state.get_card(ctx.account_id, ctx.params["cardId"]).status
    view = ctx.state.card_view(ctx.state.set_card_status(ctx.account_id, ctx.params["cardId"], status))
    if before != status:
        ctx.state.emit("CARD.UPDATED", view)
    return view


def _h_freeze(ctx: _Ctx) -> Any:
    return _set_status(ctx, "FROZEN")


def _h_unfreeze(ctx: _Ctx) -> Any:
    return _set_status(ctx, "ACTIVE")


def _h_delete_card(ctx: _Ctx) -> Any:
    card = ctx.state.delete_card(ctx.account_id, ctx.params["cardId"])
    ctx.state.emit("CARD.DELETED", {**ctx.state.card_view(card), "status": "DELETED"})
    return {"id": card.id, "status": "DELETED"}


def _h_velocity(ctx: _Ctx) -> Any:
    limit_type = _req_str(ctx.body, "transactionLimitsType")
    if limit_type not in LIMIT_TYPES:
        raise _bad(f"transactionLimitsType must be one of {', '.join(LIMIT_TYPES)}")
    raw_limit = ctx.body.get("amountLimit")
    if raw_limit is None and limit_type != "NA":
        raise _bad("amountLimit is required")
    limit = None if raw_limit is None else _amount(raw_limit, "amountLimit", allow_zero=True)
    card = ctx.state.set_velocity(ctx.account_id, ctx.params["cardId"], limit_type, limit)
    return ctx.state.card_view(card)


def _h_transaction_list(ctx: _Ctx) -> Any:
    query = ctx.query
    txs = [t for t in ctx.state.card_transactions.values() if t.account_id == ctx.account_id]
    for name, attr in (("cardId", "card_id"), ("id", "id"), ("clientTransactionId", "client_transaction_id")):
        wanted = query.get(name)
        if wanted:
            txs = [t for t in txs if getattr(t, attr) == wanted]
    tx_type = query.get("type")
    if tx_type:
        if not _INT_RE.fullmatch(tx_type) or int(tx_type) > 14:
            raise _bad("type must be a transaction type code 0-14")
        txs = [t for t in txs if t.type == int(tx_type)]
    status = query.get("status")
    if status:
        if status not in ("PENDING", "CLOSED", "FAIL"):
            raise _bad("status must be PENDING, CLOSED or FAIL")
        txs = [t for t in txs if t.status == status]
    start = _query_int(query, "startTime", -1, 0)
    end = _query_int(query, "endTime", -1, 0)
    if start >= 0:
        txs = [t for t in txs if t.create_time >= start]
    if end >= 0:
        txs = [t for t in txs if t.create_time <= end]
    txs.sort(key=lambda t: (t.create_time, t.seq), reverse=True)
    return _paged(query, [ctx.state.transaction_view(t) for t in txs])


def _business_transfer(ctx: _Ctx, *, external: bool) -> Any:
    body = ctx.body
    client_transaction_id = _req_str(body, "clientTransactionId")
    source = _side(body, "from", external=external)
    target = _side(body, "to", external=external)
    if source.business_type == 2:
        # a stablecoin amount (6 places on the wire) that becomes USD 1:1 (emulator: whole cents only)
        amount = _crypto_amount(body.get("amount"), "amount")
        if amount != amount.quantize(_CENT):
            raise _bad("amount must convert 1:1 to whole US cents (at most 2 decimals)")
        amount = amount.quantize(_CENT)
    else:
        amount = _req_amount(body)
    transfer = ctx.state.business_transfer(
        ctx.account_id,
        external=external,
        client_transaction_id=client_transaction_id,
        amount=amount,
        from_balance_id=source.balance_id,
        from_account_id=source.account_id,
        to_balance_id=target.balance_id,
        to_account_id=target.account_id,
        from_business_type=source.business_type,
        from_currency=source.currency,
        to_business_type=target.business_type,
        to_currency=target.currency,
    )
    return ctx.state.transfer_view(transfer)


def _h_transfer_internal(ctx: _Ctx) -> Any:
    return _business_transfer(ctx, external=False)


def _h_transfer_external(ctx: _Ctx) -> Any:
    return _business_transfer(ctx, external=True)


def _h_transfer_list(ctx: _Ctx) -> Any:
    items = [t for t in ctx.state.transfers.values() if t.account_id == ctx.account_id]
    for name, attr in (("id", "id"), ("clientTransactionId", "client_transaction_id")):
        wanted = ctx.query.get(name)
        if wanted:
            items = [t for t in items if getattr(t, attr) == wanted]
    items.sort(key=lambda t: (t.create_time, t.seq), reverse=True)
    return _paged(ctx.query, [ctx.state.transfer_view(t) for t in items])


def _simulate(ctx: _Ctx, account_id: str) -> Any:
    body = ctx.body
    currency = body.get("currency", "USD")
    if currency != "USD":
        raise _bad("currency must be USD")
    tx = ctx.state.simulate_auth(
        account_id,
        card_id=_req_str(body, "cardId"),
        amount=_req_amount(body),
        currency=currency,
        merchant_name=_opt_str(body, "merchantName", max_len=200),
        mcc=_opt_mcc(body),
        merchant_city=_opt_str(body, "merchantCity", max_len=100),
        merchant_country=_opt_str(body, "merchantCountry", max_len=3),
        three_ds=_opt_bool(body, "threeDs", "three_ds"),
        risk_decline=_opt_bool(body, "riskDecline", "risk_decline"),
    )
    return ctx.state.transaction_view(tx)


def _h_simulate_auth(ctx: _Ctx) -> Any:
    return _simulate(ctx, ctx.account_id)


def _spend_rule_id(raw: object) -> int | None:
    if raw is None:
        return None
    text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    if not _INT_RE.fullmatch(text):
        raise _bad("id must be the integer id of a spend control")
    return int(text)


def _set_spend_controls(ctx: _Ctx, *, allow_cards: bool) -> Any:
    body = ctx.body
    card_ids = _str_list(body, "cardIds")
    if not allow_cards and card_ids:
        raise _bad("cardIds belong to /cards/spend-controls; BIN spend controls take cardBinIds")
    rule = ctx.state.set_spend_rule(
        ctx.account_id,
        usage=_req_str(body, "usage"),
        keywords=_req_str(body, "keywords"),
        list_type=_req_str(body, "type"),
        rule_id=_spend_rule_id(body.get("id")),
        card_ids=card_ids,
        card_bin_ids=_str_list(body, "cardBinIds"),
    )
    return ctx.state.spend_rule_view(rule)


def _h_set_card_spend_controls(ctx: _Ctx) -> Any:
    return _set_spend_controls(ctx, allow_cards=True)


def _h_set_bin_spend_controls(ctx: _Ctx) -> Any:
    return _set_spend_controls(ctx, allow_cards=False)


def _h_list_spend_controls(ctx: _Ctx) -> Any:
    rules = ctx.state.spend_rules_for(
        ctx.account_id, card_id=ctx.query.get("cardId") or None, bin_id=ctx.query.get("cardBinId") or None
    )
    for name, attr in (("usage", "usage"), ("type", "list_type")):
        wanted = ctx.query.get(name)
        if wanted:
            rules = [r for r in rules if getattr(r, attr) == wanted]
    return _paged(ctx.query, [ctx.state.spend_rule_view(r) for r in rules])


def _h_delete_spend_control(ctx: _Ctx) -> Any:
    rule_id = _spend_rule_id(ctx.params["ruleId"])
    assert rule_id is not None
    rule = ctx.state.delete_spend_rule(ctx.account_id, rule_id)
    return {"id": rule.id, "deleted": True}


def _h_wallets_list(ctx: _Ctx) -> Any:
    master = ctx.query.get("master")
    if master not in (None, "", "true", "false"):
        raise _bad("master must be true or false")
    wallets = ctx.state.list_wallets(ctx.account_id, master=None if not master else master == "true")
    return _paged(ctx.query, [ctx.state.wallet_view(w) for w in wallets])


def _h_wallet_create(ctx: _Ctx) -> Any:
    wallet = ctx.state.create_wallet(
        ctx.account_id,
        reference_id=_req_str(ctx.body, "referenceId"),
        nickname=_opt_str(ctx.body, "nickname", max_len=100),
    )
    return ctx.state.wallet_view(wallet)


def _h_wallet_get(ctx: _Ctx) -> Any:
    return ctx.state.wallet_view(ctx.state.get_wallet(ctx.account_id, ctx.params["walletId"]))


def _h_wallet_address(ctx: _Ctx) -> Any:
    address = ctx.state.create_wallet_address(
        ctx.account_id,
        ctx.params["walletId"],
        currency=_req_str(ctx.body, "currency"),
        chain=_req_str(ctx.body, "chain"),
    )
    return {
        "id": address.id,
        "walletId": ctx.params["walletId"],
        "currency": address.currency,
        "chain": address.chain,
        "address": address.address,
        "createTime": str(address.create_time),
    }


# ---- control API ----------------------------------------------------------------------------------


def _h_ctl_state(ctx: _Ctx) -> Any:
    return ctx.state.snapshot()


def _h_ctl_reset(ctx: _Ctx) -> Any:
    ctx.state.reset()
    if ctx.app.webhook_url is not None:
        ctx.state.config.webhook_url = ctx.app.webhook_url
    return ctx.state.snapshot()


def _h_ctl_identity(ctx: _Ctx) -> Any:
    """Prove this is the interlace-mcp emulator: the nonce MAC'd with the secret of a client id it knows."""
    nonce = _req_str(ctx.body, "nonce", max_len=IDENTITY_NONCE_CHARS)
    if len(nonce) != IDENTITY_NONCE_CHARS or nonce.strip("0123456789abcdef"):
        raise _bad(f"nonce must be {IDENTITY_NONCE_CHARS} lower-case hex characters")
    client_id = _req_str(ctx.body, "clientId")
    if not hmac.compare_digest(client_id.encode(), seeds.CLIENT_ID.encode()):
        raise SandboxError(401, "401001", "unknown clientId")
    return {"emulator": IDENTITY_MARKER, "proof": identity_proof(seeds.CLIENT_SECRET, client_id, nonce)}


def _h_ctl_expire(ctx: _Ctx) -> Any:
    return {"expired": ctx.state.expire_access_tokens()}


def _h_ctl_config(ctx: _Ctx) -> Any:
    body, config = ctx.body, ctx.state.config
    ttl = body.get("token_ttl_seconds")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 10 * 365 * 86400:
            raise _bad("token_ttl_seconds must be a positive integer")
    fee = None
    if body.get("issuance_fee") is not None:
        fee = _amount(body["issuance_fee"], "issuance_fee", allow_zero=True)
    url = body.get("webhook_url")
    if "webhook_url" in body and url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _bad("webhook_url must be an http(s) URL or null")
    settle = body.get("settle_after_seconds")
    if settle is not None:
        if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 30 * 86400:
            raise _bad("settle_after_seconds must be a number of seconds from 0 to 2592000 (0 = at once)")
    risky = body.get("risk_decline_merchants")
    if risky is not None:
        if not isinstance(risky, list) or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in risky):
            raise _bad("risk_decline_merchants must be a list of merchant names")
    if ttl is not None:
        config.token_ttl_seconds = ttl
    if fee is not None:
        config.issuance_fee = fee
    if "webhook_url" in body:
        config.webhook_url = url
    if settle is not None:
        config.settle_after_seconds = float(settle)
    if risky is not None:
        config.risk_decline_merchants = list(risky)
    return config.view()


def _h_ctl_add_fault(ctx: _Ctx) -> Any:
    body = ctx.body
    path = body.get("path")
    if not isinstance(path, str):
        raise _bad("path is required (an API path like /open-api/v3/cards/transfer-in)")
    try:
        rule = ctx.state.add_fault(
            path,
            str(body.get("kind")),
            method=body.get("method"),
            status=body.get("status"),
            retry_after=body.get("retry_after"),
            delay_ms=body.get("delay_ms"),
            times=body.get("times"),
        )
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return rule.view()


def _h_ctl_list_faults(ctx: _Ctx) -> Any:
    return {"list": [r.view() for r in ctx.state.faults], "total": str(len(ctx.state.faults))}


def _h_ctl_clear_faults(ctx: _Ctx) -> Any:
    ctx.state.clear_faults()
    return {"list": [], "total": "0"}


def _h_ctl_simulate(ctx: _Ctx) -> Any:
    return _simulate(ctx, seeds.ACCOUNT_ID)


def _h_ctl_settle(ctx: _Ctx) -> Any:
    body = ctx.body
    card_id = _opt_str(body, "cardId", max_len=_MAX_ID_LEN) or None
    transaction_id = _opt_str(body, "transactionId", max_len=_MAX_ID_LEN) or None
    status = _opt_str(body, "status", default="CLOSED")
    settled = ctx.state.settle(seeds.ACCOUNT_ID, card_id=card_id, transaction_id=transaction_id, status=status)
    views = [ctx.state.transaction_view(t) for t in settled]
    return {"list": views, "total": str(len(views))}


def _h_ctl_deposit(ctx: _Ctx) -> Any:
    body = ctx.body
    currency = _opt_str(body, "currency", default="USDC")
    if currency not in STABLECOINS:
        raise _bad(f"currency must be one of {', '.join(STABLECOINS)}")
    deposit = ctx.state.deposit(
        seeds.ACCOUNT_ID,
        currency=currency,
        amount=_crypto_amount(body.get("amount"), "amount"),
        chain=_opt_str(body, "chain", default=seeds.DEPOSIT_CHAIN),
        wallet_id=_opt_str(body, "walletId", max_len=_MAX_ID_LEN) or None,
    )
    wallet = ctx.state.get_wallet(seeds.ACCOUNT_ID, deposit.wallet_id)
    return {"deposit": ctx.state.deposit_view(deposit), "wallet": ctx.state.wallet_view(wallet)}


def _h_ctl_expire_card(ctx: _Ctx) -> Any:
    return ctx.state.card_view(ctx.state.expire_card(seeds.ACCOUNT_ID, ctx.params["cardId"]))


# --------------------------------------------------------------------------------------------------
# routing


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    handler: Handler
    auth: bool = True  # needs x-access-token
    account: bool = True  # needs accountId
    account_optional: bool = False  # accountId may be left out (then: the client's own)
    mutating: bool = False  # save the state afterwards
    bare: bool = False  # legacy OAuth: no envelope
    control: bool = False  # /_sandbox/: no counters, faults, idempotency
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))


def _routes() -> list[_Route]:
    oauth = {"auth": False, "account": False, "mutating": True}
    ctl = {"auth": False, "account": False, "control": True}
    return [
        _Route("GET", f"{V3}/oauth/authorize", _h_authorize, **oauth),
        _Route("POST", f"{V3}/oauth/access-token", _h_access_token, **oauth),
        _Route("POST", f"{V3}/oauth/refresh-token", _h_refresh_token, **oauth),
        _Route("GET", "/open-api/oauth/authorize", _h_authorize, bare=True, **oauth),
        _Route("POST", "/open-api/oauth/access-token", _h_access_token, bare=True, **oauth),
        _Route("POST", "/open-api/oauth/refresh-token", _h_refresh_token, bare=True, **oauth),
        _Route("GET", f"{V3}/accounts", _h_accounts, account=False),
        _Route("GET", f"{V3}/card/bins", _h_bins),
        _Route("GET", f"{V3}/cardholders", _h_cardholders),
        _Route("GET", f"{V3}/cards/wallets", _h_wallets),
        _Route("POST", f"{V3}/prepaid-card", _h_create_card, mutating=True),
        _Route("GET", f"{V3}/card-list", _h_card_list),
        _Route("GET", f"{V3}/cards/transaction-list", _h_transaction_list),
        _Route("POST", f"{V3}/cards/transfer-in", _h_transfer_in, mutating=True),
        _Route("POST", f"{V3}/cards/transfer-out", _h_transfer_out, mutating=True),
        _Route("POST", f"{V3}/cards/spend-controls", _h_set_card_spend_controls, mutating=True),
        _Route("POST", f"{V3}/card/bins/spend-controls", _h_set_bin_spend_controls, mutating=True),
        _Route("GET", f"{V3}/cards/spend-controls", _h_list_spend_controls),
        _Route("DELETE", f"{V3}/cards/spend-controls/{{ruleId}}", _h_delete_spend_control, mutating=True),
        _Route("GET", f"{V3}/cards/{{cardId}}/card-summary", _h_card_summary),
        _Route("GET", f"{V3}/cards/{{cardId}}/private-info/access-token", _h_private_info, mutating=True),
        _Route("POST", f"{V3}/cards/{{cardId}}/freeze", _h_freeze, mutating=True),
        _Route("POST", f"{V3}/cards/{{cardId}}/unfreeze", _h_unfreeze, mutating=True),
        _Route("PUT", f"{V3}/cards/{{cardId}}/velocity-control", _h_velocity, mutating=True),
        _Route("GET", f"{V3}/cards/{{cardId}}", _h_card_details),
        _Route("DELETE", f"{V3}/cards/{{cardId}}", _h_delete_card, mutating=True),
        _Route("POST", f"{V3}/business/transfer/internal", _h_transfer_internal, mutating=True),
        _Route("POST", f"{V3}/business/transfer/external", _h_transfer_external, mutating=True),
        _Route("GET", f"{V3}/business/transfers", _h_transfer_list),
        _Route("POST", f"{V3}/vcc/simulate/auth", _h_simulate_auth, mutating=True),
        _Route("GET", f"{V3}/cryptoconnect/wallets", _h_wallets_list),
        _Route("POST", f"{V3}/cryptoconnect/wallets", _h_wallet_create, mutating=True),
        _Route("GET", f"{V3}/cryptoconnect/wallets/{{walletId}}", _h_wallet_get, account_optional=True),
        _Route("POST", f"{V3}/cryptoconnect/wallets/{{walletId}}/addresses", _h_wallet_address, mutating=True),
        _Route("GET", "/_sandbox/state", _h_ctl_state, **ctl),
        _Route("POST", "/_sandbox/identity", _h_ctl_identity, **ctl),
        _Route("POST", "/_sandbox/reset", _h_ctl_reset, mutating=True, **ctl),
        _Route("POST", "/_sandbox/tokens/expire", _h_ctl_expire, mutating=True, **ctl),
        _Route("POST", "/_sandbox/config", _h_ctl_config, mutating=True, **ctl),
        _Route("GET", "/_sandbox/faults", _h_ctl_list_faults, **ctl),
        _Route("POST", "/_sandbox/faults", _h_ctl_add_fault, **ctl),
        _Route("DELETE", "/_sandbox/faults", _h_ctl_clear_faults, **ctl),
        _Route("POST", "/_sandbox/simulate-purchase", _h_ctl_simulate, mutating=True, **ctl),
        _Route("POST", "/_sandbox/settle", _h_ctl_settle, mutating=True, **ctl),
        _Route("POST", "/_sandbox/deposit", _h_ctl_deposit, mutating=True, **ctl),
        _Route("POST", "/_sandbox/cards/{cardId}/expire", _h_ctl_expire_card, mutating=True, **ctl),
    ]


_ROUTES: Final = _routes()


def _match(method: str, path: str) -> tuple[_Route, dict[str, str]] | str:
    """The route and its path parameters, or "404"/"405"."""
    path_matched = False
    for route in _ROUTES:
        m = route.pattern.fullmatch(path)
        if m is None:
            continue
        if route.method == method:
            return route, m.groupdict()
        path_matched = True
    return "405" if path_matched else "404"


# --------------------------------------------------------------------------------------------------
# responses


def _envelope(data: Any, code: str = "000000", message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def _error(route: _Route | None, status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if route is None or not route.bare:
        body["data"] = None
    return JSONResponse(body, status_code=status, headers=headers or None)


def _from_error(route: _Route | None, exc: SandboxError) -> JSONResponse:
    return _error(route, exc.http_status, exc.code, exc.message)


async def _drop(send: Send) -> NoReturn:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
        }
    )
    raise SandboxConnectionDropped("injected connection drop")


class _SandboxDispatcher:
    """The raw ASGI endpoint behind the catch-all route."""

    def __init__(
        self,
        state: SandboxState,
        state_path: Path | None,
        webhook_url: str | None,
        webhook_transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.state = state
        self.state_path = state_path
        self.webhook_url = webhook_url
        self.webhook_transport = webhook_transport
        self.lock = anyio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._handle(request, send)
        await response(scope, receive, send)

    def _save(self) -> None:
        if self.state_path is not None:
            self.state.save(self.state_path)

    async def _handle(self, request: Request, send: Send) -> JSONResponse:
        method, path = request.method.upper(), request.url.path
        matched = _match(method, path)
        if matched == "404":
            return _error(None, 404, "404000", f"no such endpoint: {method} {path}")
        if matched == "405":
            return _error(None, 405, "405001", f"method {method} not allowed on {path}")
        assert not isinstance(matched, str)
        route, params = matched
        state = self.state

        fault = None
        if not route.control:
            state.count_request(f"{method} {route.template}")
            fault = state.take_fault(method, path)
        if fault is not None:
            logger.info("sandbox: injecting fault %s on %s %s", fault.kind, method, route.template)
            if fault.kind == "error":
                return _error(route, fault.effective_status, "500001", "injected server error")
            if fault.kind == "rate_limit":
                retry_after = str(1 if fault.retry_after is None else fault.retry_after)
                return _error(route, 429, "429001", "too many requests", **{"Retry-After": retry_after})
            if fault.kind == "reset":
                await _drop(send)

        try:
            if route.auth and not state.access_token_valid(request.headers.get("x-access-token")):
                raise SandboxError(401, "401003", "access token invalid or expired")
            body = await self._read_body(request) if method in _BODY_METHODS else {}
            account_id = self._account_id(route, method, request.query_params, body)
        except SandboxError as exc:
            return _from_error(route, exc)

        idem_scope = None
        key = request.headers.get("idempotency-key")
        if key and method in _BODY_METHODS and route.auth and isinstance(body.get("accountId"), str):
            scope = (body["accountId"], key, path)
            try:
                stored = state.idempotency_begin(scope)
            except SandboxError as exc:
                return _from_error(route, exc)
            if stored is not None:
                logger.debug("sandbox: idempotent replay on %s %s", method, route.template)
                return JSONResponse(_envelope(json.loads(stored)))
            idem_scope = scope

        ctx = _Ctx(state, params, request.query_params, body, account_id, self)
        try:
            if fault is not None and fault.kind in ("latency", "timeout"):
                await anyio.sleep(fault.delay_seconds)
            async with self.lock:
                # authorizations whose settlement time has come clear before anything else is read
                settled = state.settle_due()
                try:
                    data = route.handler(ctx)
                except SandboxError as exc:
                    response = _from_error(route, exc)
                else:
                    if idem_scope is not None:
                        state.idempotency_finish(idem_scope, json.dumps(data))
                        idem_scope = None
                    response = JSONResponse(data if route.bare else _envelope(data))
                finally:
                    if route.mutating or settled:
                        self._save()
                    outbox = state.take_outbox()
        finally:
            if idem_scope is not None:
                state.idempotency_abort(idem_scope)

        if fault is not None and fault.kind == "fail_after_commit":
            if fault.status == 0:
                await self._deliver(outbox)  # the change happened: its notifications still go out
                await _drop(send)
            response = _error(route, fault.effective_status, "500001", "injected failure after commit")
        if outbox:
            # after the response is sent (in-process: before the caller sees it), in emission order
            response.background = BackgroundTask(self._deliver, outbox)
        return response

    async def tick(self) -> int:
        """Settle what is due and deliver pending webhooks now (the ticker's step); returns how many settled."""
        async with self.lock:
            settled = self.state.settle_due()
            if settled:
                self._save()
            outbox = self.state.take_outbox()
        await self._deliver(outbox)
        return len(settled)

    async def _deliver(self, envelopes: list[WebhookEnvelope]) -> None:
        """Hand webhooks to the sinks and the configured URL; never raises."""
        await self.state.deliver_webhooks(envelopes, transport=self.webhook_transport)

    @staticmethod
    async def _read_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _bad("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _bad("request body must be a JSON object")
        return body

    @staticmethod
    def _account_id(route: _Route, method: str, query: QueryParams, body: dict[str, Any]) -> str:
        if not route.account:
            return ""
        value = body.get("accountId") if method in _BODY_METHODS else query.get("accountId")
        if value is None and route.account_optional:
            return seeds.ACCOUNT_ID
        if not isinstance(value, str) or not value:
            raise SandboxError(400, "400001", "accountId is required")
        if value != seeds.ACCOUNT_ID:
            raise SandboxError(403, "403001", "accountId does not belong to this client")
        return value


def create_sandbox_app(
    state: SandboxState | None = None,
    *,
    state_path: Path | None = None,
    clock: Callable[[], float] | None = None,
    webhook_url: str | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    webhook_sink: WebhookSink | None = None,
    tick_seconds: float | None = None,
) -> Starlette:
    """Build the emulator app. ``app.state.sandbox`` is the live :class:`SandboxState`.

    With ``state_path`` the state is loaded from that file when it exists (unless ``state`` is
    given) and saved after every mutating request. ``webhook_transport`` lets tests capture
    webhook deliveries without a real receiver; ``webhook_sink`` (see
    :meth:`SandboxState.add_webhook_sink`) receives every signed webhook in-process, without HTTP.
    ``tick_seconds`` (a served emulator: ``interlace-mcp sandbox``) settles due authorizations and
    delivers their webhooks that often even when no request comes in; without it, settlement happens
    on the next request. ``app.state.sandbox_tick`` runs one such step on demand.
    """
    if state is None:
        if state_path is not None and Path(state_path).exists():
            state = SandboxState.load(Path(state_path), clock=clock)
        else:
            state = SandboxState(clock=clock)
    elif clock is not None:
        state.clock = clock
    if webhook_url is not None:
        state.config.webhook_url = webhook_url
    if webhook_sink is not None:
        state.add_webhook_sink(webhook_sink)
    dispatcher = _SandboxDispatcher(
        state, Path(state_path) if state_path is not None else None, webhook_url, webhook_transport
    )
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if tick_seconds is None:
            yield
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_ticker, dispatcher, tick_seconds)
            yield
            tg.cancel_scope.cancel()

    app = Starlette(routes=[Route("/{path:path}", dispatcher, methods=methods)], lifespan=lifespan)
    app.state.sandbox = state
    app.state.sandbox_tick = dispatcher.tick
    return app


async def _ticker(dispatcher: _SandboxDispatcher, seconds: float) -> None:
    while True:
        await anyio.sleep(seconds)
        try:
            await dispatcher.tick()
        except Exception as exc:  # the ticker must outlive one bad step
            logger.warning("sandbox: settlement tick failed (%s)", type(exc).__name__)
