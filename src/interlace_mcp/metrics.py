"""Operators' metrics in the Prometheus text format (``INTERLACE_METRICS_PORT``), one registry per server.

A bottom-layer module: it imports nothing of ours, so the Interlace client, the tools and the operator
actions can all report to it. Each runtime owns one :class:`Metrics` (its own ``CollectorRegistry``),
so several servers in one process never collide. Money stays ``Decimal`` here; it becomes a float only
when a scrape renders it.

Series (``_total`` counters, ``_seconds`` histograms):
- ``interlace_mcp_tool_calls_total{tool,outcome}`` (outcome: ok, refused, error) and
  ``interlace_mcp_tool_call_duration_seconds{tool}``;
- ``interlace_mcp_refusals_total{tool,code}`` (the ``[code]`` the model read);
- ``interlace_mcp_money_movements_total{agent,tool,currency}`` and
  ``interlace_mcp_money_moved_total{agent,tool,currency}`` (the amounts, in currency units);
- ``interlace_mcp_approval_events_total{agent,event}`` (requested, approved, denied) and
  ``interlace_mcp_approvals_pending`` (read from the database at scrape time, so decisions made by
  another process count too);
- ``interlace_mcp_upstream_request_duration_seconds{method,path}`` and
  ``interlace_mcp_upstream_errors_total{method,path,kind}`` (one per HTTP attempt to Interlace; ids in
  paths become ``{id}``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["LOOPBACK", "Metrics", "PrometheusMetrics", "path_template"]

logger = logging.getLogger("interlace_mcp.metrics")

#: Metrics are served on loopback only: they name agents and amounts (scrape through a local agent or proxy).
LOOPBACK = "127.0.0.1"
#: Interlace calls and tool calls: tens of milliseconds to the 15 s HTTP timeout (and retries beyond it).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
#: A path segment that is an id (a UUID or a long run with digits), not a word of the API.
_ID_SEGMENT = re.compile(r"(?=[^/]*\d)[A-Za-z0-9_.:-]{8,}")


def path_template(path: str) -> str:
    """``/cards/4f0c.../freeze`` -> ``/cards/{id}/freeze``: a bounded label, never an id."""
    return "/".join("{id}" if _ID_SEGMENT.fullmatch(part) else part for part in path.split("?", 1)[0].split("/"))


class _MoneyCollector:
    """Movements and amounts per (agent, tool, currency), summed as Decimal; floats only in ``collect``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str, str], tuple[int, Decimal]] = {}

    def add(self, agent: str, tool: str, currency: str, amount: Decimal) -> None:
        key = (agent, tool, currency)
        with self._lock:
            count, total = self._totals.get(key, (0, Decimal(0)))
            self._totals[key] = (count + 1, total + amount)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        labels = ["agent", "tool", "currency"]
        movements = CounterMetricFamily(
            "interlace_mcp_money_movements", "Completed money movements by agent, tool and currency", labels=labels
        )
        moved = CounterMetricFamily(
            "interlace_mcp_money_moved",
            "Money moved by completed movements, in units of the currency (issue, top-up and transfer are spend; "
            "withdraw and close return money)",
            labels=labels,
        )
        with self._lock:
            items = sorted(self._totals.items())
        for key, (count, total) in items:
            movements.add_metric(list(key), count)
            moved.add_metric(list(key), float(total))
        yield movements
        yield moved


class _PendingCollector:
    """``interlace_mcp_approvals_pending``, asked of the database (via a callback) at each scrape."""

    def __init__(self) -> None:
        self.source: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        source = self.source
        if source is None:
            return
        try:
            pending = source()
        except Exception:  # a scrape must not fail because the database is briefly unavailable
            logger.warning("metrics: could not count pending approvals", exc_info=True)
            return
        yield GaugeMetricFamily("interlace_mcp_approvals_pending", "Approvals waiting for a human", value=pending)


