"""Serve the emulator with uvicorn (``interlace-mcp sandbox``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from . import _seeds as seeds
from ._app import SandboxConnectionDropped, create_sandbox_app
from ._state import FAULT_KINDS, SandboxState

__all__ = ["FaultSpec", "parse_fault", "run_sandbox", "sandbox_banner"]

logger = logging.getLogger(__name__)


def _hide_injected_drops(record: logging.LogRecord) -> bool:
    """Keep uvicorn from printing a traceback for every connection drop we injected on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], SandboxConnectionDropped))


@dataclass(frozen=True)
class FaultSpec:
    """One ``--fault PATH:KIND[:STATUS][:TIMES]`` (see :meth:`SandboxState.add_fault`)."""

    path: str
    kind: str
    status: int | None = None
    times: int | None = None

    def __str__(self) -> str:
        status = "" if self.status is None else f" status {self.status}"
        times = "until cleared" if self.times is None else f"{self.times} time(s)"
        return f"{self.kind}{status} on {self.path}, {times}"


def parse_fault(text: str) -> FaultSpec:
    """``PATH:KIND[:STATUS][:TIMES]``, e.g. ``/open-api/v3/cards/transfer-in:fail_after_commit:500:1``.

    STATUS may be empty (``/path:timeout::2``); ``fail_after_commit`` with STATUS 0 drops the connection
    after the change is applied. Raises ``argparse.ArgumentTypeError`` with the reason.
    """
    parts = text.split(":")
    if not 2 <= len(parts) <= 4 or not parts[0].startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected PATH:KIND[:STATUS][:TIMES] with an absolute PATH")
    path, kind = parts[0], parts[1]
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"{text!r}: KIND must be one of {', '.join(FAULT_KINDS)}")
    numbers: list[int | None] = []
    for name, raw in zip(("STATUS", "TIMES"), parts[2:], strict=False):
        if raw == "":
            numbers.append(None)
            continue
        if not raw.isascii() or not raw.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r}: {name} must be a whole number")
        numbers.append(int(raw))
    status, times = [*numbers, None, None][:2]
    if status is not None and not (400 <= status <= 599 or (status == 0 and kind == "fail_after_commit")):
        raise argparse.ArgumentTypeError(f"{text!r}: STATUS must be 400-599 (or 0 for fail_after_commit)")
    if times is not None and times < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: TIMES must be at least 1")
    return FaultSpec(path, kind, status, times)


class _Latency:
    """Delay every API request (not the ``/_sandbox/`` control API) by a fixed time."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith("/_sandbox/"):
            await anyio.sleep(self.seconds)
        await self.app(scope, receive, send)


def sandbox_banner(base_url: str, state_path: Path | None = None) -> str:
    """The seeds a developer needs to point a client at the emulator (printed on start)."""
    lines = [
        f"Interlace sandbox emulator listening on {base_url}",
        f"  client id           {seeds.CLIENT_ID}",
        f"  client secret       {seeds.CLIENT_SECRET}",
        f"  account id          {seeds.ACCOUNT_ID}",
        f"  Infinity balance id {seeds.INFINITY_BALANCE_ID}",
        f"  prepaid BIN id      {seeds.PREPAID_BIN_ID}",
        f"  cardholder id       {seeds.CARDHOLDER_ID}",
        f"  payee account id    {seeds.PAYEE_ACCOUNT_ID}",
        f"  payee balance id    {seeds.PAYEE_BALANCE_ID}",
        f"  crypto wallet id    {seeds.CRYPTO_WALLET_ID} ({seeds.INITIAL_USDC_BALANCE:,.2f} USDC)",
        f"  deposit address     {seeds.DEPOSIT_ADDRESS} (USDC on {seeds.DEPOSIT_CHAIN})",
        f"  state file          {state_path if state_path is not None else '(in memory)'}",
        f"  control API         {base_url}/_sandbox/state",
    ]
    return "\n".join(lines)


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8766,
    *,
    state_path: Path | None = None,
    reset: bool = False,
    faults: Sequence[FaultSpec] = (),
    latency_ms: int = 0,
) -> None:
    """Serve the emulator until interrupted. ``reset`` discards any saved state (back to seeds).

    ``faults`` are registered at start (fault rules are never saved with the state); ``latency_ms``
    delays every API request.
    """
    state: SandboxState | None = None
    if state_path is not None:
        state_path = Path(state_path)
        if reset or not state_path.exists():
            state = SandboxState()
            state.save(state_path)
    if latency_ms < 0:
        raise ValueError("latency_ms must not be negative")
    app = create_sandbox_app(state, state_path=state_path, tick_seconds=1.0)
    live: SandboxState = app.state.sandbox
    for fault in faults:
        live.add_fault(fault.path, fault.kind, status=fault.status, times=fault.times)
    url_host = f"[{host}]" if ":" in host else host
    print(sandbox_banner(f"http://{url_host}:{port}", state_path), flush=True)
    for fault in faults:
        print(f"  fault               {fault}", flush=True)
    if latency_ms:
        print(f"  latency             {latency_ms} ms on every API request", flush=True)
    served: ASGIApp = _Latency(app, latency_ms / 1000.0) if latency_ms else app
    import uvicorn

    config = uvicorn.Config(served, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)  # Config has configured uvicorn's loggers by now
    logging.getLogger("uvicorn.error").addFilter(_hide_injected_drops)
    server.run()
