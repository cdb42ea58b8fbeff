"""The MCP server: factory, lifespan, transports, identity."""

from interlace_mcp.server._build import INSTRUCTIONS, build_runtime, build_server, runtime_of_server, sandbox_state_path

__all__ = ["INSTRUCTIONS", "build_runtime", "build_server", "runtime_of_server", "sandbox_state_path"]
