"""The client's error tree: mapping, redaction and the unknown-outcome flag."""

from __future__ import annotations

import pytest

from interlace_mcp.client import (
    AuthenticationError,
    CardStateError,
    DuplicateError,
    InProgressError,
    InsufficientFundsError,
    InterlaceAPIError,
    InterlaceConnectionError,
    InterlaceError,
    InterlaceTimeoutError,
    InterlaceTransportError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
    error_for,
    sanitize_message,
)


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (401, "401001", "unknown client", AuthenticationError),
        (401, "401002", "bad code", AuthenticationError),
        (401, "401003", "access token invalid or expired", AuthenticationError),
        (401, None, "Unauthorized", AuthenticationError),
        (403, "403001", "forbidden", PermissionDeniedError),
        (400, "400001", "accountId is required", ValidationError),
        (400, "400002", "amount is invalid", ValidationError),
        (400, "070033", "card type invalid", ValidationError),
        (422, None, "Unprocessable", ValidationError),
        (404, "404001", "card not found", NotFoundError),
        (200, "404001", "card not found", NotFoundError),
        (400, "100100001", "sub amount is error", InsufficientFundsError),
        (400, "070021", "card status does not allow this operation", CardStateError),
        (400, "070010", "duplicate referenceId", DuplicateError),
        (409, "409001", "transaction in progress", InProgressError),
        (400, "123456", "Transaction in progress", InProgressError),
        (429, "429001", "rate limited", RateLimitError),
        (500, "500001", "boom", ServerError),
        (502, None, "Bad Gateway", ServerError),
        (200, "999999", "something else", InterlaceAPIError),
    ],
)
def test_error_for_maps_status_and_code_to_the_right_class(
    status: int, code: str | None, message: str, expected: type[InterlaceAPIError]
) -> None:
    """Each (status, code, message) lands on exactly the documented class."""
    error = error_for(status, code, message, path="/open-api/v3/x", method="POST")
    assert type(error) is expected
    assert error.code == code
    assert error.status_code == status
    assert error.path == "/open-api/v3/x"


def test_error_tree_shape() -> None:
    """API errors and transport errors share InterlaceError and nothing else."""
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        ValidationError,
        NotFoundError,
        InsufficientFundsError,
        CardStateError,
        DuplicateError,
        InProgressError,
        RateLimitError,
        ServerError,
    ):
        assert issubclass(cls, InterlaceAPIError)
        assert not issubclass(cls, InterlaceTransportError)
    assert issubclass(InterlaceTimeoutError, InterlaceTransportError)
    assert issubclass(InterlaceConnectionError, InterlaceTransportError)
    assert issubclass(InterlaceAPIError, InterlaceError)
    assert issubclass(InterlaceTransportError, InterlaceError)
    assert issubclass(InterlaceError, Exception)


def test_unknown_outcome_is_set_only_where_money_may_have_moved() -> None:
    """5xx, 409 in-progress and timeouts are unknown; business refusals are not."""
    assert error_for(500, "500001", "x").unknown_outcome
    assert error_for(409, "409001", "transaction in progress").unknown_outcome
    assert InterlaceTimeoutError("t").unknown_outcome
    assert not error_for(400, "100100001", "sub amount is error").unknown_outcome
    assert not error_for(404, "404001", "x").unknown_outcome
    assert not error_for(429, "429001", "x").unknown_outcome
    assert not InterlaceConnectionError("refused", unknown_outcome=False).unknown_outcome
    assert InterlaceConnectionError("reset", unknown_outcome=True).unknown_outcome
    assert not InterlaceConnectionError("default").unknown_outcome


def test_rate_limit_error_carries_retry_after() -> None:
    """The Retry-After hint travels on RateLimitError."""
    error = error_for(429, "429001", "slow down", retry_after=2.5)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 2.5


def test_messages_redact_pans_tokens_and_known_secrets() -> None:
    """PAN-like digit runs, token-like hex and given secrets never survive into the message."""
    pan = "4111111111111111"
    token = "a" * 40
    secret = "sandbox-secret-0123456789abcdef!"
    raw = f"card {pan} / 4111 1111 1111 1111 / token {token} / secret {secret} / cvv ok"
    error = error_for(400, "400002", raw, secrets=[secret])
    for text in (str(error), repr(error), error.message):
        assert pan not in text
        assert "4111 1111 1111 1111" not in text
        assert token not in text
        assert secret not in text
        assert "[redacted]" in text
    assert "400002" in str(error)


def test_messages_are_capped_and_short_numbers_kept() -> None:
    """Long messages are cut to 300 characters; ordinary numbers (amounts, codes) stay."""
    assert len(sanitize_message("x" * 1000)) == 300
    assert sanitize_message("amount 10.50 exceeds 500") == "amount 10.50 exceeds 500"
    assert sanitize_message(None) == ""


def test_str_names_code_status_and_path() -> None:
    """str(error) carries Interlace's code and message for the boundary to show."""
    error = error_for(404, "404001", "card not found", path="/open-api/v3/cards/abc", method="GET")
    assert str(error) == "card not found (code 404001, HTTP 404, GET /open-api/v3/cards/abc)"
