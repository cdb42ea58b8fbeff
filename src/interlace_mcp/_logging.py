"""Logging to stderr (stdout is the stdio wire), with a redaction filter as a second line of defence.

Whatever code logged it (ours, uvicorn's access and error lines, the SDK, httpx), every record that
reaches the one stderr handler is rewritten by :func:`redact`:

- card numbers: 13-19 digits that pass the Luhn check, with or without separators between their
  groups (spaces, dots, dashes, slashes, underscores, ... -- one kind of separator per number, so
  times and addresses stay readable), also inside longer lists of numbers; the last four are kept;
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

__all__ = ["UVICORN_LOGGERS", "RedactingFilter", "card_number_shapes", "configure_logging", "luhn_ok", "redact"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "uvicorn.asgi")

#: Digits joined by short runs of non-alphanumeric characters (\d and [\W_] never overlap: linear time).
_DIGIT_RUN = re.compile(r"\d(?:[\W_]{0,5}\d)*")
_GROUP = re.compile(r"\d+")
_CVV_FIELD = re.compile(r"""(?i)(["']?(?:cvv2?|cvc|securityCode)["']?\s*[:=]\s*["']?)(\d{3,4})""")
_SERVER_TOKEN = re.compile(r"(itl_(?:agent|op)_)[A-Za-z0-9_-]+")
_TOKEN_FIELD = re.compile(
    r"""(?i)((?<![A-Za-z0-9])["']?(?:x-access-token|access[_-]?token|refresh[_-]?token|id[_-]?token|accessToken"""
    r"""|refreshToken|token|api[_-]?key|apikey|client[_-]?secret|clientSecret|password|secret|authorization)"""
    r"""["']?\s*[:=]\s*["']?(?:bearer\s+)?)([^\s"',}&#;]+)"""
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


def card_number_shapes(text: str, *, luhn: bool = True) -> list[tuple[int, int, str]]:
    """Card-number-like spans in ``text``: ``(start, end, digits)``, left to right, not overlapping.

    A span is 13-19 digits (any script) in consecutive digit groups of one run, with at most one kind of
    non-blank separator between the groups (``4111.1149.8468.0519``, ``4111 - 1111 - 1111 - 1111``,
    ``4111111111111111``); with ``luhn`` it must also pass the Luhn check. The longest span wins.
    """
    found: list[tuple[int, int, str]] = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(m.start() + run.start(), m.end() + run.start(), m.group()) for m in _GROUP.finditer(run.group())]
        i = 0
        while i < len(groups):
            match = None
            kinds: set[str] = set()
            digits = ""
            for j in range(i, len(groups)):
                if j > i:
                    kind = text[groups[j - 1][1] : groups[j][0]].strip()
                    if kind:
                        kinds.add(kind)
                    if len(kinds) > 1:
                        break
                digits += groups[j][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and (not luhn or luhn_ok(digits)):
                    match = (groups[i][0], groups[j][1], digits)
            if match is None:
                i += 1
                continue
            found.append(match)
            while i < len(groups) and groups[i][0] < match[1]:
                i += 1
    return found


def _mask_cards(text: str) -> str:
    spans = card_number_shapes(text)
    if not spans:
        return text
    out, last = [], 0
    for start, end, digits in spans:
        out.append(text[last:start])
        out.append(f"[card ...{digits[-4:]}]")
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[secret]")
    text = _SERVER_TOKEN.sub(lambda m: m.group(1) + "[secret]", text)
    text = _TOKEN_FIELD.sub(lambda m: m.group(1) + "[secret]", text)
    text = _BEARER.sub(lambda m: m.group(1) + "[secret]", text)
    text = _mask_cards(text)
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
