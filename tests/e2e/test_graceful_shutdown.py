"""Graceful shutdown: SIGTERM while a money call is in flight lets it finish, then the server exits cleanly."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from e2e.support import Emulator, free_port, interlace_command, wait_for_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_in_flight_top_up_finishes_after_sigterm(tmp_path: Path, emulator: Emulator, signum: int) -> None:
    """The slow top-up (1.5 s upstream latency) completes and is recorded; then the process exits cleanly."""
    env = emulator.server_env(tmp_path / "state", INTERLACE_LOG_LEVEL="WARNING")
    minted = subprocess.run(
        interlace_command("agents", "token", "shopper"), env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    token = minted.stdout.strip().splitlines()[0]
    port = free_port()
    output = tmp_path / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("serve", "--transport", "http", "--port", str(port)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            wait_for_port(port, proc, output, timeout=30)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c:
                    issued = await c.call_tool("issue_card", {"amount": "5.00", "request_id": "i"})
                    assert not issued.is_error, issued.content
                    card_id = (issued.structured_content or {})["card"]["card_id"]
                    httpx.post(
                        f"{emulator.base_url}/_sandbox/faults",
                        json={
                            "path": "/open-api/v3/cards/transfer-in",
                            "kind": "latency",
                            "delay_ms": 1500,
                            "times": 1,
                        },
                        timeout=10,
                    ).raise_for_status()
                    result: dict[str, Any] = {}

                    async def top_up() -> None:
                        args = {"card_id": card_id, "amount": "2.00", "request_id": "slow"}
                        result["r"] = await c.call_tool("top_up_card", args)

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(top_up)
                        await anyio.sleep(0.5)  # the call is now waiting on the slow upstream
                        proc.send_signal(signum)
            with anyio.fail_after(30):
                while proc.poll() is None:
                    await anyio.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    top = result["r"]
    assert not top.is_error, top.content
    assert (top.structured_content or {})["status"] == "completed"
    # uvicorn re-raises the signal once it has shut down gracefully; Ctrl-C ends with 130, quietly.
    assert proc.returncode in (0, -signum, 130), output.read_text(errors="replace")
    assert "Traceback" not in output.read_text(errors="replace")
    loads = [m for m in emulator.state()["movements"] if m["kind"] == "transfer_in"]
    assert [m["amount"] for m in loads if m["clientTransactionId"]] == ["2.00"]
