"""Logging to stderr (stdout is the stdio wire), with a redaction filter as a second line of defence:
any 13-19 digit run that passes a Luhn check, CVV fields, bearer/access tokens and known secrets are
masked in every record, whatever code logged it."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["RedactingFilter", "configure_logging", "luhn_ok", "redact"]

_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_CVV_FIELD = re.compile(r"""(?i)(["']?(?:cvv2?|cvc|securityCode)["']?\s*[:=]\s*["']?)(\d{3,4})""")
_TOKEN_FIELD = re.compile(
    r"""(?i)(["']?(?:x-access-token|accessToken|refreshToken|access_token|refresh_token|clientSecret|client_secret|authorization)["']?\s*[:=]\s*["']?(?:bearer\s+)?)([^\s"',}]+)"""
)
_BEARER = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[secret]")

    def pan(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return f"[card ...{digits[-4:]}]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)

    text = _DIGIT_RUN.sub(pan, text)
    text = _CVV_FIELD.sub(lambda m: m.group(1) + "***", text)
    text = _TOKEN_FIELD.sub(lambda m: m.group(1) + "[secret]", text)
    return _BEARER.sub(lambda m: m.group(1) + "[secret]", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (args already merged) through :func:`redact`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        cleaned = redact(message, self.secrets)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from exc_info: render now, redacted, and drop the raw one.
            formatter = logging.Formatter()
            cleaned += "\n" + redact(formatter.formatException(record.exc_info), self.secrets)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Root logging to stderr with redaction; httpx request lines only at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(
        _JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(quiet)
