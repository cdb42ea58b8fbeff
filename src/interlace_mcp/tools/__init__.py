"""The MCP surface: thin typed adapters, one module per toolset (cards, transfers, account, spend,
funding).

Each tool resolves its :class:`Caller` first (identity, one policy snapshot, every check); money tools
hand their operation to the runner (:mod:`interlace_mcp.operations`); the registry wraps each tool with
the gate, refusal handling and its audit record, and decides which tools are registered at all.
"""

from interlace_mcp.tools._caller import Caller, resolve_caller
from interlace_mcp.tools._human import url_elicitation_rounds
from interlace_mcp.tools._registry import (
    SPECS,
    TOOLSETS,
    ToolSpec,
    build_tool,
    readme_table,
    select_tools,
    validation_errors,
)

__all__ = [
    "SPECS",
    "TOOLSETS",
    "Caller",
    "ToolSpec",
    "build_tool",
    "readme_table",
    "resolve_caller",
    "select_tools",
    "url_elicitation_rounds",
    "validation_errors",
]
