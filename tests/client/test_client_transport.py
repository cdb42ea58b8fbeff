"""Client behaviour at the transport edge, with httpx.MockTransport standing in for Interlace.

These cover failures the emulator cannot produce in-process (refused connections, dropped
responses, timeouts, non-envelope bodies); the end-to-end behaviour is in test_client.py.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import interlace_mcp.client
from interlace_mcp.client import (
    AuthenticationError,
    InterlaceAPIError,
    InterlaceClient,
    InterlaceConnectionError,
    InterlaceTimeoutError,
    RateLimitError,
    UpstreamWait,
    ValidationError,
    upstream_waits,
)
from interlace_mcp.money import AmountError

pytestmark = pytest.mark.anyio

ACCOUNT = "6b1f3f7e-0c1a-4d2b-9e61-3a5c0d9e1a01"
CARD = "0a1b2c3d-0000-4000-8000-000000000001"
Handler = Callable[[httpx.Request], httpx.Response]


def ok(data: object) -> httpx.Response:
    return httpx.Response(200, json={"code": "000000", "message": "success", "data": data})


def fake_interlace(api: Handler, calls: list[httpx.Request], *, refresh_ok: bool = True) -> httpx.MockTransport:
    """OAuth endpoints that always work, plus ``api`` for everything else; records every request."""
    counter = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path = request.url.path
        if path.endswith("/oauth/authorize"):
            return ok({"code": "c" * 32, "timestamp": 1})
        if path.endswith("/oauth/access-token") or path.endswith("/oauth/refresh-token"):
            if path.endswith("/refresh-token") and not refresh_ok:
                return httpx.Response(401, json={"code": "401002", "message": "bad refresh token"})
            counter["n"] += 1
            return ok(
                {
                    "accessToken": f"{counter['n']:040x}",
                    "refreshToken": f"{counter['n']:064x}",
                    "expiresIn": 86400,
                    "timestamp": 1,
                }
            )
        return api(request)

    return httpx.MockTransport(handler)


def make_client(transport: httpx.AsyncBaseTransport, **kwargs: object) -> InterlaceClient:
    return InterlaceClient(
        base_url="http://interlace.test",
        client_id="cid",
        client_secret="sandbox-secret-0123456789abcdef!",
        account_id=ACCOUNT,
        transport=transport,
        backoff=False,
        **kwargs,  # type: ignore[arg-type]
    )


def api_calls(calls: list[httpx.Request]) -> list[httpx.Request]:
    return [c for c in calls if "/oauth/" not in c.url.path]


async def test_a_refused_connection_is_retried_and_is_not_an_unknown_outcome() -> None:
    """ConnectError means nothing was sent: retried, then raised with unknown_outcome False."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with make_client(fake_interlace(api, calls), max_retries=2) as client:
        with pytest.raises(InterlaceConnectionError) as info:
            await client.transfer_in(
                card_id=CARD, amount=Decimal("1"), client_transaction_id="t1", idempotency_key="k1"
            )
    assert not info.value.unknown_outcome
    assert len(api_calls(calls)) == 3


async def test_a_dropped_response_to_a_post_is_an_unknown_outcome() -> None:
    """A read error after a POST was sent may have moved money; the same key is reused each time."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    async with make_client(fake_interlace(api, calls), max_retries=1) as client:
        with pytest.raises(InterlaceConnectionError) as info:
            await client.transfer_in(
                card_id=CARD, amount=Decimal("1"), client_transaction_id="t1", idempotency_key="k1"
            )
    assert info.value.unknown_outcome
    sent = api_calls(calls)
    assert len(sent) == 2
    assert {c.headers["Idempotency-Key"] for c in sent} == {"k1"}
    assert len({c.content for c in sent}) == 1


async def test_a_dropped_response_to_a_get_is_not_an_unknown_outcome() -> None:
    """Reads move no money, so a failed GET is never an unknown outcome."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    async with make_client(fake_interlace(api, calls), max_retries=0) as client:
        with pytest.raises(InterlaceConnectionError) as info:
            await client.list_bins()
    assert not info.value.unknown_outcome


