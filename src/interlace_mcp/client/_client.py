"""The async Interlace Open API v3 client (wire format: ``docs/wire-contract.md``).

One :class:`InterlaceClient` owns one ``httpx.AsyncClient`` for its lifetime. It authenticates with
the OAuth code flow, sends the access token as ``x-access-token``, renews it ahead of expiry (one
renewal shared by every concurrent caller), unwraps the ``{code, message, data}`` envelope, and
raises the typed errors of :mod:`._errors`.

Retries are safe for money: only connection errors, timeouts, 429, 5xx and 409 "transaction in
progress" are retried, and every retry sends the identical body (same ``clientTransactionId``) and
the same ``Idempotency-Key``. Amounts go on the wire as 2-place decimal strings, never floats.
Logs (logger ``interlace_mcp.client``, DEBUG) carry method, path, status and attempt only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import quote, urlencode
from urllib.request import getproxies

import anyio
import httpx
import pydantic

from interlace_mcp import __version__
from interlace_mcp.metrics import Metrics
from interlace_mcp.money import MAX_AMOUNT, AmountError, format_amount, to_minor

from ._adapters import STABLECOINS, DepositAddressAdapter, SpendControlsAdapter
from ._crypto import CardDecryptionError, decrypt_card_field
from ._errors import (
    AuthenticationError,
    InProgressError,
    InterlaceAPIError,
    InterlaceConnectionError,
    InterlaceError,
    InterlaceTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
    error_for,
    sanitize_message,
)
from ._models import (
    Account,
    Balance,
    Card,
    CardBin,
    CardDetails,
    Cardholder,
    CardSpendControls,
    CardSummary,
    CardTransaction,
    CryptoDeposit,
    CryptoWallet,
    Page,
    SpendControlRule,
    Transfer,
    WalletAddress,
)
from ._waits import WAIT_NOTICE_AFTER, WAIT_NOTICE_EVERY, UpstreamWait, current_listener, tell

__all__ = ["API_PREFIX", "InterlaceClient"]

logger = logging.getLogger("interlace_mcp.client")

#: Every path the client calls lives under this prefix.
API_PREFIX = "/open-api/v3"

_SUCCESS_CODES = frozenset({"000000", "0"})
# Ids that go into a URL path: UUIDs and snowflakes. Anything else ("../", "?", "/") could
# redirect the request to another endpoint, so it is refused before sending.
_PATH_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Errors worth another attempt; all other 4xx are final.
_RETRYABLE = (RateLimitError, ServerError, InProgressError)
_BASE_DELAY = 0.5
# A Retry-After beyond this is not honoured literally; the capped backoff is used instead.
_MAX_RETRY_AFTER = 60.0
_DEFAULT_TOKEN_LIFETIME = 86400
#: Connection pools to Interlace, and connections each keeps open between calls (see _ShardedTransport).
_POOLS = 32
_POOL_CONNECTIONS = 4
#: Parsed URLs kept (httpx.URL is immutable); the dict is emptied when full.
_URL_CACHE = 1024
_MCC_RE = re.compile(r"[0-9]{4}")
_STABLECOINS = STABLECOINS
_WALLET_PLACES = Decimal("0.000001")

M = TypeVar("M", bound=pydantic.BaseModel)


class _ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread round-robin over a few small connection pools.

    httpcore checks every idle connection of its pool on each request (one socket poll, and under anyio a
    ``getpeername``, each): its cost grows with the pool. One pool of 128 connections cost 8 ms of CPU per
    request with 50 concurrent callers here; one of httpx's default 20 kept alive made 50 agents close and
    re-open connections on most calls. Eight pools of 16 keep every connection and each check small.
    (Not used when the environment names a proxy: httpx's own transport then routes through it.)
    """

    def __init__(self, pools: int = _POOLS, connections: int = _POOL_CONNECTIONS) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        tls = httpx.create_ssl_context()  # one for all pools: each costs a CA bundle load
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(pools)]
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


@dataclass(frozen=True, repr=False)
class _Token:
    access: str
    refresh: str | None
    expires_at: float
    lifetime: float

    def __repr__(self) -> str:
        return f"_Token(expires_at={self.expires_at!r})"


