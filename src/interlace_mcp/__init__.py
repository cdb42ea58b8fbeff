"""interlace-mcp: an MCP server that lets AI agents spend money safely through Interlace."""

__all__ = ["__version__"]

__version__ = "0.1.0"
