"""The tool registry: one ToolSpec per tool (name, toolset, title, all four annotations).

``--read-only`` and ``--toolsets`` decide which tools are registered at all; read-only is derived from
the annotation, not a second list. Every tool is wrapped once here: policy ``tools`` allow-list, the
per-agent rate limit, and refusals returned as ``[code] ...`` error results. Unknown arguments are
rejected (``additionalProperties: false``) instead of being silently dropped.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict

from interlace_mcp.app import RefusalNote, Runtime
from interlace_mcp.audit import AuditWriteError
from interlace_mcp.client import InterlaceError
from interlace_mcp.money import format_amount
from interlace_mcp.operations import (
    CardTransfer,
    CloseCard,
    CreateTransfer,
    FundAccount,
    IssueCard,
    MoneyMovement,
    Refusal,
)
from interlace_mcp.tools import account, cards, funding, spend, transfers
from interlace_mcp.tools._caller import Caller, rate_limited
from interlace_mcp.tools._errors import as_refusal, refusal_code, refusal_result
from interlace_mcp.tools._human import OpenUrlRound
from interlace_mcp.tools._progress import reporting
from interlace_mcp.tools._schema import compact_schema, output_schema

__all__ = ["SPECS", "TOOLSETS", "ToolSpec", "build_tool", "readme_table", "select_tools", "validation_errors"]

TOOLSETS = ("cards", "transfers", "account", "spend", "funding")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    toolset: str
    title: str
    fn: Callable[..., Awaitable[Any]]
    annotations: ToolAnnotations
    #: Moves money (request_id, policy, ledger).
    money: bool = False
    #: Registered only when no real money can move.
    sandbox_only: bool = False

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)


def _ann(*, read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


# Money tools are idempotent by request_id; open-world because they act on Interlace.
SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(IssueCard.SPEC.name, "cards", "Issue an agent card", cards.issue_card,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True), money=True),
    ToolSpec(CardTransfer.SPECS["in"].name, "cards", "Top up a card", cards.top_up_card,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True), money=True),
    ToolSpec("get_card", "cards", "Get a card", cards.get_card,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=True)),
    ToolSpec("list_cards", "cards", "List my cards", cards.list_cards,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=True)),
    ToolSpec("get_card_transactions", "cards", "Card transactions", cards.get_card_transactions,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=True)),
    ToolSpec("freeze_card", "cards", "Freeze a card", cards.freeze_card,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True)),
    ToolSpec("unfreeze_card", "cards", "Unfreeze a card", cards.unfreeze_card,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True)),
    # Irreversible: the card is deleted.
    ToolSpec(CloseCard.SPEC.name, "cards", "Close a card", cards.close_card,
             _ann(read_only=False, destructive=True, idempotent=True, open_world=True), money=True),
    ToolSpec(CardTransfer.SPECS["out"].name, "cards", "Withdraw from a card", cards.withdraw_from_card,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True), money=True),
    # Irreversible: money leaves to a third party.
    ToolSpec(CreateTransfer.SPEC.name, "transfers", "Transfer to a payee", transfers.create_transfer,
             _ann(read_only=False, destructive=True, idempotent=True, open_world=True), money=True),
    ToolSpec("list_payees", "transfers", "List payees", transfers.list_payees,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=False)),
    ToolSpec("get_balance", "account", "Infinity balance", account.get_balance,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=True)),
    ToolSpec("get_request_status", "account", "Request status", account.get_request_status,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=False)),
    ToolSpec("get_spend_status", "spend", "Spend status", spend.get_spend_status,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=False)),
    # Hands out a secret that authorizes a payment: not read-only, so a --read-only server never offers it and
    # clients that confirm side-effecting tools ask their user first. It changes nothing (idempotent) and reads
    # only what Interlace already notified (closed world).
    ToolSpec("get_3ds_code", "cards", "Get a 3-D Secure code", cards.get_3ds_code,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=False)),
    # Reads the wallet's address (creates one where Interlace allows: no money moves).
    ToolSpec("get_deposit_address", "funding", "Stablecoin deposit address", funding.get_deposit_address,
             _ann(read_only=True, destructive=False, idempotent=True, open_world=True)),
    # Money comes into this account's Infinity balance (not spend; governed by fund_daily).
    ToolSpec(FundAccount.SPEC.name, "funding", "Fund the account from stablecoins", funding.fund_account,
             _ann(read_only=False, destructive=False, idempotent=True, open_world=True), money=True),
    # Each call is a new authorization, so not idempotent.
    ToolSpec("simulate_purchase", "cards", "Simulate a purchase (sandbox)", cards.simulate_purchase,
             _ann(read_only=False, destructive=False, idempotent=False, open_world=True), sandbox_only=True),
)  # fmt: skip


def select_tools(*, read_only: bool, toolsets: list[str] | None, sandbox: bool) -> list[ToolSpec]:
    """The tools to register. Unknown toolset names fail at startup; read-only beats a toolset."""
    if toolsets is not None:
        unknown = sorted(set(toolsets) - set(TOOLSETS))
        if unknown:
            raise ValueError(
                f"INTERLACE_TOOLSETS: unknown toolset(s) {', '.join(unknown)}; known: {', '.join(TOOLSETS)}"
            )
    chosen = []
    for spec in SPECS:
        if toolsets is not None and spec.toolset not in toolsets:
            continue
        if read_only and not spec.read_only:
            continue
        if spec.sandbox_only and not sandbox:
            continue
        chosen.append(spec)
    return chosen


def _guard(spec: ToolSpec) -> Callable[..., Awaitable[Any]]:
    """The gate (tool allow-list, rate limit), refusal handling, metrics and the call's audit record around one
    tool function (signature preserved). The caller was resolved before: nothing here reads the policy again."""
    what = spec.name.replace("_", " ")

    @functools.wraps(spec.fn)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        caller = kwargs["caller"]
        assert isinstance(caller, Caller), "every tool takes a resolved caller"
        metrics = caller.runtime.metrics
        started = time.perf_counter()
        try:
            if caller.ctx is not None:
                with reporting(caller.ctx):  # progress while the call waits on Interlace
                    result = await checked(*args, **kwargs)
            else:
                result = await checked(*args, **kwargs)
        except OpenUrlRound:  # a 2026-07-28 round that asks the client to open a page: not a failure
            metrics.tool_call(spec.name, time.perf_counter() - started)
            raise
        except Exception:  # a crash (the SDK answers "Error executing tool"); a cancellation is not counted
            metrics.tool_call(spec.name, time.perf_counter() - started, error=True)
            raise
        failed = isinstance(result, CallToolResult) and result.is_error
        metrics.tool_call(spec.name, time.perf_counter() - started, refusal=refusal_code(result) if failed else None)
        if failed and spec.money:
            _note_refusal(spec, caller, kwargs, result)
        return as_call_result(result)

    async def checked(*args: Any, **kwargs: Any) -> Any:
        caller: Caller = kwargs["caller"]
        rt, agent = caller.runtime, caller.agent
        result: Any
        if caller.gate:
            result = refusal_result(Refusal(caller.gate))
        elif (wait := rt.rate_limiter.check(agent)) is not None:
            result = refusal_result(Refusal([rate_limited(rt, agent, wait)]))
        else:
            try:
                result = await spec.fn(*args, **kwargs)
            except OpenUrlRound:
                # The client is asked to show the human a page of ours: a money request's approval page (it is
                # pending; the retry -- the next round of this call -- waits for the decision), or a reveal link.
                await rt.record(
                    agent=agent,
                    tool=spec.name,
                    event="tool_call",
                    arguments=_audit_arguments(kwargs),
                    amount=str(kwargs["amount"]) if "amount" in kwargs else None,
                    request_id=kwargs.get("request_id"),
                    outcome="ok:pending_approval" if spec.money else "ok:asked_to_open",
                )
                raise
            except (Refusal, InterlaceError, AuditWriteError) as exc:
                refusal = as_refusal(exc, what=what)
                assert refusal is not None
                result = refusal_result(refusal)
                if refusal.audited:
                    return result  # recorded by the runner with its ledger write
        if isinstance(result, MoneyMovement) and result.is_audited:
            return result  # the runner recorded the decision and the outcome (with the arguments)
        await rt.record(
            agent=agent,
            tool=spec.name,
            event="tool_call",
            arguments=_audit_arguments(kwargs),
            amount=str(kwargs["amount"]) if "amount" in kwargs else None,
            request_id=kwargs.get("request_id"),
            outcome=_outcome(result),
        )
        return result

    return guarded


def as_call_result(result: Any) -> Any:
    """A typed result as the client gets it: the structured content complete (every field, nulls included, as the
    output schema describes it) and the text content the same JSON without its null fields -- what a model reads
    from a client that shows only text, without ten ``null``s per card. Error results pass as they are (no
    structured content: tools/_errors.py). The SDK validates the structured content against the output schema."""
    if isinstance(result, CallToolResult) or not isinstance(result, BaseModel):
        return result
    structured = result.model_dump(mode="json", by_alias=True)
    text = json.dumps(_without_nulls(structured), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(inner) for key, inner in value.items() if inner is not None}
    if isinstance(value, list):
        return [_without_nulls(inner) for inner in value]
    return value


def _note_refusal(spec: ToolSpec, caller: Caller, kwargs: dict[str, Any], result: CallToolResult) -> None:
    """Remember a money call's refusal by its request_id, so get_request_status can answer it (app/_notes.py)."""
    request_id = kwargs.get("request_id")
    first = result.content[0] if result.content else None
    if not isinstance(request_id, str) or not isinstance(first, TextContent):
        return
    rt = caller.runtime
    amount = kwargs.get("amount")
    note = RefusalNote(
        tool=spec.name,
        text=first.text,
        amount=format_amount(amount) if isinstance(amount, Decimal) else None,
        currency=str(kwargs.get("currency") or "USD"),
        at=rt.store.now(),
    )
    rt.refusals.note(rt.scope, caller.agent, request_id, note)


