"""The operator dashboard (``/dashboard``): approvals, spend, cards and the kill switch in a browser.

Served by ``serve --transport http|sse`` and alone by ``interlace-mcp dashboard`` (stdio deployments
sharing the database). Operators sign in with a token from ``interlace-mcp operators token NAME``.
"""

from interlace_mcp.dashboard._app import COOKIE, OPERATOR_TOKEN_PREFIX, Dashboard, build_dashboard_app

__all__ = ["COOKIE", "OPERATOR_TOKEN_PREFIX", "Dashboard", "build_dashboard_app"]
