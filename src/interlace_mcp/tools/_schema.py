"""Compact JSON schemas for tools/list: the same constraints in fewer bytes.

Every client sends tools/list to the model on every turn, so its size is a cost paid again and again. pydantic's
schemas repeat what a model never needs: a ``title`` on every property ("Card Id" next to ``card_id``),
``anyOf: [{type: string}, {type: null}]`` for every optional field, and ``default: null``. This rewrites them
into equivalent schemas (the same documents validate): no titles, ``type: [X, "null"]`` for a nullable simple
type, and no annotation-only defaults. Descriptions, patterns, bounds, enums and ``required`` stay.

Output schemas publish the shape of a result -- field names, types, enums -- and nothing a model
needs to read: most hosts never show them to the model, and clients validate results against them. What
the fields mean is said where models read it, in the tool descriptions and the server instructions (the
result models in operations/_results.py keep their field docs for developers). A result model nested in
another tool's result (a card in a money movement) is published as an object with one sentence naming the
tool that returns it whole: a looser schema, still true of every result (the server validates each result
against the full model before it is sent).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["compact_schema", "output_schema"]

#: Result models nested in other results, published there as one sentence.
NESTED: dict[str, str] = {
    "CardResult": "a card: the fields get_card returns",
    "MoneyMovement": "the money tool's own result, as it returned it (replayed: true)",
}

#: Keywords whose value is one subschema, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "$defs", "patternProperties")


def compact_schema(schema: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """An equivalent, smaller schema. ``keep_defaults``: input schemas keep their non-null defaults (what an
    omitted argument means); output schemas drop them all (a result always carries every field)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "default" and (value is None or not keep_defaults):
            continue
        if key in _ONE and isinstance(value, dict):
            out[key] = compact_schema(value, keep_defaults=keep_defaults)
        elif key in _MANY and isinstance(value, list):
            out[key] = [compact_schema(v, keep_defaults=keep_defaults) if isinstance(v, dict) else v for v in value]
        elif key in _MAP and isinstance(value, dict):
            out[key] = {
                name: compact_schema(v, keep_defaults=keep_defaults) if isinstance(v, dict) else v
                for name, v in value.items()
            }
        else:
            out[key] = value
    return _nullable(out)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [S, {type: null}]`` with S a plain typed schema -> S with ``type: [S.type, "null"]``."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return schema
    (other,) = [o for o in options if o != {"type": "null"}]
    kind = other.get("type")
    if not isinstance(kind, str) or "const" in other or any(k in schema for k in other if k != "type"):
        return schema  # a $ref, a const, a union of several types or clashing keys: left as it is
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    merged.update(other)
    merged["type"] = [kind, "null"]
    if isinstance(other.get("enum"), list):
        merged["enum"] = [*other["enum"], None]  # an enum admits null only by listing it
    return merged


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The published output schema: the shape only (see the module doc), nested shared models as a sentence."""
    shape = _shape(schema)
    defs = dict(shape.pop("$defs", {}))
    stubs = {f"#/$defs/{name}": {"type": "object", "description": NESTED[name]} for name in defs if name in NESTED}
    shape = _inlined(shape, stubs)
    if used := _used(shape, defs):
        shape["$defs"] = used
    return compact_schema(shape, keep_defaults=False)


def _shape(value: Any) -> Any:
    """``value`` without field descriptions, ``required`` and ``additionalProperties: false``: results gain
    fields over time and their optional fields are null, so a client learns the shape and never rejects a
    newer server's result for it."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if (key == "description" and isinstance(item, str)) or (key == "additionalProperties" and item is False):
                continue
            if key == "required" and isinstance(item, list):
                continue
            if key in _MAP and isinstance(item, dict):
                out[key] = {name: _shape(sub) for name, sub in item.items()}
            else:
                out[key] = _shape(item)
        return out
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return value


def _inlined(value: Any, stubs: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every ``$ref`` to a stubbed model replaced by the stub itself."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref in stubs:
            return {**stubs[ref], **{k: v for k, v in value.items() if k != "$ref"}}
        return {k: _inlined(v, stubs) for k, v in value.items()}
    if isinstance(value, list):
        return [_inlined(v, stubs) for v in value]
    return value


def _used(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Only the definitions something still refers to (a stub drops what the full model needed)."""
    used: set[str] = set()
    pending = [json.dumps(schema)]
    while pending:
        text = pending.pop()
        for name, definition in defs.items():
            if name not in used and f'"#/$defs/{name}"' in text:
                used.add(name)
                pending.append(json.dumps(definition))
    return {name: definition for name, definition in defs.items() if name in used}
