"""The MCP servers a person configured, read from the file other MCP clients use too.

The format is the common one::

    {"mcpServers": {
        "files": {"command": "uvx", "args": ["mcp-server-fs", "/home/me/notes"], "trusted": ["read_file"]},
        "search": {"url": "http://127.0.0.1:8931/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

``trusted`` is memchat's own key: ``true`` for every tool of the server, or a list of tool names.
Trusted tools run without asking; on a pipe and on the web page only they run at all.
Reading the file imports nothing of MCP, so a person without servers pays nothing for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import ConfigError

# Seconds a tool call may take before it is given up, unless the server's "timeout" says otherwise.
DEFAULT_CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerSpec:
    """One configured server: a command run over stdio, or a streamable HTTP address."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    # True: every tool of the server is trusted; otherwise the names of those that are.
    trusted: bool | frozenset[str] = False
    timeout: float = DEFAULT_CALL_TIMEOUT

    def trusts(self, tool: str) -> bool:
        return self.trusted is True or (isinstance(self.trusted, frozenset) and tool in self.trusted)

    @property
    def where(self) -> str:
        """How the server is reached, for /tools: the command or the address, never a header."""
        return self.url or " ".join((self.command or "", *self.args))


def read_servers(path: Path | None) -> tuple[ServerSpec, ...]:
    """The servers ``path`` configures (none without a file); one ``ConfigError`` line naming what is wrong."""
    if path is None:
        return ()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: write the MCP servers there, or unset MEMCHAT_MCP_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"cannot read {path} ({reason}): fix it, or unset MEMCHAT_MCP_CONFIG") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} line {exc.lineno} column {exc.colno}: {exc.msg}: fix the JSON, or move the file away "
            "to chat without MCP servers"
        ) from None
    servers = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f'{path} has no "mcpServers" object: write {{"mcpServers": {{"NAME": {{...}}}}}}')
    return tuple(_server(path, str(name), entry) for name, entry in servers.items())


def _server(path: Path, name: str, entry: Any) -> ServerSpec:
    def wrong(what: str) -> ConfigError:
        return ConfigError(f'{path}: server "{name}" {what}')

    if not isinstance(entry, dict):
        raise wrong('is not an object: write {"command": ..., "args": [...]} or {"url": ...}')
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise wrong('needs either "command" (a program run over stdio) or "url" (a streamable HTTP server)')
    if command is not None and not (isinstance(command, str) and command.strip()):
        raise wrong('has a "command" that is not a program name')
    if url is not None and not (isinstance(url, str) and url.lower().startswith(("http://", "https://"))):
        raise wrong('has a "url" that is not an http:// or https:// address')
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise wrong('has "args" that are not a list of strings')
    env, headers = entry.get("env", {}), entry.get("headers", {})
    for key, mapping in (("env", env), ("headers", headers)):
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise wrong(f'has "{key}" that is not an object of strings')
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise wrong('has a "cwd" that is not a folder path')
    trusted = entry.get("trusted", False)
    if isinstance(trusted, list) and all(isinstance(tool, str) for tool in trusted):
        trusted = frozenset(trusted)
    elif not isinstance(trusted, bool):
        raise wrong('has "trusted" that is neither true, false nor a list of tool names')
    timeout = entry.get("timeout", DEFAULT_CALL_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 86_400:
        raise wrong('has a "timeout" that is not a number of seconds')
    return ServerSpec(
        name=name,
        command=command,
        args=tuple(args),
        env=dict(env),
        cwd=cwd,
        url=url,
        headers=dict(headers),
        trusted=trusted,
        timeout=float(timeout),
    )
