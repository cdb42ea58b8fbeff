"""The client's error tree. Every failure the client raises is an :class:`InterlaceError`::

    InterlaceError                     code, message, status_code, path, unknown_outcome
    ├── InterlaceAPIError              Interlace answered, with an error status or a non-success code
    │   ├── AuthenticationError        HTTP 401, codes 401001 / 401002 / 401003
    │   ├── PermissionDeniedError      HTTP 403 (e.g. 403001, another account's accountId)
    │   ├── ValidationError            HTTP 400, 400001 / 400002 and other 4xx business codes
    │   ├── NotFoundError              HTTP 404, 404001
    │   ├── InsufficientFundsError     100100001 ("sub amount is error": Infinity, card or wallet balance)
    │   ├── CardStateError             070021 (card not ACTIVE for this operation)
    │   ├── DuplicateError             070010 (duplicate referenceId)
    │   ├── InProgressError            HTTP 409, 409001, "transaction in progress"   [unknown outcome]
    │   ├── RateLimitError             HTTP 429 (retry_after)
    │   └── ServerError                HTTP 5xx                                       [unknown outcome]
    └── InterlaceTransportError        no usable answer from Interlace
        ├── InterlaceTimeoutError                                                     [unknown outcome]
        └── InterlaceConnectionError   unknown outcome when a POST/PUT/DELETE may have reached Interlace

``unknown_outcome`` is True when a money movement may or may not have happened: the caller must
look the movement up (by ``clientTransactionId``) before treating it as failed.

Messages carry Interlace's code and message, never secrets, tokens, raw bodies, card numbers or
CVVs: :func:`sanitize_message` redacts digit runs that could be a PAN and long hex runs that could
be a token, and caps the length. :func:`error_for` is the one place that maps an answer to a class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AuthenticationError",
    "CardStateError",
    "DuplicateError",
    "InProgressError",
    "InsufficientFundsError",
    "InterlaceAPIError",
    "InterlaceConnectionError",
    "InterlaceError",
    "InterlaceTimeoutError",
    "InterlaceTransportError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "error_for",
    "sanitize_message",
]

MAX_MESSAGE_LENGTH = 300
REDACTED = "[redacted]"

# 13-19 digits, optionally grouped by single spaces or dashes ("4111 1111 1111 1111"). Longer
# runs are redacted too: a PAN glued to other digits is still a PAN.
_PAN_RE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}(?!\d)")
# Access tokens are 40 hex, refresh tokens 64, authorization codes 32; card fields are hex too.
_HEX_RE = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{32,}(?![0-9A-Za-z])")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def sanitize_message(message: object, *, secrets: Iterable[str] = ()) -> str:
    """Make an upstream message safe to store and show: no PAN-like digits, tokens or secrets.

    ``secrets`` are exact strings (client secret, current tokens) removed wherever they appear.
    """
    text = message if isinstance(message, str) else ("" if message is None else str(message))
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _PAN_RE.sub(REDACTED, text)
    text = _HEX_RE.sub(REDACTED, text)
    text = _CONTROL_RE.sub(" ", text).strip()
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 3] + "..."
    return text


class InterlaceError(Exception):
    """Base of every error the Interlace client raises."""

    #: Class default for :attr:`unknown_outcome`; an instance may override it.
    _unknown_outcome_default: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        path: str | None = None,
        method: str | None = None,
        unknown_outcome: bool | None = None,
    ) -> None:
        self.message = sanitize_message(message)
        self.code = code
        self.status_code = status_code
        self.path = path
        self.method = method
        self._unknown_outcome = unknown_outcome
        super().__init__(self.message)

    def mark_unknown(self) -> None:
        """An earlier attempt of the same request may have been applied: this failure proves nothing."""
        self._unknown_outcome = True

    @property
    def unknown_outcome(self) -> bool:
        """True when the money movement may or may not have happened (look it up before retrying)."""
        if self._unknown_outcome is not None:
            return self._unknown_outcome
        return self._unknown_outcome_default

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.path is not None:
            parts.append(f"{self.method} {self.path}" if self.method else self.path)
        suffix = f" ({', '.join(parts)})" if parts else ""
        return f"{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"status_code={self.status_code!r}, path={self.path!r})"
        )


class InterlaceAPIError(InterlaceError):
    """Interlace answered with an error HTTP status or an envelope whose code is not success."""


class AuthenticationError(InterlaceAPIError):
    """Bad client id or secret, a bad authorization code, or an invalid / expired access token."""


class PermissionDeniedError(InterlaceAPIError):
    """The credentials may not act on this account or object (HTTP 403)."""


class ValidationError(InterlaceAPIError):
    """Interlace rejected the request's fields (HTTP 400 and business 4xx codes)."""


