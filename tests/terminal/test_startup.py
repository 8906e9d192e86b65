"""Start-up: what memchat loads, and when (the figures are bench/startup.py's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import Memchat


def imported_modules(stderr: str) -> set[str]:
    """The modules a run imported, from what ``PYTHONPROFILEIMPORTTIME`` printed."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(["--help"], ""), (["--clear"], ""), ([], "/users\n/history\n/summary\n/undo\n/clear\n")],
)
def test_help_clear_and_database_commands_never_load_the_sdk(memchat: Memchat, args: list[str], stdin: str) -> None:
    run = memchat(*args, input=stdin, PYTHONPROFILEIMPORTTIME="1")
    assert run.returncode == 0
    imported = imported_modules(run.stderr)
    assert "memchat.cli" in imported or "memchat" in imported
    assert "agents" not in imported and "openai" not in imported


def test_a_turn_loads_the_sdk_without_the_mcp_client_and_server(memchat: Memchat) -> None:
    run = memchat(input="hello\n", PYTHONPROFILEIMPORTTIME="1")
    assert run.stdout == "You said: hello\n"
    imported = imported_modules(run.stderr)
    # The SDK reads MCP's exception types; the package's __init__ would bring in its whole client and server.
    assert {"agents", "mcp.types"} <= imported
    assert not {"mcp.client.session", "mcp.server.fastmcp"} & imported


def test_a_deferred_package_is_whole_once_a_name_is_read_from_it() -> None:
    program = """
import sys
from memchat.loading import defer_package_init
defer_package_init("mcp")
import mcp.shared.exceptions
assert "mcp.client.session" not in sys.modules
from mcp import ClientSession
import mcp
assert ClientSession.__module__ == "mcp.client.session" and mcp.StdioServerParameters
print("whole")
"""
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert run.stdout == "whole\n", run.stderr