async def test_a_timeout_is_retried_then_raised_as_unknown() -> None:
    """Read timeouts are retried; the final error says the outcome is unknown."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with make_client(fake_interlace(api, calls), max_retries=3) as client:
        with pytest.raises(InterlaceTimeoutError) as info:
            await client.transfer_out(
                card_id=CARD, amount=Decimal("2.50"), client_transaction_id="t2", idempotency_key="k2"
            )
    assert info.value.unknown_outcome
    assert len(api_calls(calls)) == 4


async def test_a_success_status_without_an_envelope_is_an_api_error() -> None:
    """A 200 whose body is not {code, message, data} is refused, not guessed at."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy</html>")

    async with make_client(fake_interlace(api, calls)) as client:
        with pytest.raises(InterlaceAPIError, match="envelope"):
            await client.list_bins()


async def test_a_plain_4xx_is_never_retried() -> None:
    """Validation errors are final: exactly one request."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": "400002", "message": "amount is invalid"})

    async with make_client(fake_interlace(api, calls)) as client:
        with pytest.raises(ValidationError):
            await client.transfer_in(card_id=CARD, amount=Decimal("1"), client_transaction_id="t", idempotency_key="k")
    assert len(api_calls(calls)) == 1


async def test_integer_zero_code_counts_as_success_and_data_may_use_numbers() -> None:
    """The legacy numeric success code 0 is accepted; JSON numbers never become floats."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        body = {"code": 0, "message": "ok", "data": {"list": [{"id": "b", "available": 12.5}], "total": 1}}
        return httpx.Response(200, content=json.dumps(body).encode())

    async with make_client(fake_interlace(api, calls)) as client:
        balances = await client.list_balances()
    assert balances[0].available == Decimal("12.5")
    assert isinstance(balances[0].available, Decimal)


async def test_a_refused_refresh_falls_back_to_a_fresh_authorize() -> None:
    """When refresh-token is refused the client authorizes from scratch and carries on."""
    calls: list[httpx.Request] = []
    now = [0.0]

    def api(request: httpx.Request) -> httpx.Response:
        return ok({"list": [], "total": "0"})

    transport = fake_interlace(api, calls, refresh_ok=False)
    async with make_client(transport, clock=lambda: now[0]) as client:
        await client.list_bins()
        now[0] = 86400.0 - 10  # inside the refresh margin
        await client.list_bins()
    paths = [c.url.path.rsplit("/", 1)[-1] for c in calls]
    assert paths == [
        "authorize",
        "access-token",
        "bins",
        "refresh-token",
        "authorize",
        "access-token",
        "bins",
    ]
    assert calls[-1].headers["x-access-token"] == f"{2:040x}"


async def test_bad_credentials_raise_authentication_error_without_the_secret() -> None:
    """An unknown client id is an AuthenticationError whose text holds no secret."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "401001", "message": "unknown clientId"})

    async with make_client(httpx.MockTransport(handler)) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.list_bins()
    assert info.value.code == "401001"
    assert "sandbox-secret" not in str(info.value) + repr(info.value)


async def test_unsafe_ids_amounts_and_keys_are_refused_before_sending() -> None:
    """Path traversal ids, floats, sub-cent amounts and empty keys never reach the wire."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be sent")

    async with make_client(fake_interlace(api, calls)) as client:
        with pytest.raises(ValidationError):
            await client.freeze_card("../transfer-in")
        with pytest.raises(AmountError):
            await client.transfer_in(
                card_id=CARD,
                amount=10.5,  # type: ignore[arg-type]
                client_transaction_id="t",
                idempotency_key="k",
            )
        with pytest.raises(AmountError):
            await client.transfer_in(
                card_id=CARD, amount=Decimal("10.005"), client_transaction_id="t", idempotency_key="k"
            )
        with pytest.raises(AmountError):
            await client.transfer_in(card_id=CARD, amount=Decimal("0"), client_transaction_id="t", idempotency_key="k")
        with pytest.raises(ValidationError):
            await client.transfer_in(card_id=CARD, amount=Decimal("1"), client_transaction_id="t", idempotency_key=" ")
    assert api_calls(calls) == []


