"""Issue 12, item 5: progress notifications while a tool waits on Interlace (a slow answer, each retry of a
retryable failure), sent only to a client that sent a progress token -- through the official mcp Client in both
protocol eras, with the emulator's fault injection."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.types import ProgressNotification, ServerNotification

from helpers import ServerFactory, call, sandbox_of

pytestmark = pytest.mark.anyio
MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
V3 = "/open-api/v3"


class Progress:
    """The client's progress callback: every (progress, total, message) it received, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message or ""))

    @property
    def messages(self) -> list[str]:
        return [m for _, _, m in self.seen]


class Notifications:
    """Every notification the client's session received (a legacy session hands them all to this handler)."""

    def __init__(self) -> None:
        self.progress: list[Any] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ServerNotification):
            message = message.root if hasattr(message, "root") else message
        if isinstance(message, ProgressNotification):
            self.progress.append(message)


@MODES
async def test_a_slow_upstream_answer_sends_progress_naming_what_the_call_waits_for(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """Interlace takes 2 s to issue the card: the client that asked for progress hears that the call is waiting
    on Interlace, and for which request; the call then completes as usual."""
    sandbox_of(sandbox_app).add_fault(f"{V3}/prepaid-card", "latency", delay_ms=2000, times=1)
    progress = Progress()
    async with Client(make_server(), mode=mode) as c:
        result = await c.call_tool("issue_card", {"amount": "5.00", "request_id": "slow"}, progress_callback=progress)
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    waits = [m for m in progress.messages if "waiting for Interlace" in m]
    assert waits, progress.seen
    assert "POST /prepaid-card" in waits[0] and "attempt 1 of 4" in waits[0], waits
    assert all("accountId" not in m and "?" not in m for m in progress.messages)  # the path only, no query
    values = [p for p, _, _ in progress.seen]
    assert values == sorted(values) and len(set(values)) == len(values), values  # progress only increases


@MODES
async def test_each_retry_of_a_failed_upstream_request_is_announced_with_the_attempt_and_why(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """Interlace answers 503 once: the retry is announced (the status, which attempt comes next); the read then
    answers as usual."""
    sandbox_of(sandbox_app).add_fault(f"{V3}/cards/wallets", "error", status=503, times=1)
    progress = Progress()
    async with Client(make_server(), mode=mode) as c:
        result = await c.call_tool("get_balance", {}, progress_callback=progress)
    assert not result.is_error and result.structured_content is not None
    retries = [m for m in progress.messages if "retrying" in m]
    assert len(retries) == 1, progress.seen
    assert "HTTP 503" in retries[0] and "GET /cards/wallets" in retries[0] and "attempt 2 of 4" in retries[0]


@MODES
async def test_a_money_call_announces_its_retry_too(make_server: ServerFactory, sandbox_app: Any, mode: str) -> None:
    """A top-up whose first transfer-in answers 502: the retry (same request, same idempotency key) is announced,
    and the money moves once."""
    progress = Progress()
    async with Client(make_server(), mode=mode) as c:
        card_id = (await call(c, "issue_card", {"amount": "5.00", "request_id": "i"}))["card"]["card_id"]
        sandbox_of(sandbox_app).add_fault(f"{V3}/cards/transfer-in", "error", status=502, times=1)
        args = {"card_id": card_id, "amount": "1.00", "request_id": "t"}
        result = await c.call_tool("top_up_card", args, progress_callback=progress)
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    retries = [m for m in progress.messages if "retrying" in m]
    assert len(retries) == 1 and "HTTP 502" in retries[0] and "POST /cards/transfer-in" in retries[0], progress.seen
    loads = [m for m in sandbox_of(sandbox_app).snapshot()["movements"] if m["kind"] == "transfer_in"]
    assert [m["amount"] for m in loads] == ["1.00"]  # the top-up moved once (the card was issued loaded)


@MODES
async def test_no_progress_token_no_progress_notifications(
    make_server: ServerFactory, sandbox_app: Any, mode: str
) -> None:
    """The same slow and retried calls from a client that sent no progress token: not one progress notification
    reaches the client's session (a legacy session hands every notification to its message handler)."""
    sandbox = sandbox_of(sandbox_app)
    sandbox.add_fault(f"{V3}/prepaid-card", "latency", delay_ms=1500, times=1)
    sandbox.add_fault(f"{V3}/cards/wallets", "error", status=503, times=1)
    seen = Notifications()
    async with Client(make_server(), mode=mode, message_handler=seen) as c:
        await call(c, "issue_card", {"amount": "5.00", "request_id": "quiet"})
        await call(c, "get_balance", {})
        assert sandbox.faults == []  # both calls waited: the slow answer and the retry happened
        quiet = list(seen.progress)
        # The control: the same session with a token gets them (a legacy session's handler sees them too).
        progress = Progress()
        sandbox.add_fault(f"{V3}/cards/wallets", "error", status=503, times=1)
        await c.call_tool("get_balance", {}, progress_callback=progress)
    assert quiet == []
    assert any("retrying" in m for m in progress.messages), progress.seen
    if mode == "legacy":
        assert seen.progress, "the handler does see progress notifications that were sent"
