"""INTERLACE_METRICS_PORT: Prometheus text on loopback, scraped after real tool calls on the emulator."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from helpers import ServerFactory, call, free_port, refuse, runtime, sandbox_of
from interlace_mcp.app import decide_approval_sync
from interlace_mcp.metrics import Metrics, PrometheusMetrics, path_template

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> tuple[str, Samples]:
    """GET /metrics; the text and every sample keyed by (name, labels)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_tool_calls_refusals_money_approvals_and_upstream_are_scraped(
    make_server: ServerFactory, sandbox_app: Any
) -> None:
    """After real calls: calls and refusals by tool/code, money by agent (Decimal-exact), approvals, upstream."""
    port = free_port()
    server = make_server(
        metrics_port=port,
        policy='[defaults]\nper_transaction = "100.00"\ndaily = "200.00"\napproval_above = "50.00"\n',
    )
    rt = runtime(server)
    async with Client(server) as c:
        card_id = (await call(c, "issue_card", {"amount": "0.10", "request_id": "a"}))["card"]["card_id"]
        await call(c, "top_up_card", {"card_id": card_id, "amount": "0.20", "request_id": "b"})
        await refuse(c, "issue_card", {"amount": "150.00", "request_id": "c"})  # per_transaction_limit
        await refuse(c, "top_up_card", {"card_id": card_id, "amount": "1.00", "request_id": "d", "bogus": 1})
        await refuse(c, "get_card", {"card_id": "not-mine"})
        pending = await call(c, "issue_card", {"amount": "60.00", "request_id": "e"})
        assert pending["status"] == "pending_approval"
        await call(c, "freeze_card", {"card_id": card_id})
        sandbox_of(sandbox_app).add_fault("/open-api/v3/cards/wallets", "error", status=503, times=1)
        await call(c, "get_balance", {})  # one 503, retried
        _, before = await scrape(port)
        decide_approval_sync(rt, pending["approval_id"], approve=True, by="alice", reason=None)
        text, after = await scrape(port)

    assert value(before, "interlace_mcp_tool_calls_total", tool="issue_card", outcome="ok") == 2  # one pending
    assert value(before, "interlace_mcp_tool_calls_total", tool="issue_card", outcome="refused") == 1
    assert value(before, "interlace_mcp_refusals_total", tool="issue_card", code="per_transaction_limit") == 1
    assert value(before, "interlace_mcp_refusals_total", tool="top_up_card", code="validation_error") == 1
    assert value(before, "interlace_mcp_refusals_total", tool="get_card", code="not_found") == 1
    assert value(before, "interlace_mcp_tool_call_duration_seconds_count", tool="top_up_card") == 1
    movement = {"agent": "default", "currency": "USD"}
    assert value(before, "interlace_mcp_money_movements_total", tool="issue_card", **movement) == 1
    assert value(before, "interlace_mcp_money_moved_total", tool="issue_card", **movement) == 0.1
    assert value(before, "interlace_mcp_money_moved_total", tool="top_up_card", **movement) == 0.2
    assert value(before, "interlace_mcp_approval_events_total", agent="default", event="requested") == 1
    assert value(before, "interlace_mcp_approvals_pending") == 1
    assert value(after, "interlace_mcp_approvals_pending") == 0
    assert value(after, "interlace_mcp_approval_events_total", agent="default", event="approved") == 1
    upstream = "interlace_mcp_upstream_request_duration_seconds_count"
    assert value(before, upstream, method="POST", path="/prepaid-card") == 1
    assert value(before, upstream, method="POST", path="/cards/{id}/freeze") == 1
    errors = "interlace_mcp_upstream_errors_total"
    assert value(before, errors, method="GET", path="/cards/wallets", kind="server_error") == 1
    assert card_id not in text  # ids never become labels


async def test_money_amounts_are_summed_exactly_before_export() -> None:
    """0.10 + 0.20 is exported as 0.3 (summed as Decimal; a float sum would read 0.30000000000000004)."""
    from decimal import Decimal

    metrics = PrometheusMetrics()
    for amount in ("0.10", "0.20"):
        metrics.money_moved(agent="a", tool="top_up_card", amount=Decimal(amount), currency="USD")
    line = next(line for line in metrics.render().splitlines() if line.startswith("interlace_mcp_money_moved_total{"))
    assert line.endswith(" 0.3"), line


async def test_two_servers_in_one_process_keep_separate_metrics(make_server: ServerFactory) -> None:
    """Each runtime has its own registry and port: no collision, no shared counts."""
    first_port, second_port = free_port(), free_port()
    first, second = make_server(metrics_port=first_port), make_server(metrics_port=second_port)
    async with Client(first) as a, Client(second) as b:
        await call(a, "get_spend_status", {})
        await call(a, "get_spend_status", {})
        await call(b, "get_spend_status", {})
        _, one = await scrape(first_port)
        _, two = await scrape(second_port)
    assert value(one, "interlace_mcp_tool_calls_total", tool="get_spend_status", outcome="ok") == 2
    assert value(two, "interlace_mcp_tool_calls_total", tool="get_spend_status", outcome="ok") == 1


async def test_without_the_setting_nothing_is_served_or_collected(make_server: ServerFactory) -> None:
    """No INTERLACE_METRICS_PORT: the no-op Metrics (prometheus_client is not even needed)."""
    server = make_server()
    assert type(runtime(server).metrics) is Metrics
    async with Client(server) as c:
        await call(c, "get_spend_status", {})


async def test_a_taken_port_is_logged_and_the_server_still_serves(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the port: a warning naming INTERLACE_METRICS_PORT, and tools keep working."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="interlace_mcp.metrics"):
            async with Client(make_server(metrics_port=port)) as c:
                await call(c, "get_spend_status", {})
    assert any("INTERLACE_METRICS_PORT" in r.getMessage() for r in caplog.records)


def _non_loopback_addresses() -> list[str]:
    """This host's outbound IPv4 address (a UDP connect sends nothing) and what its name resolves to."""
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            found.add(str(probe.getsockname()[0]))
        except OSError:
            pass
    try:
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return sorted(address for address in found if not address.startswith(("127.", "0.")))


async def test_metrics_listen_on_loopback_only(make_server: ServerFactory, tmp_path: Path) -> None:
    """The endpoint answers on 127.0.0.1 and not on this host's other addresses."""
    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this host has no non-loopback IPv4 address to try")
    port = free_port()
    async with Client(make_server(metrics_port=port)):
        await scrape(port)
        for address in addresses:
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass


def test_path_template_replaces_ids_only() -> None:
    """UUIDs and long numeric ids become {id}; the API's own words stay."""
    assert path_template("/cards/4f0c6a4e-0000-4000-8000-000000000001/freeze") == "/cards/{id}/freeze"
    assert path_template("/cards/1997881966041939972/transactions") == "/cards/{id}/transactions"
    assert path_template("/cards/transfer-in") == "/cards/transfer-in"
    assert path_template("/oauth/access-token") == "/oauth/access-token"
