"""End-to-end fixtures: the stdio server as a child process, the emulator on a loopback port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from e2e.support import Emulator, StdioFactory, child_env, free_port, interlace_command, wait_for_port


@pytest.fixture
def stdio_server(tmp_path: Path) -> StdioFactory:
    """``async with stdio_server(env, errlog=f) as c``: ``python -m interlace_mcp`` over stdio.

    ``errlog`` (a real file) receives the server's stderr; by default it goes to ours.
    """

    @asynccontextmanager
    async def connect(env: dict[str, str], *, errlog: TextIO | None = None) -> AsyncIterator[Client]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "interlace_mcp"], env=env, cwd=tmp_path)
        transport = stdio_client(params, errlog=errlog) if errlog is not None else stdio_client(params)
        async with Client(transport) as client:
            yield client

    return connect


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """``interlace-mcp sandbox --host 127.0.0.1 --port N`` with its own state dir; stopped after the test."""
    port = free_port()
    output = tmp_path / "emulator.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("sandbox", "--host", "127.0.0.1", "--port", str(port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(tmp_path / "emulator-state"),
            cwd=tmp_path,
        )
        try:
            wait_for_port(port, proc, output)
            yield Emulator(base_url=f"http://127.0.0.1:{port}", output=output)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
