"""Log redaction: bearer tokens, token-bearing query strings and card numbers never reach a log line.

The redacting filter sits on the one stderr handler; uvicorn's access and error loggers propagate to it.
The end-to-end test serves the real ``interlace-mcp serve --transport http`` on a loopback port at DEBUG
and reads what it wrote to stderr.
"""

from __future__ import annotations

import copy
import io
import logging
import logging.config
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn.config

from e2e.support import child_env, free_port, interlace_command, wait_for_port
from interlace_mcp._logging import UVICORN_LOGGERS, configure_logging, redact

AGENT_TOKEN = "itl_agent_Zq3-vK_9xY2mN7pL4rT8sW1uB6cD0eF5gH"
OPERATOR_TOKEN = "itl_op_Aa1-Bb2_Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0KkLl"
API_KEY = "k3y-0f-an0ther-s3rv1ce-77"
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"

#: Luhn-valid test numbers, written as people (and agents) write them.
CARD_SHAPES = [
    "4111.1149.8468.0519",
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111 - 1111 - 1111 - 1111",
    "4111/1111/1111/1111",
    "4111_1111_1111_1111",
    "5500 0055 5555 5559",
    "3782 822463 10005",
    "4111 1111 1111 1111 003",
    "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",  # fullwidth
]


@pytest.mark.parametrize(
    "line",
    [
        f"POST /mcp?token={AGENT_TOKEN} HTTP/1.1",
        f"GET /dashboard/login?token={OPERATOR_TOKEN} HTTP/1.1",
        f'127.0.0.1:5555 - "GET /healthz?x=1&api_key={API_KEY}&y=2 HTTP/1.1" 200',
        f"GET /sse?access_token={ACCESS_TOKEN}",
        f"token from an agent: {AGENT_TOKEN}.",
        f"operator {OPERATOR_TOKEN}",
        f'{{"token": "{AGENT_TOKEN}"}}',
    ],
)
def test_tokens_and_token_query_values_are_masked(line: str) -> None:
    """Agent/operator tokens anywhere, and token=/api_key=/access_token= query values, are masked."""
    cleaned = redact(line)
    for secret in (AGENT_TOKEN, OPERATOR_TOKEN, API_KEY, ACCESS_TOKEN):
        assert secret not in cleaned
    assert AGENT_TOKEN[10:20] not in cleaned and OPERATOR_TOKEN[7:17] not in cleaned
    assert "[secret]" in cleaned


REVEAL_TOKEN = "Zq3x_9-abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:5555 - "GET /dashboard/reveal/{REVEAL_TOKEN} HTTP/1.1" 303',
        f"the client did not take the URL elicitation reveal:{REVEAL_TOKEN}: refused",
    ],
)
def test_a_reveal_links_token_is_masked(line: str) -> None:
    """Whoever reads the log (uvicorn's access line, a question's key) cannot open the card's one-time page."""
    cleaned = redact(line)
    assert REVEAL_TOKEN not in cleaned and REVEAL_TOKEN[:12] not in cleaned
    assert "reveal/[secret]" in cleaned or "reveal:[secret]" in cleaned


@pytest.mark.parametrize("shape", CARD_SHAPES)
def test_card_numbers_with_any_separators_are_masked(shape: str) -> None:
    """A Luhn-valid 13-19 digit number with any separator between its groups is masked, keeping the last four."""
    cleaned = redact(f"memo was {shape}; more text")
    digits = "".join(ch for ch in shape if ch.isdigit())
    assert shape not in cleaned
    assert cleaned == f"memo was [card ...{digits[-4:]}]; more text"


