"""Every bad setting stops startup with one line: the variable, the bad value (secrets masked) and the fix; exit 2.

The table has at least one row per Settings field, so a new setting without a row fails
``test_every_setting_has_a_bad_value_row``. Rows run the real CLI entry point (``main``) as startup does;
the issue's own examples also run the installed ``interlace-mcp`` console script.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interlace_mcp.cli import main
from interlace_mcp.config import FIXES, SECRET_SETTINGS, TOOLSETS, Settings, env_name


@dataclass(frozen=True)
class Row:
    setting: str
    value: str
    #: Words the fix must contain.
    fix: str
    #: Other variables the row needs (e.g. credentials, so the upstream check reaches the value).
    env: dict[str, str] = field(default_factory=dict)
    #: The variable the message must name, when another than ``setting`` (partial credentials).
    names: str | None = None

    @property
    def id(self) -> str:
        return f"{self.setting}={self.value[:24]}"


CREDENTIALS = {"INTERLACE_CLIENT_ID": "client-1", "INTERLACE_CLIENT_SECRET": "secret-value-1"}
# {tmp} is replaced by the test's directory; {file} is a regular file in it; {dir} a directory.
ROWS = [
    Row("env", "prod", "sandbox or production"),
    Row("base_url", "ftp://api.example.com", "https URL"),
    Row("base_url", "http://api.example.com", "https URL", env=CREDENTIALS),
    Row("client_id", "my client", "Merchant Portal"),
    Row("client_id", "client-without-secret", "INTERLACE_CLIENT_SECRET", names="INTERLACE_CLIENT_SECRET"),
    Row("client_secret", " pasted-with-a-space", "Merchant Portal", env={"INTERLACE_CLIENT_ID": "client-1"}),
    Row("account_id", "acc 1", "doctor"),
    Row("bin_id", "12 34", "doctor"),
    Row("cardholder_id", "ch\t1", "doctor"),
    Row("crypto_wallet_id", "wallet 1", "doctor"),
    Row("policy_file", "{tmp}/missing.toml", "readable policy TOML"),
    Row("policy_file", "{dir}", "readable policy TOML"),
    Row("policy_file", "{tmp}/bad.toml", "correct"),
    Row("agent_id", "Bad Agent!", "lowercase"),
    Row("database_url", "mysql://x", "postgresql://"),
    Row("database_url", "postgresql://agent:hunter2-secret@127.0.0.1:1/x?connect_timeout=3", "postgresql://"),
    Row("database_url", "sqlite:///{dir}", "sqlite:///"),
    Row("state_dir", "{file}/state", "directory"),
    Row("webhook_secret", "tiny1", "16 characters"),
    Row("audit_hmac_key", "zz9key", "16 characters"),
    Row("read_only", "maybe", "true or false"),
    Row("toolsets", "cards,payments", ", ".join(TOOLSETS)),
    Row("allowed_hosts", "https://mcp.example.com", "host:port"),
    Row("allowed_origins", "app.example.com", "origins"),
    Row("public_url", "mcp.example.com", "public base URL"),
    Row("jwt_issuer", "not a url", "issuer URL"),
    Row("jwt_audience", "two words", "audience"),
    Row("jwt_jwks_url", "http://idp.example.com/jwks", "https JWKS URL"),
    Row("jwt_public_key_file", "{file}", "PEM"),
    Row("jwt_public_key_file", "{tmp}/missing.pem", "PEM"),
    Row("rate_limit_per_minute", "lots", "whole number"),
    Row("rate_limit_per_minute", "-5", "whole number"),
    Row("rate_limit_per_minute", "0", "whole number"),
    Row("approval_ttl_seconds", "-1", "seconds"),
    Row("approval_notify_url", "hooks.example.com", "http(s) URL"),
    Row("approval_wait_seconds", "-1", "0 (never wait)"),
    Row("approval_wait_seconds", "forever", "0 (never wait)"),
    Row("request_state_key", "short-key", "16 characters"),
    Row("log_level", "LOUD", "DEBUG, INFO"),
    Row("log_format", "xml", "text or json"),
    Row("reconcile_interval_seconds", "-1", "0 or more"),
    Row("reconcile_interval_seconds", "soon", "0 or more"),
    Row("recovery_grace_seconds", "-3", "0 or more"),
    Row("http_timeout_seconds", "0", "greater than 0"),
    Row("http_timeout_seconds", "nan", "greater than 0"),
    Row("max_retries", "-1", "0 to 10"),
    Row("max_retries", "99", "0 to 10"),
    Row("metrics_port", "70000", "port"),
    Row("metrics_port", "http", "port"),
]


def _materialize(row: Row, tmp_path: Path) -> tuple[str, dict[str, str]]:
    regular = tmp_path / "regular-file"
    regular.write_text("not a directory, not a PEM key\n", encoding="utf-8")
    directory = tmp_path / "a-directory"
    directory.mkdir(exist_ok=True)
    (tmp_path / "bad.toml").write_text('[defaults]\ndaily = "1e3"\n', encoding="utf-8")
    value = row.value.format(tmp=tmp_path, file=regular, dir=directory)
    env = {env_name(row.setting): value, **row.env}
    env.setdefault("INTERLACE_STATE_DIR", str(tmp_path / "state"))
    return value, env


def assert_one_line_error(row: Row, value: str, code: int, out: str, err: str) -> str:
    """Exit 2; stdout (the stdio wire) untouched; exactly one line on stderr naming variable, value and fix."""
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("interlace-mcp: ")
    assert (row.names or env_name(row.setting)) in line, line
    if row.setting in SECRET_SETTINGS:
        assert value.strip() not in line, line  # a secret is never echoed
    elif row.setting == "database_url" and "hunter2" in value:
        assert "hunter2" not in line and "agent:***@127.0.0.1:1" in line, line
    else:
        assert repr(value) in line or value in line, line
    assert row.fix in line, line
    for noise in ("Traceback", "pydantic", "validation error", "input_value", "type="):
        assert noise not in line, line
    assert row.setting not in line or "_" not in row.setting, line  # no internal field names
    return line


def test_every_setting_has_a_bad_value_row() -> None:
    """The table covers every Settings field (derived from Settings), and each field has a fix text."""
    assert {row.setting for row in ROWS} == set(Settings.model_fields)
    assert set(FIXES) == set(Settings.model_fields)


def test_config_toolsets_are_the_registry_toolsets() -> None:
    """config.TOOLSETS (checked at startup) names exactly the registry's toolsets."""
    from interlace_mcp.tools._registry import TOOLSETS as REGISTRY_TOOLSETS

    assert tuple(TOOLSETS) == tuple(REGISTRY_TOOLSETS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_bad_setting_stops_startup_with_one_line(
    row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """interlace-mcp (serve on stdio) with this bad value: exit 2, one line with variable, value and fix."""
    value, env = _materialize(row, tmp_path)
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    code = main([])
    captured = capsys.readouterr()
    assert_one_line_error(row, value, code, captured.out, captured.err)


def test_a_bad_flag_value_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--toolsets cards,payments (a flag, not the environment) is reported with the flag's name."""
    code = main(["--toolsets", "cards,payments", "check"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--toolsets" in err and "'cards,payments'" in err and "payments" in err


def test_several_bad_settings_are_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two bad values: the first is named, the count of the others is given, still one line."""
    monkeypatch.setenv("INTERLACE_ENV", "prod")
    monkeypatch.setenv("INTERLACE_MAX_RETRIES", "many")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "INTERLACE_ENV='prod'" in err and "1 more bad setting" in err


ISSUE_EXAMPLES = [
    row
    for row in ROWS
    if (row.setting, row.value)
    in {
        ("state_dir", "{file}/state"),
        ("toolsets", "cards,payments"),
        ("database_url", "mysql://x"),
        ("database_url", "postgresql://agent:hunter2-secret@127.0.0.1:1/x?connect_timeout=3"),
        ("env", "prod"),
        ("rate_limit_per_minute", "lots"),
    }
]


@pytest.mark.slow
@pytest.mark.parametrize("row", ISSUE_EXAMPLES, ids=[row.id for row in ISSUE_EXAMPLES])
def test_the_installed_command_reports_the_issue_examples_in_one_line(row: Row, tmp_path: Path) -> None:
    """The console script itself (a separate process, stdin closed): exit 2, one line, no traceback."""
    value, env = _materialize(row, tmp_path)
    script = Path(sys.executable).with_name("interlace-mcp")
    assert script.exists(), script
    proc = subprocess.run(
        [str(script)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(row, value, proc.returncode, proc.stdout, proc.stderr)