def _audit_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments as the agent sent them (amounts as strings); never the context or resolved values."""
    return {
        k: str(v) if isinstance(v, Decimal) else v
        for k, v in kwargs.items()
        if k not in ("ctx", "confirmation", "caller")
    }


def _outcome(result: Any) -> str:
    if isinstance(result, CallToolResult) and result.is_error:
        return f"refused:{refusal_code(result)}"
    status = getattr(result, "status", None)
    return f"ok:{status}" if isinstance(status, str) else "ok"


def build_tool(spec: ToolSpec) -> Tool:
    """An SDK Tool whose argument model forbids unknown arguments (advertised as additionalProperties: false)."""
    tool = Tool.from_function(
        _guard(spec),
        name=spec.name,
        title=spec.title,
        description=inspect.cleandoc(spec.fn.__doc__ or ""),
        annotations=spec.annotations,
        structured_output=True,
    )
    base = tool.fn_metadata.arg_model
    strict = cast(type[BaseModel], type(base.__name__, (base,), {"model_config": ConfigDict(extra="forbid")}))
    tool.fn_metadata.arg_model = strict  # type: ignore[assignment]  # a subclass of the SDK's own model
    tool.parameters = compact_schema(strict.model_json_schema(by_alias=True), keep_defaults=True)
    if tool.fn_metadata.output_schema is not None:  # read live by the SDK; results are still validated in full
        tool.fn_metadata.output_schema = output_schema(tool.fn_metadata.output_schema)
    return tool


async def validation_errors(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Rewrite the SDK's argument-validation errors as ``[validation_error] field: reason`` (no pydantic noise)."""
    result = await call_next(ctx)
    if ctx.method != "tools/call" or not isinstance(result, dict) or not result.get("isError"):
        return result
    content = result.get("content") or []
    if not content or not isinstance(content[0], dict) or not isinstance(content[0].get("text"), str):
        return result
    text: str = content[0]["text"]
    name = (ctx.params or {}).get("name", "")
    prefix = f"Error executing tool {name}: "
    if not text.startswith(prefix):
        return result
    body = text[len(prefix) :]
    first, _, rest = body.partition("\n")
    if " validation error" not in first:
        return result
    lines = [line.strip() for line in rest.splitlines() if line.strip() and not line.strip().startswith("For further")]
    problems = []
    for field, detail in zip(lines[0::2], lines[1::2], strict=False):
        detail = detail.split(" [type=", 1)[0].removeprefix("Value error, ")
        problems.append(f"{field}: {detail}")
    message = "[validation_error] " + "; ".join(problems) + "; nothing was changed"
    runtime = getattr(ctx, "lifespan_context", None)
    if isinstance(runtime, Runtime):  # rejected before the tool ran: counted here, without a duration
        runtime.metrics.tool_call(str(name), None, refusal="validation_error")
    # No structuredContent on an error result (tools/_errors.py says why); the text carries the code.
    result = {key: value for key, value in result.items() if key != "structuredContent"}
    return {**result, "content": [{"type": "text", "text": message}]}


def _argument_list(tool: Tool) -> str:
    schema = tool.parameters
    required = set(schema.get("required", []))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            parts.append(f"`{name}`")
        elif "default" in prop and prop["default"] is not None:
            parts.append(f"`{name}={json_default(prop['default'])}`")
        else:
            parts.append(f"`{name}?`")
    return ", ".join(parts) or "—"


def json_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def readme_table() -> str:
    """The README's tool table, derived from the registry (tests/test_readme.py keeps them equal)."""
    lines = [
        "| tool | toolset | read-only | money | arguments | does |",
        "|---|---|---|---|---|---|",
    ]
    for spec in SPECS:
        tool = build_tool(spec)
        summary = (tool.description or "").strip().splitlines()[0]
        flags = ("yes" if spec.read_only else "no", "yes" if spec.money else "no")
        name = f"`{spec.name}`" + (" (sandbox only)" if spec.sandbox_only else "")
        lines.append(f"| {name} | {spec.toolset} | {flags[0]} | {flags[1]} | {_argument_list(tool)} | {summary} |")
    return "\n".join(lines)