class InterlaceClient:
    """Async client for the Interlace Open API v3. Use as ``async with InterlaceClient(...)``."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        account_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        max_retries: int = 3,
        backoff: bool = True,
        max_backoff: float = 8.0,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        base = base_url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        self._base_url = base
        self._client_id = client_id
        self._client_secret = client_secret
        self._account_id = account_id
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._headers = {"accept": "application/json", "user-agent": f"interlace-mcp/{__version__}"}
        self._timeout = httpx.Timeout(timeout).as_dict()
        if transport is None and getproxies():
            # The environment names a proxy: httpx's client routes through it (honouring NO_PROXY).
            self._http: httpx.AsyncClient | None = httpx.AsyncClient(
                base_url=base, timeout=httpx.Timeout(timeout), headers=self._headers, follow_redirects=False
            )
            self._transport: httpx.AsyncBaseTransport | None = None
        else:
            # Requests go straight to the transport: no cookie jar, redirects or auth flow to run per request
            # (Interlace sets no cookies and this client follows no redirects).
            self._http = None
            self._transport = transport if transport is not None else _ShardedTransport()
        self._urls: dict[str, httpx.URL] = {}
        self._token: _Token | None = None
        # Single flight: whoever holds the lock renews; the others re-check and reuse the result.
        self._auth_lock = anyio.Lock()
        self._account_lock = anyio.Lock()
        self._infinity_balance_id: str | None = None
        self._spend_controls = SpendControlsAdapter(self._api, lambda d, m, p: _parse(SpendControlRule, d, m, p))
        self._deposit_addresses = DepositAddressAdapter(self._api, lambda d, m, p: _parse(WalletAddress, d, m, p))

    def __repr__(self) -> str:
        return f"InterlaceClient(base_url={self._base_url!r}, client_id={self._client_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pools."""
        if self._http is not None:
            await self._http.aclose()
        if self._transport is not None:
            await self._transport.aclose()

    async def _request(
        self, method: str, url: str, *, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        """One HTTP exchange, its body read; raises httpx's transport errors as httpx would."""
        parsed = self._urls.get(url)
        if parsed is None:
            # Parsed once per distinct URL (a card's reads repeat theirs): parsing cost ~35 us per request.
            parsed = httpx.URL(url)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[url] = parsed
        if self._http is not None:
            return await self._http.request(method, parsed, content=content, headers=headers)
        assert self._transport is not None
        request = httpx.Request(
            method, parsed, headers={**self._headers, **headers}, content=content, extensions={"timeout": self._timeout}
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    # ------------------------------------------------------------------------------------------
    # Account

    @property
    def account_id(self) -> str:
        """The account every call acts on (known after :meth:`ensure_account_id`)."""
        if self._account_id is None:
            raise RuntimeError("account id not known yet; await ensure_account_id() first")
        return self._account_id

    async def ensure_account_id(self) -> str:
        """Return the configured account id, else discover it as the first of ``GET /accounts``."""
        if self._account_id is not None:
            return self._account_id
        async with self._account_lock:
            if self._account_id is None:
                path = "/accounts"
                data = await self._authed("GET", path)
                items, _ = _list_payload(data, "GET", path)
                if not items:
                    raise NotFoundError(
                        "no Interlace account is visible to these credentials", path=_full(path), method="GET"
                    )
                self._account_id = _parse(Account, items[0], "GET", path).id
            return self._account_id

    # ------------------------------------------------------------------------------------------
    # Reference data and balances

    async def list_bins(self) -> list[CardBin]:
        """List the card BINs (products) available to the account."""
        return await self._list(CardBin, "/card/bins")

    async def list_cardholders(self) -> list[Cardholder]:
        """List the account's cardholders."""
        return await self._list(Cardholder, "/cardholders")

    async def list_balances(self, object_type: int = 0) -> list[Balance]:
        """List balance objects; ``object_type`` 0 = Infinity account, 2 = prepaid cards."""
        return await self._list(Balance, "/cards/wallets", {"objectType": object_type})

    async def infinity_balance(self) -> Balance:
        """Return the account's (USD) Infinity balance, which funds cards and transfers."""
        balances = await self.list_balances(0)
        if not balances:
            raise NotFoundError("the account has no Infinity balance", path=_full("/cards/wallets"), method="GET")
        balance = next((b for b in balances if (b.currency or "").upper() == "USD"), balances[0])
        self._infinity_balance_id = balance.id
        return balance

    # ------------------------------------------------------------------------------------------
    # Cards

    async def create_prepaid_card(
        self,
        *,
        bin_id: str,
        cardholder_id: str,
        reference_id: str,
        amount: Decimal | None,
        label: str | None,
        idempotency_key: str,
    ) -> Card:
        """Issue a virtual prepaid card, optionally loaded with ``amount`` from the Infinity balance."""
        body: dict[str, object] = {
            "binId": bin_id,
            "cardholderId": cardholder_id,
            "referenceId": reference_id,
            "cardMode": "VIRTUAL_CARD",
        }
        if amount is not None:
            body["amount"] = _wire_amount(amount)
        if label is not None:
            body["label"] = label
        path = "/prepaid-card"
        data = await self._api("POST", path, body=body, idempotency_key=_require_key(idempotency_key))
        return _parse(Card, data, "POST", path)

    async def list_cards(
        self,
        *,
        card_id: str | None = None,
        reference_id: str | None = None,
        label: str | None = None,
        page: int = 1,
        limit: int = 100,
    ) -> Page[Card]:
        """List the account's cards (deleted cards are not listed), optionally filtered."""
        params = _params(cardId=card_id, referenceId=reference_id, label=label, page=page, limit=limit)
        return await self._page(Card, "/card-list", params)

    async def get_card(self, card_id: str) -> Card:
        """Fetch one card (via the card list); NotFoundError if it does not exist or is deleted."""
        result = await self.list_cards(card_id=card_id, limit=10)
        for card in result.items:
            if card.id == card_id:
                return card
        raise NotFoundError("card not found", code=None, path=_full("/card-list"), method="GET")

    async def get_card_summary(self, card_id: str) -> CardSummary:
        """Fetch the card's balance, spending statistics and velocity control."""
        path = f"/cards/{_path_id(card_id, 'card_id')}/card-summary"
        data = await self._api("GET", path)
        return _parse(CardSummary, data, "GET", path)

    async def get_card_details(self, card_id: str) -> CardDetails:
        """Fetch the card with its PAN and CVV decrypted (held as SecretStr; see ``reveal()``)."""
        path = f"/cards/{_path_id(card_id, 'card_id')}"
        data = _as_object(await self._api("GET", path), "GET", path)
        fields = dict(data)
        try:
            for name in ("cardNumber", "cvv"):
                value = fields.get(name)
                if not isinstance(value, str):
                    raise CardDecryptionError(f"the response has no encrypted {name}")
                fields[name] = decrypt_card_field(value, self._client_secret)
        except CardDecryptionError as exc:
            raise InterlaceAPIError(
                f"card details could not be decrypted: {exc}", path=_full(path), method="GET"
            ) from None
        return _parse(CardDetails, fields, "GET", path)

    async def get_private_info_token(self, card_id: str) -> str:
        """Get a one-time (5 minute) token for Interlace's card-details widget."""
        path = f"/cards/{_path_id(card_id, 'card_id')}/private-info/access-token"
        data = _as_object(await self._api("GET", path), "GET", path)
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise InterlaceAPIError("the response has no accessToken", path=_full(path), method="GET")
        return token

    async def transfer_in(
        self, *, card_id: str, amount: Decimal, client_transaction_id: str, idempotency_key: str
    ) -> CardTransaction:
        """Load a prepaid card from the Infinity balance."""
        return await self._card_transfer("/cards/transfer-in", card_id, amount, client_transaction_id, idempotency_key)

    async def transfer_out(
        self, *, card_id: str, amount: Decimal, client_transaction_id: str, idempotency_key: str
    ) -> CardTransaction:
        """Unload a prepaid card back to the Infinity balance."""
        return await self._card_transfer("/cards/transfer-out", card_id, amount, client_transaction_id, idempotency_key)

    async def freeze_card(self, card_id: str) -> Card:
        """Freeze a card (new authorizations are declined); freezing a frozen card is fine."""
        return await self._card_action(card_id, "freeze")

    async def unfreeze_card(self, card_id: str) -> Card:
        """Unfreeze a card."""
        return await self._card_action(card_id, "unfreeze")

    async def delete_card(self, card_id: str) -> None:
        """Delete (cancel) a card for good; its remaining balance returns to the Infinity balance."""
        path = f"/cards/{_path_id(card_id, 'card_id')}"
        await self._api("DELETE", path)

    async def set_velocity_control(
        self, card_id: str, *, limit_type: str, amount: Decimal, idempotency_key: str | None = None
    ) -> Card:
        """Set the card's spending limit (``limit_type`` DAY/WEEK/.../LIFETIME/TRANSACTION/NA)."""
        path = f"/cards/{_path_id(card_id, 'card_id')}/velocity-control"
        body: dict[str, object] = {
            "transactionLimitsType": limit_type,
            "amountLimit": _wire_amount(amount, allow_zero=True),
        }
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        data = await self._api("PUT", path, body=body, idempotency_key=_require_key(key))
        return _parse(Card, data, "PUT", path)

    async def list_card_transactions(
        self,
        *,
        card_id: str | None = None,
        client_transaction_id: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> Page[CardTransaction]:
        """List card transactions, newest first."""
        params = _params(cardId=card_id, clientTransactionId=client_transaction_id, page=page, limit=limit)
        return await self._page(CardTransaction, "/cards/transaction-list", params)

    async def simulate_authorization(
        self,
        *,
        card_id: str,
        amount: Decimal,
        currency: str = "USD",
        merchant_name: str | None = None,
        mcc: str | None = None,
        three_ds: bool = False,
        risk_decline: bool = False,
    ) -> CardTransaction:
        """Sandbox only: simulate a card purchase (PENDING when approved, FAIL with a decline code if not).

        ``mcc`` is the merchant category (4 digits); ``three_ds`` makes the issuer send a
        ``CARD.3DS.OTP`` webhook first; ``risk_decline`` makes the issuer's risk checks decline it.
        """
        body: dict[str, object] = {"cardId": card_id, "amount": _wire_amount(amount), "currency": currency}
        if merchant_name is not None:
            body["merchantName"] = merchant_name
        if mcc is not None:
            if not isinstance(mcc, str) or not _MCC_RE.fullmatch(mcc):
                raise ValidationError("mcc must be a 4-digit merchant category code")
            body["mcc"] = mcc
        if three_ds:
            body["threeDs"] = True
        if risk_decline:
            body["riskDecline"] = True
        path = "/vcc/simulate/auth"
        data = await self._api("POST", path, body=body, idempotency_key=str(uuid.uuid4()))
        return _parse(CardTransaction, data, "POST", path)

    # ------------------------------------------------------------------------------------------
    # Card spend controls (wire format partly guessed: see SpendControlsAdapter)

    async def get_card_spend_controls(self, card_id: str) -> CardSpendControls:
        """The merchant-category allow / block lists in force on a card (its own, its BIN's, the account's)."""
        return await self._spend_controls.get(_path_id(card_id, "card_id"))

    async def set_card_mcc_controls(
        self, card_id: str, *, allow: list[str] | tuple[str, ...] = (), block: list[str] | tuple[str, ...] = ()
    ) -> CardSpendControls:
        """Make the card's own MCC lists exactly ``allow`` (whitelist) and ``block`` (blacklist).

        Empty ``allow`` = no allow list (every category not blocked is allowed). Safe to repeat.
        """
        return await self._spend_controls.set_mcc_lists(_path_id(card_id, "card_id"), allow=allow, block=block)

    # ------------------------------------------------------------------------------------------
    # CryptoConnect wallets

    async def list_crypto_wallets(self, *, master: bool | None = None) -> list[CryptoWallet]:
        """The account's CryptoConnect wallets (stablecoin balances and deposit addresses)."""
        params: dict[str, str | int] = {"limit": 100}
        if master is not None:
            params["master"] = "true" if master else "false"
        return await self._list(CryptoWallet, "/cryptoconnect/wallets", params)

    async def create_crypto_wallet(self, *, reference_id: str, nickname: str = "") -> CryptoWallet:
        """A new CryptoConnect wallet of this account (MoR mode; ``referenceId`` is yours, unique per account)."""
        body: dict[str, object] = {"referenceId": _require_text(reference_id, "reference_id"), "nickname": nickname}
        data = await self._api("POST", "/cryptoconnect/wallets", body=body, idempotency_key=str(uuid.uuid4()))
        return _parse(CryptoWallet, data, "POST", "/cryptoconnect/wallets")

    async def get_crypto_wallet(self, wallet_id: str) -> CryptoWallet:
        """One CryptoConnect wallet."""
        path = f"/cryptoconnect/wallets/{_path_id(wallet_id, 'wallet_id')}"
        data = await self._api("GET", path)
        return _parse(CryptoWallet, data, "GET", path)

    async def default_crypto_wallet(self) -> CryptoWallet:
        """The master wallet (else the first one); NotFoundError when the account has none."""
        wallets = await self.list_crypto_wallets()
        if not wallets:
            raise NotFoundError(
                "the account has no CryptoConnect wallet", path=_full("/cryptoconnect/wallets"), method="GET"
            )
        return next((w for w in wallets if w.master), wallets[0])

    async def get_deposit_address(
        self, *, currency: str = "USDC", chain: str = "ETH", wallet_id: str | None = None, create: bool = True
    ) -> WalletAddress:
        """Where to send ``currency`` on ``chain`` for this account: an existing address of the wallet, else
        (``create``) a new one (creation path guessed: see DepositAddressAdapter). NotFoundError if none.
        """
        currency = _require_text(currency, "currency").upper()
        chain = _require_text(chain, "chain").upper()
        wallet = await (self.get_crypto_wallet(wallet_id) if wallet_id else self.default_crypto_wallet())
        found = self._deposit_addresses.find(wallet, currency=currency, chain=chain)
        if found is not None:
            return found
        if not create:
            raise NotFoundError(f"the wallet has no {currency} address on {chain}", method="GET")
        return await self._deposit_addresses.create(
            wallet.id, currency=currency, chain=chain, idempotency_key=str(uuid.uuid4())
        )

    async def transfer_from_wallet(
        self,
        *,
        amount: Decimal,
        currency: str,
        client_transaction_id: str,
        idempotency_key: str,
        wallet_id: str | None = None,
        to_balance_id: str | None = None,
    ) -> Transfer:
        """Fund the Infinity account from a CryptoConnect wallet: ``amount`` ``currency`` (USDC/USDT) in,
        the same amount of USD out (1:1), as an internal business transfer (``businessType`` 2 -> 0).

        Money-movement semantics as :meth:`create_transfer`: keyed by ``client_transaction_id`` (look it
        up with :meth:`list_transfers`), retried with the same body and Idempotency-Key; an error with
        ``unknown_outcome`` means look it up before trying again. Insufficient wallet balance raises
        InsufficientFundsError (nothing moved).
        """
        currency = _require_text(currency, "currency").upper()
        if currency not in _STABLECOINS:
            raise ValidationError(f"currency must be one of {', '.join(_STABLECOINS)}")
        wire_amount = _wire_amount(amount)
        if wallet_id is None:
            wallet_id = (await self.default_crypto_wallet()).id
        if to_balance_id is None:
            if self._infinity_balance_id is None:
                await self.infinity_balance()
            to_balance_id = self._infinity_balance_id
        assert to_balance_id is not None  # set by infinity_balance()
        body: dict[str, object] = {
            "clientTransactionId": _require_text(client_transaction_id, "client_transaction_id"),
            "amount": wire_amount,
            "from": {"businessType": 2, "id": _path_id(wallet_id, "wallet_id"), "currency": currency},
            "to": {"businessType": 0, "id": to_balance_id, "currency": "USD"},
        }
        path = "/business/transfer/internal"
        data = await self._api("POST", path, body=body, idempotency_key=_require_key(idempotency_key))
        return _parse(Transfer, data, "POST", path)

    # ------------------------------------------------------------------------------------------
    # Emulator control API (/_sandbox/...): sandbox only, for tests and the CLI

    async def sandbox_settle(
        self, *, card_id: str | None = None, transaction_id: str | None = None, status: str = "CLOSED"
    ) -> list[CardTransaction]:
        """Emulator only: settle pending authorizations now (one, a card's, or all); FAIL reverses them."""
        body: dict[str, object] = {"status": status}
        if card_id is not None:
            body["cardId"] = card_id
        if transaction_id is not None:
            body["transactionId"] = transaction_id
        items, _ = _list_payload(await self._control("POST", "/settle", body), "POST", "/_sandbox/settle")
        return [_parse(CardTransaction, item, "POST", "/_sandbox/settle") for item in items]

    async def sandbox_deposit(
        self, *, amount: Decimal, currency: str = "USDC", chain: str | None = None, wallet_id: str | None = None
    ) -> CryptoDeposit:
        """Emulator only: simulate an on-chain deposit into the wallet (default: the master wallet)."""
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise ValidationError("amount must be a positive Decimal")
        if amount != amount.quantize(_WALLET_PLACES) or amount > MAX_AMOUNT:
            raise ValidationError("amount must have at most 6 decimals and be at most 999999999.99")
        body: dict[str, object] = {"amount": f"{amount:f}", "currency": currency}
        if chain is not None:
            body["chain"] = chain
        if wallet_id is not None:
            body["walletId"] = wallet_id
        data = _as_object(await self._control("POST", "/deposit", body), "POST", "/_sandbox/deposit")
        return _parse(CryptoDeposit, data.get("deposit"), "POST", "/_sandbox/deposit")

    async def sandbox_expire_card(self, card_id: str) -> Card:
        """Emulator only: move the card's expiry into the past (authorizations then decline as expired)."""
        path = f"/cards/{_path_id(card_id, 'card_id')}/expire"
        return _parse(Card, await self._control("POST", path, {}), "POST", "/_sandbox" + path)

    async def sandbox_identity(self, nonce: str) -> dict[str, object]:
        """Emulator only: ask the upstream to prove it is the interlace-mcp emulator for ``nonce`` (its answer's
        ``data``: ``emulator`` and ``proof``; the caller checks it). Sends the nonce and the client id, never the
        secret; anything but the emulator answers with an error (Interlace serves no ``/_sandbox/``)."""
        body = {"nonce": nonce, "clientId": self._client_id}
        return _as_object(await self._control("POST", "/identity", body), "POST", "/_sandbox/identity")

    async def _control(self, method: str, path: str, body: Mapping[str, object]) -> object:
        # No token, no accountId: the control API is the emulator's own, never Interlace's.
        return await self._send(method, path, body=body, prefix="/_sandbox")

    # ------------------------------------------------------------------------------------------
    # Business transfers

    async def create_transfer(
        self,
        *,
        to_account_id: str,
        to_balance_id: str,
        amount: Decimal,
        currency: str,
        client_transaction_id: str,
        idempotency_key: str,
        from_balance_id: str | None = None,
    ) -> Transfer:
        """Move money from our Infinity balance (or ``from_balance_id``) to another balance.

        Another account's balance -> external transfer; one of ours -> internal transfer.
        """
        own_account = await self.ensure_account_id()
        if from_balance_id is None:
            if self._infinity_balance_id is None:
                await self.infinity_balance()
            from_balance_id = self._infinity_balance_id
        assert from_balance_id is not None  # set by infinity_balance()
        side_from: dict[str, object] = {"id": from_balance_id, "currency": currency, "businessType": 0}
        side_to: dict[str, object] = {"id": to_balance_id, "currency": currency, "businessType": 0}
        if to_account_id != own_account:
            path = "/business/transfer/external"
            side_from["accountId"] = own_account
            side_to["accountId"] = to_account_id
        else:
            path = "/business/transfer/internal"
        body: dict[str, object] = {
            "clientTransactionId": _require_text(client_transaction_id, "client_transaction_id"),
            "amount": _wire_amount(amount),
            "from": side_from,
            "to": side_to,
        }
        data = await self._api("POST", path, body=body, idempotency_key=_require_key(idempotency_key))
        return _parse(Transfer, data, "POST", path)

    async def list_transfers(
        self, *, client_transaction_id: str | None = None, page: int = 1, limit: int = 20
    ) -> Page[Transfer]:
        """List business transfers, optionally by ``clientTransactionId``."""
        params = _params(clientTransactionId=client_transaction_id, page=page, limit=limit)
        return await self._page(Transfer, "/business/transfers", params)

    # ------------------------------------------------------------------------------------------
    # Helpers for endpoint methods

    async def _card_transfer(
        self, path: str, card_id: str, amount: Decimal, client_transaction_id: str, idempotency_key: str
    ) -> CardTransaction:
        body: dict[str, object] = {
            "cardId": card_id,
            "clientTransactionId": _require_text(client_transaction_id, "client_transaction_id"),
            "amount": _wire_amount(amount),
        }
        data = await self._api("POST", path, body=body, idempotency_key=_require_key(idempotency_key))
        return _parse(CardTransaction, data, "POST", path)

    async def _card_action(self, card_id: str, action: str) -> Card:
        path = f"/cards/{_path_id(card_id, 'card_id')}/{action}"
        # Not a money movement, but a key makes a retried POST a replay rather than a second call.
        data = await self._api("POST", path, body={}, idempotency_key=str(uuid.uuid4()))
        return _parse(Card, data, "POST", path)

    async def _list(self, model: type[M], path: str, params: Mapping[str, str | int] | None = None) -> list[M]:
        data = await self._api("GET", path, params=params)
        items, _ = _list_payload(data, "GET", path)
        return [_parse(model, item, "GET", path) for item in items]

    async def _page(self, model: type[M], path: str, params: Mapping[str, str | int]) -> Page[M]:
        data = await self._api("GET", path, params=params)
        items, total = _list_payload(data, "GET", path)
        parsed = [_parse(model, item, "GET", path) for item in items]
        return Page(items=parsed, total=total)

    # ------------------------------------------------------------------------------------------
    # Transport: accountId, auth, retries, envelope

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> object:
        """An authenticated call that carries accountId (query for GET/DELETE, body otherwise)."""
        account_id = await self.ensure_account_id()
        if method in ("GET", "DELETE"):
            params = {"accountId": account_id, **(params or {})}
        else:
            body = {"accountId": account_id, **(body or {})}
        return await self._authed(method, path, params=params, body=body, idempotency_key=idempotency_key)

    async def _authed(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> object:
        """Send with the access token; on a rejected token renew once and send the same request."""
        token = await self._access_token()
        try:
            return await self._send(
                method, path, params=params, body=body, idempotency_key=idempotency_key, token=token
            )
        except AuthenticationError:
            # Rejected before processing (revoked or expired early): safe to send again, once.
            logger.debug("interlace %s %s: access token rejected, re-authenticating", method, _full(path))
            await self._renew(stale=token)
            token = await self._access_token()
            return await self._send(
                method, path, params=params, body=body, idempotency_key=idempotency_key, token=token
            )

    def _token_is_fresh(self, token: _Token) -> bool:
        # Never let the margin eat more than half the lifetime, or a short-lived (sandbox) token
        # would be renewed on every call.
        margin = min(self._refresh_margin, token.lifetime / 2)
        return self._clock() < token.expires_at - margin

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and self._token_is_fresh(token):
            return token.access
        async with self._auth_lock:
            token = self._token
            if token is None or not self._token_is_fresh(token):
                token = await self._obtain_token(token)
            return token.access

    async def _renew(self, *, stale: str) -> None:
        """Replace a token Interlace rejected, unless a concurrent caller already did."""
        async with self._auth_lock:
            current = self._token
            if current is not None and current.access != stale:
                return
            await self._obtain_token(current)

    async def _obtain_token(self, current: _Token | None) -> _Token:
        """Refresh if we can, else authorize from scratch. Call with ``_auth_lock`` held."""
        token: _Token | None = None
        if current is not None and current.refresh:
            try:
                token = await self._refresh_token(current.refresh)
            except InterlaceAPIError:
                logger.debug("interlace token refresh refused; authorizing again")
        if token is None:
            token = await self._authorize()
        self._token = token
        return token

    async def _authorize(self) -> _Token:
        started = self._clock()
        path = "/oauth/authorize"
        data = _as_object(await self._send("GET", path, params={"clientId": self._client_id}), "GET", path)
        code = data.get("code")
        if not isinstance(code, str) or not code:
            raise AuthenticationError("authorize returned no code", path=_full(path), method="GET")
        path = "/oauth/access-token"
        body = {"clientId": self._client_id, "code": code, "clientSecret": self._client_secret}
        data = _as_object(await self._send("POST", path, body=body), "POST", path)
        return self._token_from(data, started, path, previous_refresh=None)

    async def _refresh_token(self, refresh: str) -> _Token:
        started = self._clock()
        path = "/oauth/refresh-token"
        body = {"clientId": self._client_id, "refreshToken": refresh}
        data = _as_object(await self._send("POST", path, body=body), "POST", path)
        return self._token_from(data, started, path, previous_refresh=refresh)

    def _token_from(
        self, data: Mapping[str, object], started: float, path: str, previous_refresh: str | None
    ) -> _Token:
        access = data.get("accessToken")
        if not isinstance(access, str) or not access:
            raise AuthenticationError("token response has no accessToken", path=_full(path), method="POST")
        refresh = data.get("refreshToken")
        lifetime = _int_or(data.get("expiresIn"), _DEFAULT_TOKEN_LIFETIME)
        return _Token(
            access=access,
            refresh=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            expires_at=started + lifetime,
            lifetime=float(lifetime),
        )

    def _secrets(self) -> tuple[str, ...]:
        token = self._token
        if token is None:
            return (self._client_secret,)
        return (self._client_secret, token.access, token.refresh or "")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
        token: str | None = None,
        prefix: str = API_PREFIX,
    ) -> object:
        """Send one logical request, retrying transient failures; return the envelope's ``data``."""
        url = prefix + path
        # The whole URL, query included, as one string: httpx parses it once (given a relative URL and
        # params it parses three times, which was a fifth of this client's CPU per request).
        target = self._base_url + url + ("?" + urlencode(params, quote_via=quote) if params else "")
        headers: dict[str, str] = {}
        content: bytes | None = None
        if body is not None:
            # Serialised once: every retry sends byte-identical content.
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["content-type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if token is not None:
            headers["x-access-token"] = token
        attempt = 0
        # Once any attempt may have been applied, no later answer can prove the request was not: a 429 or a
        # business error on the retry must not make an earlier unknown outcome look like "nothing moved".
        maybe_applied = False
        while True:
            attempt += 1
            error: InterlaceError
            started = time.perf_counter()
            try:
                response = await self._exchange(method, target, content, headers, path=path, attempt=attempt)
            except httpx.TimeoutException as exc:
                logger.debug("interlace %s %s -> timeout (attempt %d)", method, url, attempt)
                # A connect or pool timeout means nothing was sent.
                sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                error = InterlaceTimeoutError(
                    f"Interlace did not answer in time ({type(exc).__name__})",
                    path=url,
                    method=method,
                    unknown_outcome=sent,
                )
                error.__cause__ = exc
            except httpx.TransportError as exc:
                logger.debug("interlace %s %s -> %s (attempt %d)", method, url, type(exc).__name__, attempt)
                sent = not isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol)
                error = InterlaceConnectionError(
                    f"connection to Interlace failed ({type(exc).__name__})",
                    path=url,
                    method=method,
                    unknown_outcome=sent and method in _WRITE_METHODS,
                )
                error.__cause__ = exc
            else:
                logger.debug("interlace %s %s -> %d (attempt %d)", method, url, response.status_code, attempt)
                try:
                    data = self._unwrap(response, method, url)
                except _RETRYABLE as exc:
                    error = exc
                except InterlaceError as exc:
                    self._metrics.upstream(method, path, time.perf_counter() - started, _error_kind(exc))
                    if maybe_applied:
                        exc.mark_unknown()
                    raise
                else:
                    self._metrics.upstream(method, path, time.perf_counter() - started)
                    return data
            self._metrics.upstream(method, path, time.perf_counter() - started, _error_kind(error))
            maybe_applied = maybe_applied or error.unknown_outcome
            if attempt > self._max_retries:
                if maybe_applied:
                    error.mark_unknown()
                raise error
            delay = self._delay(attempt, error)
            if (listener := current_listener()) is not None:
                retry = UpstreamWait(
                    "retrying", method, path, attempt + 1, self._max_retries + 1, delay, _retry_reason(error)
                )
                await tell(listener, retry)
            if delay > 0:
                await anyio.sleep(delay)

    async def _exchange(
        self, method: str, target: str, content: bytes | None, headers: dict[str, str], *, path: str, attempt: int
    ) -> httpx.Response:
        """One attempt; with a listener set (upstream_waits), it hears while the answer is slow in coming.

        A request answered within :data:`WAIT_NOTICE_AFTER` costs one timer, no task: the reminder task is
        started only when the timer fires (a task group per request cost ~0.3 ms of CPU per money call)."""
        listener = current_listener()
        if listener is None:
            return await self._request(method, target, content=content, headers=headers)
        started = time.monotonic()
        attempts = self._max_retries + 1

        async def remind() -> None:
            while True:
                waited = time.monotonic() - started
                await tell(listener, UpstreamWait("waiting", method, path, attempt, attempts, waited))
                await asyncio.sleep(WAIT_NOTICE_EVERY)

        loop = asyncio.get_running_loop()
        reminder: asyncio.Task[None] | None = None

        def slow() -> None:
            nonlocal reminder
            reminder = loop.create_task(remind())

        timer = loop.call_later(WAIT_NOTICE_AFTER, slow)
        try:
            return await self._request(method, target, content=content, headers=headers)
        finally:
            timer.cancel()
            if reminder is not None:  # nothing more is told once the answer (or the failure) is in
                reminder.cancel()

    def _delay(self, attempt: int, error: InterlaceError) -> float:
        """How long to wait before the next attempt."""
        if not self._backoff:
            return 0.0
        if (
            isinstance(error, RateLimitError)
            and error.retry_after is not None
            and 0 <= error.retry_after <= _MAX_RETRY_AFTER
        ):
            return error.retry_after
        # Capped exponential backoff with full jitter.
        return random.uniform(0, min(self._max_backoff, _BASE_DELAY * 2 ** (attempt - 1)))

    def _unwrap(self, response: httpx.Response, method: str, url: str) -> object:
        status = response.status_code
        try:
            payload: object = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "code" in payload:
            raw_code = payload.get("code")
            code = _code_str(raw_code)
            if 200 <= status < 300 and code in _SUCCESS_CODES:
                return payload.get("data")
            message = payload.get("message")
        elif 200 <= status < 300:
            raise InterlaceAPIError(
                "Interlace returned a response without the expected envelope",
                status_code=status,
                path=url,
                method=method,
                unknown_outcome=method in _WRITE_METHODS,
            )
        else:
            code = None
            message = response.reason_phrase
        raise error_for(
            status,
            code,
            message if isinstance(message, str) else "",
            path=url,
            method=method,
            retry_after=_retry_after(response.headers.get("retry-after")),
            secrets=self._secrets(),
        )


# ----------------------------------------------------------------------------------------------
# Module helpers


def _retry_reason(exc: InterlaceError) -> str:
    """Why an attempt failed, in a few words for a progress message (no upstream text)."""
    if isinstance(exc, InterlaceTimeoutError):
        return "timeout"
    if isinstance(exc, InterlaceConnectionError):
        return f"connection failed ({type(exc.__cause__).__name__})" if exc.__cause__ else "connection failed"
    status = f"HTTP {exc.status_code}" if exc.status_code is not None else "an error"
    if isinstance(exc, RateLimitError):
        return f"{status} (rate limited)"
    if isinstance(exc, InProgressError):
        return f"{status} (still processing the same request)"
    return status


def _error_kind(exc: InterlaceError) -> str:
    """A bounded label for the upstream-errors metric."""
    if isinstance(exc, InterlaceTimeoutError):
        return "timeout"
    if isinstance(exc, InterlaceConnectionError):
        return "connection"
    if isinstance(exc, RateLimitError):
        return "rate_limited"
    if isinstance(exc, ServerError):
        return "server_error"
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return "auth"
    if isinstance(exc, InProgressError):
        return "in_progress"
    return "rejected"


def _full(path: str) -> str:
    return API_PREFIX + path


def _code_str(code: object) -> str | None:
    if code is None or isinstance(code, bool):
        return None
    text = str(code)
    # Codes are short identifiers; anything else is not echoed.
    return sanitize_message(text)[:32] if text else None


def _int_or(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str | Decimal):
        try:
            return int(value)
        except (ValueError, ArithmeticError):
            return default
    return default


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        parsed = Decimal(value)
        if not parsed.is_finite():
            return None
        seconds = float(parsed)
    except ArithmeticError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0)


def _params(**values: str | int | None) -> dict[str, str | int]:
    return {name: value for name, value in values.items() if value is not None}


def _path_id(value: str, name: str) -> str:
    if not isinstance(value, str) or not _PATH_ID_RE.fullmatch(value):
        raise ValidationError(f"{name} is not a valid Interlace id")
    return value


def _require_key(key: str) -> str:
    return _require_text(key, "idempotency_key")


def _require_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string")
    return value


def _wire_amount(amount: Decimal, *, allow_zero: bool = False) -> str:
    """The 2-place string sent to Interlace; refuses floats and anything that would be rounded."""
    if not isinstance(amount, Decimal):
        raise AmountError(f"amount must be a Decimal, not {type(amount).__name__}")
    if not amount.is_finite():
        raise AmountError("amount must be a finite decimal")
    to_minor(amount)  # raises rather than silently rounding a third decimal away
    if amount < 0 or (amount == 0 and not allow_zero):
        raise AmountError("amount must be greater than zero")
    if amount > MAX_AMOUNT:
        raise AmountError(f"amount must be at most {format_amount(MAX_AMOUNT)}")
    return format_amount(amount)


def _as_object(data: object, method: str, path: str) -> dict[str, object]:
    if not isinstance(data, dict):
        raise InterlaceAPIError(
            "Interlace returned an unexpected response (data is not an object)",
            path=_full(path),
            method=method,
            unknown_outcome=method in _WRITE_METHODS,
        )
    return {str(k): v for k, v in data.items()}


def _list_payload(data: object, method: str, path: str) -> tuple[list[object], int]:
    obj = _as_object(data, method, path)
    items = obj.get("list")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise InterlaceAPIError("Interlace returned an unexpected list response", path=_full(path), method=method)
    return list(items), _int_or(obj.get("total"), len(items))


def _parse(model: type[M], data: object, method: str, path: str) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        # Name the fields, never the values (they could be card data).
        fields = ", ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '<root>'} ({err['type']})" for err in exc.errors()[:5]
        )
        # `from None`: pydantic's own message quotes the input values.
        raise InterlaceAPIError(
            f"Interlace returned an unexpected {model.__name__}: {fields}",
            path=_full(path),
            method=method,
            unknown_outcome=method in _WRITE_METHODS,
        ) from None