class NotFoundError(InterlaceAPIError):
    """The card, balance, transfer, BIN or cardholder does not exist (or is deleted)."""


class InsufficientFundsError(InterlaceAPIError):
    """The Infinity account, card or CryptoConnect wallet balance cannot cover the amount (code 100100001).

    A definite failure: nothing moved.
    """


class CardStateError(InterlaceAPIError):
    """The card's status does not allow this operation, e.g. loading a FROZEN card (code 070021)."""


class DuplicateError(InterlaceAPIError):
    """A referenceId (or similar unique field) was already used (code 070010)."""


class InProgressError(InterlaceAPIError):
    """A request with the same Idempotency-Key is still being processed (HTTP 409 / 409001)."""

    _unknown_outcome_default = True


class RateLimitError(InterlaceAPIError):
    """Too many requests (HTTP 429); ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status_code: int | None = None,
        path: str | None = None,
        method: str | None = None,
        unknown_outcome: bool | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            status_code=status_code,
            path=path,
            method=method,
            unknown_outcome=unknown_outcome,
        )
        self.retry_after = retry_after


class ServerError(InterlaceAPIError):
    """Interlace failed (HTTP 5xx); the request may have been applied before it failed."""

    _unknown_outcome_default = True


class InterlaceTransportError(InterlaceError):
    """No usable answer: the connection failed or timed out."""


class InterlaceTimeoutError(InterlaceTransportError):
    """The request timed out; it may have been applied."""

    _unknown_outcome_default = True


class InterlaceConnectionError(InterlaceTransportError):
    """The connection failed; ``unknown_outcome`` says whether the request may have been applied."""


_CODE_CLASSES: dict[str, type[InterlaceAPIError]] = {
    "401001": AuthenticationError,
    "401002": AuthenticationError,
    "401003": AuthenticationError,
    "403001": PermissionDeniedError,
    "400001": ValidationError,
    "400002": ValidationError,
    "404001": NotFoundError,
    "100100001": InsufficientFundsError,
    "070021": CardStateError,
    "070010": DuplicateError,
    "409001": InProgressError,
    "429001": RateLimitError,
    "500001": ServerError,
}

_IN_PROGRESS_MESSAGE = "transaction in progress"


def _class_for(status: int | None, code: str | None, message: str) -> type[InterlaceAPIError]:
    # A specific business code beats the HTTP status: Interlace may send both, or an error code
    # with HTTP 200.
    if code is not None and code in _CODE_CLASSES:
        return _CODE_CLASSES[code]
    if _IN_PROGRESS_MESSAGE in message.lower() or status == 409:
        return InProgressError
    if status is not None:
        if status == 401:
            return AuthenticationError
        if status == 403:
            return PermissionDeniedError
        if status == 404:
            return NotFoundError
        if status == 429:
            return RateLimitError
        if status >= 500:
            return ServerError
        if 400 <= status < 500:
            return ValidationError
    if code is not None:
        for prefix, cls in (
            ("401", AuthenticationError),
            ("403", PermissionDeniedError),
            ("404", NotFoundError),
            ("400", ValidationError),
            ("429", RateLimitError),
        ):
            if code.startswith(prefix):
                return cls
    return InterlaceAPIError


def error_for(
    status: int | None,
    code: str | None,
    message: str,
    *,
    path: str | None = None,
    method: str | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> InterlaceAPIError:
    """Map Interlace's answer (HTTP status, envelope code, message) to the error class to raise.

    ``secrets`` (client secret, live tokens) are redacted from the message wherever they appear.
    """
    text = sanitize_message(message, secrets=secrets) or "Interlace returned an error"
    cls = _class_for(status, code, text)
    if cls is RateLimitError:
        return RateLimitError(text, retry_after=retry_after, code=code, status_code=status, path=path, method=method)
    return cls(text, code=code, status_code=status, path=path, method=method)
