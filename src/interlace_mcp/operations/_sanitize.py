"""Upstream free text (merchant names, labels, messages) is attacker-controllable: cap it and strip
control, format (zero-width, bidi) and Unicode TAG characters before it reaches the model."""

from __future__ import annotations

import unicodedata

__all__ = ["clean_text"]

DEFAULT_CAP = 128


def clean_text(value: object, cap: int = DEFAULT_CAP) -> str | None:
    """A safe, length-capped single-line version of ``value`` (None stays None)."""
    if value is None:
        return None
    text = str(value)
    kept: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\r\t":
            kept.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn") or 0xE0000 <= ord(ch) <= 0xE007F:
            continue
        else:
            kept.append(ch)
    cleaned = " ".join("".join(kept).split())
    if len(cleaned) > cap:
        cleaned = cleaned[: cap - 3] + "..."
    return cleaned
