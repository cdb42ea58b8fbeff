"""A stdio deployment: the client is asked to open the approval page, the operator decides with the CLI in
another process, and the call that waited sees the decision in the shared database and completes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult

from e2e.support import child_env, interlace_command

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
POLICY = (
    '[defaults]\nper_transaction = "100.00"\ndaily = "100.00"\napproval_above = "25.00"\n'
    'transfer_payees = ["sandbox-payee"]\n'
)
ARGS = {"payee": "sandbox-payee", "amount": "40.00", "request_id": "big"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_over_stdio_a_cli_approval_in_another_process_completes_the_waiting_call(
    tmp_path: Path, mode: str
) -> None:
    """The stdio server asks its client to open the page, then polls the database: a decision made by
    `interlace-mcp approvals approve` (another process) lets the same call complete, once."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    env = child_env(
        tmp_path / "state",
        INTERLACE_POLICY_FILE=str(policy),
        INTERLACE_PUBLIC_URL="http://127.0.0.1:8767",
        INTERLACE_APPROVAL_WAIT_SECONDS="60",
    )
    urls: list[str] = []
    opened = anyio.Event()

    async def browser(context: Any, params: ElicitRequestParams) -> ElicitResult:
        assert params.mode == "url"
        urls.append(params.url)
        opened.set()
        return ElicitResult(action="accept")

    results: list[CallToolResult] = []
    params = StdioServerParameters(command=sys.executable, args=["-m", "interlace_mcp"], env=env, cwd=tmp_path)
    with (tmp_path / "server.stderr").open("w", encoding="utf-8") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=errlog), mode=mode, elicitation_callback=browser) as c:

            async def agent() -> None:
                results.append(await c.call_tool("create_transfer", ARGS))

            async with anyio.create_task_group() as tg:
                tg.start_soon(agent)
                await opened.wait()
                approval_id = urls[0].rsplit("/", 1)[1]
                decided = await anyio.run_process(
                    interlace_command("approvals", "approve", approval_id, "--by", "erin"), env=env, cwd=tmp_path
                )
                assert b"approved" in decided.stdout
            again = await c.call_tool(
                "create_transfer", {"payee": "sandbox-payee", "amount": "40.00", "request_id": "big"}
            )
    assert urls == [f"http://127.0.0.1:8767/dashboard/approvals/{approval_id}"]
    done = results[0].structured_content
    assert done is not None and done["status"] == "completed", results[0].content
    assert again.structured_content is not None and again.structured_content["replayed"] is True
