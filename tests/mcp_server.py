"""An MCP server for the tests, written with the ``mcp`` package: over stdio, or streamable HTTP with ``--http PORT``.

Its tools:

- ``add(a, b)``      the sum, as text
- ``shout(text)``    the text in capitals
- ``big()``          a result of 1 MB
- ``crash()``        the server process dies mid-call
- ``env(name)``      the value of an environment variable of the server, or ``(unset)``
"""

from __future__ import annotations

import os
import sys

from mcp.server.fastmcp import FastMCP

app = FastMCP("memchat-test-tools")
calls = 0


def _counted() -> None:
    global calls
    calls += 1
    marker = os.environ.get("MCP_TEST_CALLS")
    if marker:
        # Another process (the test) reads what ran here.
        with open(marker, "a", encoding="utf-8") as file:
            file.write(f"{calls}\n")


@app.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    _counted()
    return str(a + b)


@app.tool()
def shout(text: str) -> str:
    """Say the text in capitals."""
    _counted()
    return text.upper()


@app.tool()
def big() -> str:
    """A very long text."""
    _counted()
    return "x" * 1_000_000


@app.tool()
def env(name: str) -> str:
    """An environment variable of this server."""
    _counted()
    return os.environ.get(name, "(unset)")


@app.tool()
def crash() -> str:
    """Stops the server mid-call."""
    _counted()
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.settings.port = int(sys.argv[2])
        app.settings.host = "127.0.0.1"
        app.run(transport="streamable-http")
    else:
        app.run()
