"""mcp.json and server.json say only what is true of the distribution (pyproject, Settings, README)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from interlace_mcp.config import SECRET_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MCP_JSON: dict[str, Any] = json.loads((ROOT / "mcp.json").read_text(encoding="utf-8"))
SERVER_JSON: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETTINGS = {f"INTERLACE_{name.upper()}" for name in Settings.model_fields}


def test_mcp_json_stdio_entry_runs_the_quick_start_install() -> None:
    """The stdio command is the console script in the venv README's Quick start creates (not a bare name)."""
    entry = MCP_JSON["mcpServers"]["interlace"]
    script = next(iter(PYPROJECT["project"]["scripts"]))
    assert entry["command"].endswith(f"/.venv/bin/{script}") and entry["command"].startswith("/")
    assert "python3 -m venv .venv && .venv/bin/pip install" in README
    assert set(entry["env"]) <= SETTINGS


def test_readme_shows_mcp_json_stdio_entry_verbatim() -> None:
    """README's client config block is mcp.json's stdio entry."""
    block = README.split("## Use it from an MCP client", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block)["mcpServers"]["interlace"] == MCP_JSON["mcpServers"]["interlace"]


def test_mcp_json_http_entry_matches_the_served_endpoint() -> None:
    """The HTTP entry points at serve's default loopback endpoint with a bearer token from the environment."""
    entry = MCP_JSON["mcpServers"]["interlace-http"]
    assert entry["url"] == "http://127.0.0.1:8765/mcp"
    assert entry["headers"]["Authorization"] == "Bearer ${INTERLACE_AGENT_TOKEN}"


def test_server_json_matches_pyproject_and_claims_no_unpublished_package() -> None:
    """Name/version/description within the registry schema's rules; no package entry while nothing is published."""
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", SERVER_JSON["name"])
    assert SERVER_JSON["name"].rsplit("/", 1)[1] == PYPROJECT["project"]["name"]
    assert SERVER_JSON["version"] == PYPROJECT["project"]["version"]
    assert 1 <= len(SERVER_JSON["description"]) <= 100
    assert SERVER_JSON["$schema"].endswith("/server.schema.json")
    meta = SERVER_JSON["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]
    if not meta["published"]:
        assert "packages" not in SERVER_JSON and "remotes" not in SERVER_JSON
    for package in SERVER_JSON.get("packages", []):  # once published: the real name and version
        assert package["identifier"] in (PYPROJECT["project"]["name"], f"ghcr.io/{SERVER_JSON['name']}")
        assert package["version"] == PYPROJECT["project"]["version"]
    assert meta["command"] in PYPROJECT["project"]["scripts"]


def test_server_json_environment_variables_are_real_settings() -> None:
    """Every variable it lists is a setting; secrets are marked secret."""
    meta = SERVER_JSON["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]
    for variable in meta["environmentVariables"]:
        assert variable["name"] in SETTINGS, variable["name"]
        if variable["name"].removeprefix("INTERLACE_").lower() in SECRET_SETTINGS:
            assert variable["isSecret"] is True, variable["name"]
