"""Logging to stderr (stdout is the stdio wire), with a redaction filter as a second line of defence.

Whatever code logged it (ours, uvicorn's access and error lines, the SDK, httpx), every record that
reaches the one stderr handler is rewritten by :func:`redact`:

- card numbers: 13-19 digits that pass the Luhn check, plain, with single spaces or dashes anywhere,
  or in the written card formats (a 4-digit group, then groups of 3-6 digits) joined by one repeated
  separator of any kind (dots, slashes, underscores, `` - ``, zero-width spaces, ...), also inside lists
  of numbers; the last four are kept. Times, IP addresses, dates and amounts stay readable, and the
  cost stays linear in the text;
- bearer tokens of this server (``itl_agent_...``, ``itl_op_...``) wherever they appear;
- the values of token-like fields and query parameters (``token=``, ``api_key=``, ``access_token=``,
  ``client_secret``, ``Authorization: Bearer ...``), CVV fields, and the known secrets passed in.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["UVICORN_LOGGERS", "RedactingFilter", "configure_logging", "luhn_ok", "mask_card_numbers", "redact"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "uvicorn.asgi")

#: 13-19 digits, each optionally followed by one space or dash (``4111 1111-1111 1111``, plain runs).
_SPACED_DIGITS = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
#: Written card formats (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3, ...): a 4-digit group, then two to four groups of
#: 3-6 digits, all joined by one repeated separator of 1-5 non-alphanumeric characters
#: (``4111.1149.8468.0519``, ``4111 - 1111 - 1111 - 1111``, ``4111/1111/1111/1111``). Each match is then
#: searched for a 13-19 digit window of whole groups. Regular expressions keep this linear and in C.
_SEPARATED_GROUPS = re.compile(r"(?<!\d)\d{4}([\W_]{1,5})\d{3,6}(?:\1\d{3,6}){1,3}(?!\d)")
_GROUP = re.compile(r"\d+")
_CVV_FIELD = re.compile(r"""(?i)(["']?(?:cvv2?|cvc|securityCode)["']?\s*[:=]\s*["']?)(\d{3,4})""")
_SERVER_TOKEN = re.compile(r"(itl_(?:agent|op)_)[A-Za-z0-9_-]+")
_TOKEN_FIELD = re.compile(
    r"""(?i)((?<![A-Za-z0-9])["']?(?:x-access-token|access[_-]?token|refresh[_-]?token|id[_-]?token|accessToken"""
    r"""|refreshToken|token|api[_-]?key|apikey|client[_-]?secret|clientSecret|password|secret|authorization)"""
    r"""["']?\s*[:=]\s*["']?(?:bearer\s+)?)([^\s"',}&#;]+)"""
)
#: A one-time reveal link's token (``/dashboard/reveal/<token>``, or ``reveal:<token>`` as a question's key):
#: whoever reads the log must not be able to open the card's page.
_REVEAL_TOKEN = re.compile(r"(reveal[/:])[A-Za-z0-9_-]{20,100}")
_BEARER = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """The Luhn check over a string of decimal digits (any script)."""
    values = [int(ch) for ch in reversed(digits)]
    return (sum(values[0::2]) + sum(_DOUBLED[v] for v in values[1::2])) % 10 == 0


def _spaced(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"[card ...{digits[-4:]}]" if luhn_ok(digits) else match.group(0)


def _separated(match: re.Match[str]) -> str:
    """The longest Luhn-valid 13-19 digit window of whole groups (earliest first) masked, the rest kept."""
    text = match.group(0)
    parts = _GROUP.findall(text)
    sizes = [len(part) for part in parts]
    for i in range(len(parts)):
        total = sum(sizes[i:])
        for j in range(len(parts) - 1, i - 1, -1):
            if total < 13:
                break
            if total <= 19 and luhn_ok("".join(parts[i : j + 1])):
                spans = [m.span() for m in _GROUP.finditer(text)]
                digits = "".join(parts[i : j + 1])
                return text[: spans[i][0]] + f"[card ...{digits[-4:]}]" + text[spans[j][1] :]
            total -= sizes[j]
    return text


def mask_card_numbers(text: str) -> str:
    """Luhn-valid card numbers in ``text``, plain or grouped with any one separator, as ``[card ...1234]``."""
    return _SEPARATED_GROUPS.sub(_separated, _SPACED_DIGITS.sub(_spaced, text))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[secret]")
    text = _SERVER_TOKEN.sub(lambda m: m.group(1) + "[secret]", text)
    text = _TOKEN_FIELD.sub(lambda m: m.group(1) + "[secret]", text)
    text = _BEARER.sub(lambda m: m.group(1) + "[secret]", text)
    text = _REVEAL_TOKEN.sub(lambda m: m.group(1) + "[secret]", text)
    text = mask_card_numbers(text)
    return _CVV_FIELD.sub(lambda m: m.group(1) + "***", text)


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
    # uvicorn's own handlers (installed by its default dictConfig) would print access lines unredacted:
    # its loggers must reach the one handler above.
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        for old in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(old)
        uvicorn_logger.propagate = True
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(quiet)
