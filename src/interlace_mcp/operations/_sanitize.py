"""Free text is attacker-controllable. Upstream text (merchant names, labels, messages) is capped and
stripped of control, format (zero-width, bidi) and Unicode TAG characters before it reaches the model;
text from agents (labels, memos, merchants) must not hold anything shaped like a card number."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CARD_NUMBER_RULE", "clean_text", "looks_like_card_number"]

#: Digits joined by anything that is not a letter or digit (spaces, dots, dashes, slashes, zero-width...).
_SEPARATED_DIGITS = re.compile(r"\d(?:[\W_]*\d)*")
#: Why such text is refused (a tool's validation error names the field, then this).
CARD_NUMBER_RULE = (
    "looks like a card number (a run of thirteen or more digits, with or without separators); "
    "card numbers never belong in free text"
)


def looks_like_card_number(text: str) -> bool:
    """Whether ``text`` holds 13 or more digits (any script) with nothing but separators between them.

    Stricter than the log filter: no Luhn check, any separators, mixed or repeated, and longer runs too
    (they hold a 13-19 digit number). Letters break a run, so ids such as UUIDs stay allowed.
    """
    return any(sum(ch.isdigit() for ch in run.group()) >= 13 for run in _SEPARATED_DIGITS.finditer(text))


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
