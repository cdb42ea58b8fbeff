"""The MCP server: factory, lifespan, transports (stdio, streamable HTTP, SSE), identity, webhooks.

The HTTP side (JWT, the dashboard, webhooks) is imported on first use: a stdio server, the one most
clients start, boots faster without it.
"""

from typing import TYPE_CHECKING, Any

from interlace_mcp.server._build import INSTRUCTIONS, build_server, runtime_of_server

if TYPE_CHECKING:
    from interlace_mcp.server._http import (
        AgentTokenVerifier,
        AuthMode,
        JwtVerifier,
        WorkerOptions,
        build_http_app,
        is_loopback,
        transport_security,
        worker_app,
    )
    from interlace_mcp.server._webhooks import sign_resource

__all__ = [
    "INSTRUCTIONS",
    "AgentTokenVerifier",
    "AuthMode",
    "JwtVerifier",
    "WorkerOptions",
    "build_http_app",
    "build_server",
    "is_loopback",
    "runtime_of_server",
    "sign_resource",
    "transport_security",
    "worker_app",
]

_HTTP = frozenset(
    {
        "AgentTokenVerifier",
        "AuthMode",
        "JwtVerifier",
        "WorkerOptions",
        "build_http_app",
        "is_loopback",
        "transport_security",
        "worker_app",
    }
)


def __getattr__(name: str) -> Any:
    if name in _HTTP:
        from interlace_mcp.server import _http

        return getattr(_http, name)
    if name == "sign_resource":
        from interlace_mcp.server import _webhooks

        return _webhooks.sign_resource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