async def test_account_id_is_discovered_from_the_accounts_list() -> None:
    """Without a configured account id the first of GET /accounts is used, once."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/accounts"):
            assert "accountId" not in request.url.params
            return ok({"list": [{"id": ACCOUNT, "status": "ACTIVE"}], "total": "1"})
        assert request.url.params["accountId"] == ACCOUNT
        return ok({"list": [], "total": "0"})

    client = InterlaceClient(
        base_url="http://interlace.test/open-api/v3/",
        client_id="cid",
        client_secret="sandbox-secret-0123456789abcdef!",
        transport=fake_interlace(api, calls),
        backoff=False,
    )
    async with client:
        with pytest.raises(RuntimeError):
            _ = client.account_id
        await client.list_bins()
        await client.list_cardholders()
        assert client.account_id == ACCOUNT
    assert [c.url.path for c in api_calls(calls)] == [
        "/open-api/v3/accounts",
        "/open-api/v3/card/bins",
        "/open-api/v3/cardholders",
    ]


async def test_retries_sleep_with_backoff_when_enabled() -> None:
    """With backoff on, a 503 is retried after a (tiny) capped, jittered sleep."""
    calls: list[httpx.Request] = []
    failures = [1]

    def api(request: httpx.Request) -> httpx.Response:
        if failures[0]:
            failures[0] -= 1
            return httpx.Response(503, json={"code": "500001", "message": "unavailable"})
        return ok({"list": [], "total": "0"})

    client = InterlaceClient(
        base_url="http://interlace.test",
        client_id="cid",
        client_secret="sandbox-secret-0123456789abcdef!",
        account_id=ACCOUNT,
        transport=fake_interlace(api, calls),
        max_backoff=0.01,
    )
    async with client:
        assert await client.list_bins() == []
    assert len(api_calls(calls)) == 2


def test_the_client_package_never_imports_mcp() -> None:
    """client/ stays free of the MCP SDK (dependency direction: tools -> client)."""
    package_dir = Path(interlace_mcp.client.__file__).parent
    for source in package_dir.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "mcp" or n.startswith("mcp.") for n in names), source.name


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("NaN", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
async def test_retry_after_header_forms(header: str, expected: float | None) -> None:
    """Retry-After is read as seconds or an HTTP date; junk is ignored."""
    calls: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"code": "429001", "message": "slow"}, headers={"Retry-After": header})

    async with make_client(fake_interlace(api, calls), max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.list_bins()
    assert info.value.retry_after == expected


async def test_a_listener_hears_each_retry_with_the_attempt_and_why_and_only_inside_its_block() -> None:
    """upstream_waits: a timeout, then a 503, then the answer -- two retry events naming the attempt that follows
    and the reason; the same failure outside the block is told to nobody."""
    calls: list[httpx.Request] = []
    failures = [httpx.ReadTimeout("slow", request=None), httpx.Response(503, json={"code": "500001", "message": "x"})]

    def api(request: httpx.Request) -> httpx.Response:
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return ok({"list": [], "total": 0})

    heard: list[UpstreamWait] = []

    async def listener(event: UpstreamWait) -> None:
        heard.append(event)

    async with make_client(fake_interlace(api, calls), max_retries=3) as client:
        with upstream_waits(listener):
            await client.list_bins()
        failures.append(httpx.Response(503, json={"code": "500001", "message": "x"}))
        await client.list_bins()  # retried as well, but nobody listens
    assert not failures
    assert [(e.kind, e.method, e.path, e.attempt, e.attempts, e.reason) for e in heard] == [
        ("retrying", "GET", "/card/bins", 2, 4, "timeout"),
        ("retrying", "GET", "/card/bins", 3, 4, "HTTP 503"),
    ]
    assert all("accountId" not in e.path for e in heard)


async def test_a_failing_listener_never_fails_the_request() -> None:
    """A listener that raises is logged and ignored: the request is retried and answers."""
    calls: list[httpx.Request] = []
    failures = [httpx.Response(502, json={"code": "500001", "message": "x"})]

    def api(request: httpx.Request) -> httpx.Response:
        return failures.pop(0) if failures else ok({"list": [], "total": 0})

    async def listener(event: UpstreamWait) -> None:
        raise RuntimeError("the client went away")

    async with make_client(fake_interlace(api, calls), max_retries=1) as client:
        with upstream_waits(listener):
            assert await client.list_bins() == []
    assert not failures
