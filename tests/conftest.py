"""Shared pytest configuration and fixtures: a server on the in-process emulator, per test; the databases.

Database-backed tests run on SQLite by default; mark a test (or module) with ``helpers.BOTH_BACKENDS`` to
run it on SQLite and on PostgreSQL (``INTERLACE_TEST_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``; each test gets fresh schemas, dropped afterwards; the
PostgreSQL variants are skipped only when no server answers at that address).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server import MCPServer
from starlette.applications import Starlette

from helpers import AgentView, Clock, ServerFactory, runtime, write_policy
from interlace_mcp.app import Runtime
from interlace_mcp.config import Settings
from interlace_mcp.policy import Database, Ledger, redact_url
from interlace_mcp.sandbox import create_sandbox_app
from interlace_mcp.server import build_server

#: Read at import: the autouse fixture below clears INTERLACE_* variables before each test runs.
PG_URL = os.environ.get("INTERLACE_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
#: CI sets it: a missing PostgreSQL server fails the PostgreSQL variants instead of skipping them.
PG_REQUIRED = os.environ.get("INTERLACE_TEST_REQUIRE_PG") == "1"


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


# ---- what agents receive ----------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def agent_view() -> Iterator[AgentView]:
    """Spy (pass-through) on the SDK client's session for the whole run; fail at the end on any leak."""
    from mcp.client.session import ClientSession

    view = AgentView()
    call_tool = ClientSession.call_tool
    dispatch = ClientSession.dispatch_input_request

    async def seen_call_tool(self: ClientSession, *args: Any, **kwargs: Any) -> Any:
        callback = kwargs.get("progress_callback")
        if callback is not None:

            async def progress(done: float, total: float | None, message: str | None) -> None:
                view.look("progress", message or "")
                await callback(done, total, message)

            kwargs["progress_callback"] = progress
        result = await call_tool(self, *args, **kwargs)
        view.look("tool result", result.model_dump(mode="json") if hasattr(result, "model_dump") else result)
        return result

    async def seen_dispatch(self: ClientSession, ctx: Any, request: Any) -> Any:
        view.look("input request", request.model_dump(mode="json"))
        return await dispatch(self, ctx, request)

    patch = pytest.MonkeyPatch()
    patch.setattr(ClientSession, "call_tool", seen_call_tool)
    patch.setattr(ClientSession, "dispatch_input_request", seen_dispatch)
    yield view
    patch.undo()
    if view.leaks:
        pytest.fail("an agent was handed an operator's keys:\n" + "\n".join(view.leaks[:20]))


# ---- databases ------------------------------------------------------------------------------------


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options=-csearch_path=...``)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class PgServer:
    """The test PostgreSQL server: creates fresh schemas and drops them again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._admin: Database | None = None
        self.unreachable: str | None = None

    def admin(self) -> Database:
        if self._admin is None and self.unreachable is None:
            import psycopg

            try:
                psycopg.connect(self.url, connect_timeout=5).close()
            except psycopg.OperationalError as exc:
                if "FATAL" in str(exc):  # a server answered (bad database, user, password): fail, don't skip
                    raise
                self.unreachable = f"no PostgreSQL server reachable at {redact_url(self.url)} ({exc})"
            else:
                self._admin = Database.from_url(self.url)
        if self._admin is None:
            if PG_REQUIRED:
                pytest.fail(f"{self.unreachable} (INTERLACE_TEST_REQUIRE_PG=1)")
            pytest.skip(f"{self.unreachable}; set INTERLACE_TEST_PG_URL to run the PostgreSQL variants")
        return self._admin

    def create_schema(self) -> str:
        schema = "t_" + secrets.token_hex(6)
        self.admin().execute(f"CREATE SCHEMA {schema}")
        return schema

    def drop_schema(self, schema: str) -> None:
        admin = self.admin()
        admin.execute("SET lock_timeout = '20s'")
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer(PG_URL)
    yield server
    server.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless a test is parametrized over both (``helpers.BOTH_BACKENDS``)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def new_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases of this test's backend (SQLite files / PostgreSQL schemas)."""
    schemas: list[str] = []
    count = 0
    server = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    if server is not None:
        server.admin()  # skip now when there is no server

    def new() -> str:
        nonlocal count
        count += 1
        if server is None:
            return f"sqlite:///{tmp_path / ('ledger.sqlite3' if count == 1 else f'db-{count}.sqlite3')}"
        schemas.append(server.create_schema())
        return with_search_path(server.url, schemas[-1])

    yield new
    assert server is not None or not schemas
    for schema in schemas:
        assert server is not None
        server.drop_schema(schema)


@pytest.fixture
def database_url(new_database_url: Callable[[], str]) -> str:
    """This test's database: ``sqlite:///<tmp>/ledger.sqlite3`` or a fresh PostgreSQL schema."""
    return new_database_url()


@pytest.fixture
def sandbox_app() -> Starlette:
    """A fresh in-memory emulator (its state: ``app.state.sandbox``)."""
    return create_sandbox_app()


@pytest.fixture
def make_server(tmp_path: Path, sandbox_app: Starlette, clock: Clock, database_url: str) -> Iterator[ServerFactory]:
    """Build a server on the in-process emulator with its own ledger (in ``database_url``: SQLite unless the
    test runs on both backends); keyword args become settings. Ledgers and audit logs close after the test."""
    built: list[MCPServer[Runtime]] = []

    def factory(*, policy: str | None = None, ledger: Ledger | None = None, **settings: Any) -> MCPServer[Runtime]:
        if policy is not None:
            settings["policy_file"] = write_policy(tmp_path / "policy.toml", policy)
        values: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "database_url": database_url,
            **settings,
        }
        server = build_server(
            Settings(_env_file=None, **values),  # type: ignore[call-arg]
            sandbox_app=sandbox_app,
            ledger=ledger or Ledger.from_url(database_url, clock=clock),
            backoff=False,
        )
        built.append(server)
        return server

    yield factory
    for server in built:
        rt = runtime(server)
        rt.ledger.close()
        rt.audit.close()
