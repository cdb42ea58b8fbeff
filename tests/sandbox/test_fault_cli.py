"""``interlace-mcp sandbox --fault PATH:KIND[:STATUS][:TIMES] --latency-ms N``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.support import child_env, free_port, interlace_command, wait_for_port
from interlace_mcp import cli
from interlace_mcp.sandbox import FaultSpec, parse_fault

TRANSFER_IN = "/open-api/v3/cards/transfer-in"


def test_parse_fault() -> None:
    assert parse_fault(f"{TRANSFER_IN}:fail_after_commit:500:1") == FaultSpec(TRANSFER_IN, "fail_after_commit", 500, 1)
    assert parse_fault(f"{TRANSFER_IN}:reset") == FaultSpec(TRANSFER_IN, "reset")
    assert parse_fault(f"{TRANSFER_IN}:timeout::2") == FaultSpec(TRANSFER_IN, "timeout", None, 2)
    assert parse_fault(f"{TRANSFER_IN}:fail_after_commit:0") == FaultSpec(TRANSFER_IN, "fail_after_commit", 0)
    assert parse_fault("/x:rate_limit:429") == FaultSpec("/x", "rate_limit", 429)


@pytest.mark.parametrize(
    "text",
    [
        "", "/x", "x:error", "/x:boom", "/x:error:99", "/x:error:600", "/x:error:0", "/x:error:500:0",
        "/x:error:5e2", "/x:error:500:1:2", "/x:error:\u0665\u0660\u0660", "/x:latency:-1",
    ],
)  # fmt: skip
def test_parse_fault_rejects(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["sandbox", "--fault", text])
    assert exc.value.code == 2
    assert "--fault" in capsys.readouterr().err


def test_the_flags_reach_run_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setenv("INTERLACE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "run_sandbox", lambda *a, **kw: seen.update(args=a, **kw))
    code = cli.main(
        [
            "sandbox",
            "--port",
            "9999",
            "--fault",
            f"{TRANSFER_IN}:error:503:2",
            "--fault",
            "/y:reset",
            "--latency-ms",
            "40",
        ]
    )
    assert code == 0
    assert seen["args"] == ("127.0.0.1", 9999)
    assert seen["faults"] == [FaultSpec(TRANSFER_IN, "error", 503, 2), FaultSpec("/y", "reset")]
    assert seen["latency_ms"] == 40
    assert cli.main(["sandbox", "--latency-ms", "-5"]) == 2


@pytest.mark.slow
def test_the_emulator_serves_the_faults_and_the_latency(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "emulator.out"
    args = ["--fault", f"{TRANSFER_IN}:fail_after_commit:500:1", "--fault", "/open-api/v3/accounts:error:503:1"]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("sandbox", "--port", str(port), *args, "--latency-ms", "150"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(tmp_path / "state"),
            cwd=tmp_path,
        )
        try:
            wait_for_port(port, proc, output)
            base = f"http://127.0.0.1:{port}"
            faults = httpx.get(f"{base}/_sandbox/faults", timeout=10).json()["data"]["list"]
            started = time.monotonic()
            first = httpx.get(f"{base}/open-api/v3/accounts", timeout=10)
            second = httpx.get(f"{base}/open-api/v3/accounts", timeout=10)
            elapsed = time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert [(f["path"], f["kind"], f["status"], f["times"]) for f in faults] == [
        (TRANSFER_IN, "fail_after_commit", 500, 1),
        ("/open-api/v3/accounts", "error", 503, 1),
    ]
    assert first.status_code == 503  # the fault, once
    assert second.status_code != 503  # then the real answer (401: no token)
    assert elapsed >= 0.3  # 150 ms on each API request
    banner = output.read_text(errors="replace")
    assert "fail_after_commit status 500 on /open-api/v3/cards/transfer-in, 1 time(s)" in banner
    assert "latency             150 ms" in banner
