"""``serve --workers 2``: two processes on one port and one database; limits hold across them.

One emulator on a loopback port, ``interlace-mcp serve --transport http --workers 2`` on SQLite or
PostgreSQL, one agent token. 60 concurrent ``top_up_card`` calls of 5.00 against 100.00 of daily room
(over several connections, so both workers take calls): exactly 20 complete, the rest are ``[daily_limit]``
refusals; the emulator's loads equal the ledger's committed total; the audit chain verifies.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from e2e.support import Emulator, free_port, interlace_command, wait_for_port
from helpers import BOTH_BACKENDS, call
from interlace_mcp.audit import AuditLog
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import ACCOUNT_ID

pytestmark = [pytest.mark.anyio, pytest.mark.slow, BOTH_BACKENDS]

POLICY = """\
[defaults]
per_transaction = "50.00"
daily = "100.01"
monthly = "none"
max_active_cards = 5
"""
AGENT = "fleet"
CALLS = 60
CONNECTIONS = 6
TOP_UP = "5.00"


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def served(tmp_path: Path, emulator: Emulator, database_url: str) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """(token, base URL, the serve process) of one ``serve --workers 2``."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    env = emulator.server_env(
        tmp_path / "state",
        INTERLACE_DATABASE_URL=database_url,
        INTERLACE_POLICY_FILE=str(policy),
        INTERLACE_RATE_LIMIT_PER_MINUTE="100000",
        INTERLACE_LOG_LEVEL="WARNING",
    )
    minted = subprocess.run(
        interlace_command("agents", "token", AGENT), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip().splitlines()[0]
    port = free_port()
    output = tmp_path / "serve.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("serve", "--transport", "http", "--port", str(port), "--workers", "2"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_for_port(port, proc, output, timeout=30)
            yield token, f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@asynccontextmanager
async def connect(base: str, token: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            yield client


async def _top_up(base: str, token: str, card_id: str, ids: list[str], outcomes: list[tuple[str, Any]]) -> None:
    async with connect(base, token) as c:
        for request_id in ids:
            result = await c.call_tool("top_up_card", {"card_id": card_id, "amount": TOP_UP, "request_id": request_id})
            if result.is_error:
                outcomes.append(("refused", result.content[0].text))  # type: ignore[union-attr]
            else:
                outcomes.append(("ok", result.structured_content))


async def test_two_workers_on_one_port_never_exceed_the_daily_limit_together(
    served: tuple[str, str, subprocess.Popen[bytes]], emulator: Emulator, database_url: str
) -> None:
    """60 concurrent top-ups of 5.00 over 6 connections to 2 workers: exactly 20 complete; books agree."""
    token, base, proc = served
    if sys.platform == "linux":
        assert len(_children(proc.pid)) >= 2  # the supervisor and its two workers
    outcomes: list[tuple[str, Any]] = []
    with anyio.fail_after(120):
        async with connect(base, token) as c:
            card_id = (await call(c, "issue_card", {"amount": "0.01", "request_id": "fleet-issue"}))["card"]["card_id"]
        async with anyio.create_task_group() as tg:
            for n in range(CONNECTIONS):
                ids = [f"fleet-{i:03d}" for i in range(n, CALLS, CONNECTIONS)]
                tg.start_soon(_top_up, base, token, card_id, ids, outcomes)
    done = [payload for kind, payload in outcomes if kind == "ok"]
    refused = [payload for kind, payload in outcomes if kind == "refused"]
    assert all(r["status"] == "completed" for r in done), done[:3]
    assert all(text.startswith("[daily_limit] daily limit 100.01 USD") for text in refused), refused[:3]
    assert (len(done), len(refused)) == (20, CALLS - 20)
    state = emulator.state()
    assert Decimal(state["loaded_total"]) == Decimal("100.01")
    ledger = Ledger.from_url(database_url)
    try:
        scope = f"{emulator.base_url}#{ACCOUNT_ID}"
        assert ledger.committed_total(scope) == Decimal("100.01")
        assert ledger.reserved_total(scope) == Decimal("0")
    finally:
        ledger.close()
    with AuditLog.from_url(database_url) as audit:
        assert audit.verify().ok