def test_card_numbers_inside_longer_digit_runs_are_masked() -> None:
    """Two numbers in a list, or a number right after another count, are still found."""
    cleaned = redact("ids [1700000000000, 4111111111111111] and 5500-0055-5555-5559, 42")
    assert "4111111111111111" not in cleaned and "5500-0055-5555-5559" not in cleaned
    assert "1700000000000" in cleaned and cleaned.endswith(", 42")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29T12:00:00.123456+00:00",
        '127.0.0.1:54321 - "POST /mcp HTTP/1.1" 200',
        "transaction 1963922322985988098 of card 3c6f1e9a-1b2d-4c5e-8f90-123456789012",
        "4111111111111112",  # fails Luhn
        "amounts 10.50 + 3.25 + 1.00",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    """Times, addresses, ids, amounts and non-Luhn numbers stay readable."""
    assert redact(text) == text


@pytest.fixture
def stderr_logging() -> Iterator[io.StringIO]:
    """configure_logging() writing to a StringIO; the root and uvicorn loggers are restored after."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in UVICORN_LOGGERS)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    saved_stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        logging.config.dictConfig(copy.deepcopy(uvicorn.config.LOGGING_CONFIG))  # as an embedding app might
        configure_logging("DEBUG")
        assert isinstance(sys.stderr, io.StringIO)
        yield sys.stderr
    finally:
        sys.stderr = saved_stderr
        for lg, handlers, level, propagate in saved:
            for handler in list(lg.handlers):
                lg.removeHandler(handler)
            for handler in handlers:
                lg.addHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def test_every_logger_goes_through_the_redacting_handler(stderr_logging: io.StringIO) -> None:
    """Our loggers, uvicorn's (even after its own dictConfig ran in this process) and a library's: the one
    stderr handler masks tokens and card numbers."""
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "POST", f"/mcp?token={AGENT_TOKEN}", "1.1", 200
    )
    logging.getLogger("uvicorn.error").error("bad request for %s", f"/dashboard/login?token={OPERATOR_TOKEN}")
    logging.getLogger("interlace_mcp.tools").warning("memo %s", "4111.1149.8468.0519")
    logging.getLogger("somelib").debug("calling with api_key=%s", API_KEY)
    output = stderr_logging.getvalue()
    assert output.count("\n") == 4, output
    for secret in (AGENT_TOKEN, OPERATOR_TOKEN, API_KEY, "4111.1149.8468.0519"):
        assert secret not in output
    assert "/mcp?token=[secret]" in output and "[card ...0519]" in output


@pytest.mark.slow
def test_the_served_app_never_logs_a_token(tmp_path: Path) -> None:
    """`interlace-mcp serve --transport http` at DEBUG: token-bearing URLs appear in uvicorn's access lines
    with the tokens masked."""
    port = free_port()
    output = tmp_path / "server.stderr"
    env = child_env(tmp_path / "state", INTERLACE_LOG_LEVEL="DEBUG")
    with output.open("wb") as out:
        proc = subprocess.Popen(
            interlace_command("serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_for_port(port, proc, output)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as http:
                statuses = [
                    http.post(f"/mcp?token={AGENT_TOKEN}", json={}).status_code,
                    http.post("/mcp", json={}, headers={"Authorization": f"Bearer {AGENT_TOKEN}"}).status_code,
                    http.get(f"/dashboard/login?token={OPERATOR_TOKEN}").status_code,
                    http.post("/dashboard/login", data={"token": OPERATOR_TOKEN}).status_code,
                    http.get(f"/healthz?api_key={API_KEY}&access_token={ACCESS_TOKEN}").status_code,
                ]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    logged = output.read_text(errors="replace")
    assert statuses == [401, 401, 200, 401, 200], (statuses, logged)
    assert "/mcp?token=[secret]" in logged and "/dashboard/login?token=[secret]" in logged, logged
    assert "api_key=[secret]" in logged and "access_token=[secret]" in logged, logged
    for secret in (AGENT_TOKEN, OPERATOR_TOKEN, API_KEY, ACCESS_TOKEN, AGENT_TOKEN[10:], OPERATOR_TOKEN[7:]):
        assert secret not in logged, logged
