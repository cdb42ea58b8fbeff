"""Serve the emulator with uvicorn (``interlace-mcp sandbox``)."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from . import _seeds as seeds
from ._app import SandboxConnectionDropped, create_sandbox_app
from ._state import SandboxState

__all__ = ["run_sandbox", "sandbox_banner"]

logger = logging.getLogger(__name__)


def _hide_injected_drops(record: logging.LogRecord) -> bool:
    """Keep uvicorn from printing a traceback for every connection drop we injected on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], SandboxConnectionDropped))


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
) -> None:
    """Serve the emulator until interrupted. ``reset`` discards any saved state (back to seeds)."""
    state: SandboxState | None = None
    if state_path is not None:
        state_path = Path(state_path)
        if reset or not state_path.exists():
            state = SandboxState()
            state.save(state_path)
    app = create_sandbox_app(state, state_path=state_path)
    url_host = f"[{host}]" if ":" in host else host
    print(sandbox_banner(f"http://{url_host}:{port}", state_path), flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)  # Config has configured uvicorn's loggers by now
    logging.getLogger("uvicorn.error").addFilter(_hide_injected_drops)
    server.run()
