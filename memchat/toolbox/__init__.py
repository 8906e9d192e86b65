"""Tools the person brings: MCP servers from a config file, and their approval (see docs/tools.md)."""
