"""The MCP surface: thin typed adapters, one module per toolset (cards, transfers, account, spend)."""
