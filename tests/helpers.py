"""Test helpers shared by the suites (importable as ``helpers``; pytest adds tests/ to sys.path)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp import Client
from mcp.server import MCPServer
from mcp.types import CallToolResult
from starlette.applications import Starlette

from interlace_mcp.app import Runtime
from interlace_mcp.sandbox import SandboxState

ServerFactory = Callable[..., MCPServer[Runtime]]

#: Run a database-backed test on SQLite and on PostgreSQL (the ``backend`` fixture in conftest.py).
BOTH_BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


class Clock:
    """A settable wall clock (epoch seconds) shared by the ledger under test."""

    def __init__(self, now: float = 1_795_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sandbox_of(app: Starlette) -> SandboxState:
    state = app.state.sandbox
    assert isinstance(state, SandboxState)
    return state


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def runtime(server: MCPServer[Runtime]) -> Runtime:
    rt = server.interlace_runtime  # type: ignore[attr-defined]
    assert isinstance(rt, Runtime)
    return rt


async def call(c: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await c.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The text of an error result, which is all it carries (no structured content: strict clients validate
    structured content against the tool's output schema, which describes results, not refusals)."""
    assert result.is_error, result.structured_content
    assert result.structured_content is None, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def refuse(c: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; return the error text."""
    return error_text(await c.call_tool(tool, args))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Run the app under uvicorn on a loopback port (real sockets, as SSE and browsers need)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(15):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


#: Nothing an agent's client receives may hand it an operator's keys (issue 10): no approval command, no
#: operator token.
FORBIDDEN_FOR_AGENTS = ("approvals approve", "approvals deny", "itl_op_")


class AgentView:
    """Everything the official client received in this test session -- tool results (every round), the
    questions and URLs it was asked to show (both eras), progress messages -- scanned for operator keys."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.leaks: list[str] = []

    def look(self, kind: str, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        self.seen[kind] = self.seen.get(kind, 0) + 1
        self.leaks += [f"{kind}: {text[:400]}" for bad in FORBIDDEN_FOR_AGENTS if bad in text]
