"""The bare-SDK floor: an official ``MCPServer`` with one tool, nothing else imported.

* over stdio (default) for ``bench/cold_start.py``: its start-up time is what any server built on
  ``mcp`` pays (the interpreter, the SDK's imports, one tool's schema);
* over streamable HTTP with ``--http PORT`` (127.0.0.1, no auth) for ``bench/overhead.py``: one
  trivial tool call through the official client is the SDK's own per-call floor.

Run it alone with ``.venv/bin/python bench/bare_server.py`` (it then waits for a client on stdin).
"""

import sys

from mcp.server import MCPServer

mcp = MCPServer("bare", version="0.1.0")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
