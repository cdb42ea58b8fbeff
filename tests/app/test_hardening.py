"""Storage hardening: request records expire, a retry never runs beside its first call, state files are private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from helpers import BOTH_BACKENDS, Clock, ServerFactory, call, refuse, runtime, sandbox_of
from interlace_mcp.app import maintain
from interlace_mcp.config import Settings
from interlace_mcp.server import build_server

pytestmark = pytest.mark.anyio

DAY = 24 * 3600
TRANSFER_IN = "/open-api/v3/cards/transfer-in"


# ---- retention (hardening 6) ----------------------------------------------------------------------------


@BOTH_BACKENDS
async def test_request_records_older_than_90_days_are_purged_at_startup_and_daily(
    make_server: ServerFactory, clock: Clock
) -> None:
    """A 91-day-old completed request is gone after a restart; one aging past 90 days goes in the next daily round."""
    server = make_server()
    rt = runtime(server)
    async with Client(server) as c:
        await call(c, "issue_card", {"amount": "1.00", "request_id": "old"})
    clock.advance(91 * DAY)
    async with Client(server) as c:  # a restart: the runtime opens again and purges first
        gone = await refuse(c, "get_request_status", {"request_id": "old"})
        await call(c, "issue_card", {"amount": "1.00", "request_id": "recent"})
        clock.advance(89 * DAY)
        await maintain(rt)  # the daily round, 89 days later: still kept
        kept = await call(c, "get_request_status", {"request_id": "recent"})
        clock.advance(2 * DAY)
        await maintain(rt)  # 91 days old now
        purged = await refuse(c, "get_request_status", {"request_id": "recent"})
        status = await call(c, "get_spend_status", {})
    assert gone.startswith("[not_found]") and purged.startswith("[not_found]")
    assert kept["status"] == "completed"
    assert rt.ledger.committed_total(rt.scope) == 2  # spend stays on the books; only the request records go
    assert status["active_cards"] == 2


# ---- concurrent retries (hardening 7) ---------------------------------------------------------------------


async def _wait_for_request(sandbox: Any, path: str, count: int) -> None:
    """Until the emulator has received ``count`` requests to ``path`` (the first call is then in flight)."""
    with anyio.fail_after(10):
        while sum(n for label, n in sandbox.requests.items() if path in label) < count:
            await anyio.sleep(0.01)


def _requests_to(sandbox: Any, path: str) -> int:
    return sum(n for label, n in sandbox.requests.items() if path in label)


async def test_a_retry_while_the_first_call_is_in_flight_waits_for_it_in_one_process(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Same request_id twice at once in one server: Interlace sees one transfer-in; the retry replays its result."""
    server = make_server()
    sandbox = sandbox_of(sandbox_app)
    results: dict[str, dict[str, Any]] = {}
    async with Client(server) as a, Client(server) as b:
        card_id = (await call(a, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(TRANSFER_IN, "latency", delay_ms=400, times=1)
        args = {"card_id": card_id, "amount": "1.00", "request_id": "slow"}
        before = _requests_to(sandbox, TRANSFER_IN)

        async def first() -> None:
            results["first"] = await call(a, "top_up_card", args)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await _wait_for_request(sandbox, TRANSFER_IN, before + 1)
            results["retry"] = await call(b, "top_up_card", args)
    assert _requests_to(sandbox, TRANSFER_IN) == before + 1  # never a second execution, not even de-duplicated
    assert results["first"]["status"] == "completed" and results["first"]["replayed"] is False
    assert results["retry"]["status"] == "completed" and results["retry"]["replayed"] is True
    assert results["retry"]["transaction_id"] == results["first"]["transaction_id"]
    loads = [m for m in sandbox.snapshot()["movements"] if m["kind"] == "transfer_in"]
    assert len(loads) == 1


@BOTH_BACKENDS
async def test_a_retry_on_another_instance_while_the_first_call_is_in_flight_answers_in_progress(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """Two runtimes on one database: the second instance never executes the request the first is executing."""
    server_a, server_b = make_server(), make_server()
    sandbox = sandbox_of(sandbox_app)
    results: dict[str, dict[str, Any]] = {}
    async with Client(server_a) as a, Client(server_b) as b:
        card_id = (await call(a, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox.add_fault(TRANSFER_IN, "latency", delay_ms=400, times=1)
        args = {"card_id": card_id, "amount": "1.00", "request_id": "slow"}
        before = _requests_to(sandbox, TRANSFER_IN)

        async def first() -> None:
            results["first"] = await call(a, "top_up_card", args)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await _wait_for_request(sandbox, TRANSFER_IN, before + 1)
            results["retry"] = await call(b, "top_up_card", args)
        results["later"] = await call(b, "top_up_card", args)
    assert _requests_to(sandbox, TRANSFER_IN) == before + 1
    assert results["first"]["status"] == "completed"
    assert results["retry"]["status"] == "in_progress" and "still being executed" in results["retry"]["message"]
    assert results["later"]["status"] == "completed" and results["later"]["replayed"] is True
    assert results["later"]["transaction_id"] == results["first"]["transaction_id"]


# ---- file modes (hardening 8) ------------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_state_files_are_0600_and_the_state_dir_0700_whatever_the_umask(tmp_path: Path) -> None:
    """With umask 022: ledger, its -wal/-shm, the audit anchor and the emulator's state file are 0600; the dir 0700."""
    state = tmp_path / "state"
    server = build_server(Settings(_env_file=None, state_dir=state))  # type: ignore[call-arg]
    rt = runtime(server)
    try:
        async with Client(server) as c:
            await call(c, "issue_card", {"amount": "1.00", "request_id": "files"})
            ledger = state / "interlace-mcp.sqlite3"
            files = [
                ledger,
                Path(f"{ledger}-wal"),
                Path(f"{ledger}-shm"),
                Path(f"{ledger}.audit-head"),
                state / "sandbox-state.json",
            ]
            modes = {path.name: _mode(path) for path in files}
    finally:
        rt.close()
    assert _mode(state) == 0o700
    assert modes == {path.name: 0o600 for path in files}
