"""Shared pytest configuration and fixtures: a server on the in-process emulator, per test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp.server import MCPServer
from starlette.applications import Starlette

from helpers import Clock, ServerFactory, write_policy
from interlace_mcp.config import Settings
from interlace_mcp.policy import Ledger
from interlace_mcp.sandbox import create_sandbox_app
from interlace_mcp.server import build_server
from interlace_mcp.tools._runtime import Runtime


@pytest.fixture
def anyio_backend() -> str:
    """Run anyio-marked tests on asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer INTERLACE_* variable or .env leaks into a test."""
    for name in list(os.environ):
        if name.startswith("INTERLACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox_app() -> Starlette:
    """A fresh in-memory emulator (its state: ``app.state.sandbox``)."""
    return create_sandbox_app()


@pytest.fixture
def make_server(tmp_path: Path, sandbox_app: Starlette, clock: Clock) -> ServerFactory:
    """Build a server on the in-process emulator with its own ledger; keyword args become settings."""

    def factory(*, policy: str | None = None, ledger: Ledger | None = None, **settings: Any) -> MCPServer[Runtime]:
        if policy is not None:
            settings["policy_file"] = write_policy(tmp_path / "policy.toml", policy)
        values: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "database_url": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
            **settings,
        }
        return build_server(
            Settings(_env_file=None, **values),  # type: ignore[call-arg]
            sandbox_app=sandbox_app,
            ledger=ledger or Ledger(tmp_path / "ledger.sqlite3", clock=clock),
            backoff=False,
        )

    return factory
