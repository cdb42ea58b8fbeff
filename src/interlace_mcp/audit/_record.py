"""Audit record values: scrubbing (no card data, ever), canonical JSON, the chain hash."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interlace_mcp._logging import redact

__all__ = [
    "GENESIS_HASH",
    "REDACTED",
    "AuditRecord",
    "canonical_json",
    "chain_hash",
    "is_secret_key",
    "record_mac",
    "scrub",
    "ts_utc",
]

#: ``prev_hash`` of the first record.
GENESIS_HASH = "0" * 64
#: What the value of a secret-named key becomes.
REDACTED = "[redacted]"
_MAX_DEPTH = 16

#: Key names (lowercased, non-alphanumerics removed) whose values are never stored.
_SECRET_KEYS_EXACT = frozenset({"pan", "cardpan", "cvc", "cvc2", "cvv", "cvv2", "securitycode", "pin"})
_SECRET_KEY_PARTS = (
    "cardnumber",
    "primaryaccountnumber",
    "cvv",
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "apikey",
)


@functools.lru_cache(maxsize=512)
def is_secret_key(key: str) -> bool:
    """``card_number``, ``cardNumber``, ``cvv``, ``pan``, ``access_token``, ``client_secret``, ... ."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return norm in _SECRET_KEYS_EXACT or any(part in norm for part in _SECRET_KEY_PARTS)


#: Strings that scrubbing leaves exactly as they are -- nothing in them to mask, so remembering them keeps
#: nothing secret -- up to this length and this many (cleared when full). A money call's two records repeat
#: most of their strings (agent, tool, request_id, card_id, currency, keys): scrubbing one again is a dict
#: look-up instead of seven regular expressions (a call's two records: ~165 -> ~45 us). A string redact changes is
#: never kept.
_CLEAN: dict[str, None] = {}
_CLEAN_MAX = 1024
_CLEAN_LEN = 200


def _text(value: str) -> str:
    if value in _CLEAN:
        return value
    # Lone surrogates cannot be encoded as UTF-8: replace them rather than fail the write.
    text = redact(value.encode("utf-8", "replace").decode("utf-8"))
    if text == value and len(value) <= _CLEAN_LEN:
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN[value] = None
    return text


def scrub(value: Any, _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value``: every string through :func:`redact`, secret-named keys masked.

    Numbers that redact would mask (a PAN passed as an integer) become the masked string; anything
    that is not a JSON type is stored as its redacted ``str()``.
    """
    if _depth > _MAX_DEPTH:
        return "[too deep]"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        text = str(value)
        masked = _text(text)
        if masked != text:
            return masked
        return str(value) if isinstance(value, Decimal) else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _text(str(key))
            out[name] = REDACTED if is_secret_key(str(key)) else scrub(item, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [scrub(item, _depth + 1) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((scrub(item, _depth + 1) for item in value), key=str)
    return _text(str(value))


def canonical_json(record: Mapping[str, Any]) -> str:
    """Sorted keys, no insignificant whitespace, non-ASCII kept as UTF-8, no NaN."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: str, record_json: str) -> str:
    """``sha256(prev_hash || canonical_json)`` as lowercase hex."""
    return hashlib.sha256((prev_hash + record_json).encode("utf-8")).hexdigest()


def record_mac(key: bytes, record_hash: str) -> str:
    """HMAC-SHA256 of a record's hash under a key kept outside the database."""
    return hmac.new(key, record_hash.encode("ascii"), hashlib.sha256).hexdigest()


def ts_utc(epoch: float) -> str:
    """``2026-11-25T08:30:00.123Z``: UTC, milliseconds."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class AuditRecord:
    """One stored audit record, as parsed from its hashed JSON."""

    seq: int
    ts: str
    agent: str
    tool: str
    event: str
    decision: str | None
    arguments: dict[str, Any] | None
    amount: str | None
    currency: str | None
    request_id: str | None
    upstream_ids: dict[str, str] | None
    outcome: str | None
    detail: str | None
    actor: str | None
    scope: str | None
    prev_hash: str
    hash: str

    @classmethod
    def from_json(cls, record_json: str, record_hash: str) -> AuditRecord:
        data = json.loads(record_json)
        return cls(
            seq=int(data["seq"]),
            ts=str(data["ts"]),
            agent=str(data["agent"]),
            tool=str(data["tool"]),
            event=str(data["event"]),
            decision=data.get("decision"),
            arguments=data.get("arguments"),
            amount=data.get("amount"),
            currency=data.get("currency"),
            request_id=data.get("request_id"),
            upstream_ids=data.get("upstream_ids"),
            outcome=data.get("outcome"),
            detail=data.get("detail"),
            actor=data.get("actor"),
            scope=data.get("scope"),
            prev_hash=str(data["prev_hash"]),
            hash=record_hash,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "agent": self.agent,
            "tool": self.tool,
            "event": self.event,
            "decision": self.decision,
            "arguments": self.arguments,
            "amount": self.amount,
            "currency": self.currency,
            "request_id": self.request_id,
            "upstream_ids": self.upstream_ids,
            "outcome": self.outcome,
            "detail": self.detail,
            "actor": self.actor,
            "scope": self.scope,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