class Metrics:
    """The interface, doing nothing: what a server without ``INTERLACE_METRICS_PORT`` gets (no import, no cost)."""

    @staticmethod
    def for_port(port: int | None) -> Metrics:
        """Prometheus metrics when a port is set, else the no-op."""
        return PrometheusMetrics() if port is not None else Metrics()

    def tool_call(self, tool: str, seconds: float | None, *, refusal: str | None = None, error: bool = False) -> None:
        """One tool call: ``refusal`` is the ``[code]`` of an error result; ``error`` an unexpected failure."""

    def money_moved(self, *, agent: str, tool: str, amount: Decimal, currency: str) -> None:
        """A completed money movement (called once, where the request is marked completed)."""

    def approval_event(self, *, agent: str, event: str) -> None:
        """``requested`` (a pending approval was created), ``approved`` or ``denied``."""

    def count_pending_approvals_with(self, source: Callable[[], int]) -> None:
        """Where ``interlace_mcp_approvals_pending`` comes from (the database; called at scrape time)."""

    def upstream(self, method: str, path: str, seconds: float, error_kind: str | None = None) -> None:
        """One HTTP attempt to Interlace (``path`` relative to the API prefix; ids are replaced)."""

    def serve(self, port: int) -> Callable[[], None] | None:
        """Serve ``/metrics`` on 127.0.0.1:``port``; returns the stop function (None: not serving)."""
        return None


class PrometheusMetrics(Metrics):
    """One server's metrics in its own ``CollectorRegistry``; the methods are cheap and thread-safe."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self._calls = Counter(
            "interlace_mcp_tool_calls",
            "Tool calls by tool and outcome (ok, refused, error)",
            ["tool", "outcome"],
            registry=r,
        )
        self._call_seconds = Histogram(
            "interlace_mcp_tool_call_duration_seconds", "Tool call duration", ["tool"], buckets=_BUCKETS, registry=r
        )
        self._refusals = Counter(
            "interlace_mcp_refusals", "Refusals by tool and refusal code", ["tool", "code"], registry=r
        )
        self._approvals = Counter(
            "interlace_mcp_approval_events",
            "Approval events by agent: requested (a pending approval was created), approved, denied",
            ["agent", "event"],
            registry=r,
        )
        self._upstream_seconds = Histogram(
            "interlace_mcp_upstream_request_duration_seconds",
            "Duration of each HTTP attempt to Interlace (ids in paths are {id})",
            ["method", "path"],
            buckets=_BUCKETS,
            registry=r,
        )
        self._upstream_errors = Counter(
            "interlace_mcp_upstream_errors",
            "Failed HTTP attempts to Interlace by kind (timeout, connection, rate_limited, server_error, auth, "
            "in_progress, rejected)",
            ["method", "path", "kind"],
            registry=r,
        )
        self._money = _MoneyCollector()
        r.register(cast("Collector", self._money))
        self._pending = _PendingCollector()
        r.register(cast("Collector", self._pending))

    def tool_call(self, tool: str, seconds: float | None, *, refusal: str | None = None, error: bool = False) -> None:
        outcome = "error" if error else "refused" if refusal is not None else "ok"
        self._calls.labels(tool, outcome).inc()
        if seconds is not None:
            self._call_seconds.labels(tool).observe(seconds)
        if refusal is not None:
            self._refusals.labels(tool, refusal).inc()

    def money_moved(self, *, agent: str, tool: str, amount: Decimal, currency: str) -> None:
        self._money.add(agent, tool, currency, amount)

    def approval_event(self, *, agent: str, event: str) -> None:
        self._approvals.labels(agent, event).inc()

    def count_pending_approvals_with(self, source: Callable[[], int]) -> None:
        self._pending.source = source

    def upstream(self, method: str, path: str, seconds: float, error_kind: str | None = None) -> None:
        template = path_template(path)
        self._upstream_seconds.labels(method, template).observe(seconds)
        if error_kind is not None:
            self._upstream_errors.labels(method, template, error_kind).inc()

    def render(self) -> str:
        """The text a scrape gets (for tests and ``check``-like tools)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode("utf-8")

    def serve(self, port: int) -> Callable[[], None] | None:
        """Serve ``/metrics`` on 127.0.0.1:``port`` in a daemon thread; returns the stop function.

        A port that cannot be bound (another server on this host has it) is logged and skipped: metrics
        must never stop the money server. None then.
        """
        from prometheus_client import start_http_server

        server: Any
        try:
            server, thread = start_http_server(port, addr=LOOPBACK, registry=self.registry)
        except OSError as exc:
            logger.warning(
                "INTERLACE_METRICS_PORT=%d: cannot listen on %s:%d (%s); serving without metrics",
                port,
                LOOPBACK,
                port,
                exc.strerror or exc,
            )
            return None
        logger.info("Prometheus metrics on http://%s:%d/metrics", LOOPBACK, port)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
