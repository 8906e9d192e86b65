"""The configured MCP servers, started on first need and offered to the model as tools.

Each server starts once per process, when a turn (or ``/tools``) first needs it, through the
SDK's ``MCPServerManager``, which keeps each connection in a task of its own so that any turn
may use it and the program may close it. A server that does not start, or stops during a
call, is one notice; its tools are left out and the turn goes on.

The servers' tools are wrapped here rather than handed to the SDK whole, for three things
the SDK leaves to its caller: the person approves each call (see ``approval``), what a call
returns is cut to the room the request has left (so a 1 MB result cannot break the budget),
and a failing call becomes the tool's answer and a notice, never a lost turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agents import FunctionTool, RunContextWrapper
from agents.mcp import MCPServer, MCPServerManager, MCPServerStdio, MCPServerStreamableHttp
from mcp.client.stdio import stdio_client

from memchat.errors import MemchatError
from memchat.items import MEMORY_TOOL, SAVED_TOOLS
from memchat.toolbox.approval import AllowedTools, Answer
from memchat.toolbox.config import ServerSpec

if TYPE_CHECKING:
    from memchat.context.tools import ToolContext

# Seconds a server may take to start and to list its tools.
START_SECONDS = 20.0
# A result is cut to the room the request has left, but never below this many tokens.
MIN_RESULT_TOKENS = 200
# memchat's own tools' names, which a server's tool may not take.
RESERVED = frozenset({MEMORY_TOOL, *SAVED_TOOLS})
# What a tool name may hold, for the model's API.
_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class ServerState:
    spec: ServerSpec
    # The tools it offers, as the model sees each name, with the server's own name for it.
    tools: dict[str, str] = field(default_factory=dict)
    # Why it is not usable, once it failed; None while it works (or before it started).
    failed: str | None = None
    server: MCPServer | None = None


class Toolbox:
    """Every configured server of this process, and the tools they offer, shared by every conversation."""

    def __init__(self, specs: tuple[ServerSpec, ...], allowed: AllowedTools, log_dir: Path) -> None:
        self.states = [ServerState(spec) for spec in specs]
        self.allowed = allowed
        # What a stdio server writes to its stderr goes to NAME.log here, not over the conversation.
        self.log_dir = log_dir
        self._logs: list[TextIO] = []
        self.started = False
        self._manager: MCPServerManager | None = None
        self._starting = asyncio.Lock()
        self._tools: list[FunctionTool] = []
        # Failures not yet said to anyone: each is said once, with the next turn.
        self._unsaid: list[str] = []

    async def start(self) -> None:
        """Start every server and learn its tools, once; failures become notices."""
        async with self._starting:
            if self.started:
                return
            servers = {state.spec.name: self._server(state.spec) for state in self.states}
            manager = MCPServerManager(
                servers.values(),
                connect_timeout_seconds=START_SECONDS,
                cleanup_timeout_seconds=5.0,
                connect_in_parallel=True,
            )
            await manager.connect_all()
            self._manager = manager
            for state in self.states:
                server = servers[state.spec.name]
                error = manager.errors.get(server)
                if error is not None:
                    self._fail(state, f"did not start ({_reason(error)})")
                    continue
                try:
                    listed = await asyncio.wait_for(server.list_tools(), START_SECONDS)
                    for tool in listed:
                        self._add(state, tool.name, tool.description or "", tool.inputSchema)
                except Exception as exc:  # noqa: BLE001 - whatever a server answers, it costs only its own tools
                    self._fail(state, f"did not start ({_reason(exc)})")
                    continue
                state.server = server
            self.started = True

    def _add(self, state: ServerState, name: str, description: str, schema: dict[str, Any]) -> None:
        shown = _NAME.sub("_", name)[:64]
        taken = {tool.name for tool in self._tools}
        if shown in taken or shown in RESERVED:
            self._unsaid.append(f"tool {name} of MCP server {state.spec.name} is left out: another tool has its name")
            return
        state.tools[shown] = name

        async def invoke(run: RunContextWrapper[Any], arguments: str) -> str:
            return await self._call(state, shown, run.context, arguments)

        self._tools.append(
            FunctionTool(
                name=shown,
                description=description or f"{name}, a tool of {state.spec.name}",
                params_json_schema=schema or {"type": "object", "properties": {}},
                on_invoke_tool=invoke,
                strict_json_schema=False,
            )
        )

    def tools(self) -> list[FunctionTool]:
        """The tools of the servers that work, for the next request."""
        working = {name for state in self.states if state.failed is None for name in state.tools}
        return [tool for tool in self._tools if tool.name in working]

    def notices(self) -> list[str]:
        """What failed since last asked, each said once."""
        said, self._unsaid = self._unsaid, []
        return said

    def rule(self, user: str, state: ServerState, tool: str) -> str:
        """Whether ``tool`` runs for ``user`` without asking: for /tools."""
        if state.spec.trusts(state.tools[tool]):
            return "trusted"
        if self.allowed.allowed(user, state.spec.name, state.tools[tool]):
            return "always allowed in a terminal (not run on a pipe or the page)"
        return "asks first (not run on a pipe or the page)"

    async def _call(self, state: ServerState, shown: str, context: ToolContext, arguments: str) -> str:
        name, spec = state.tools[shown], state.spec
        if state.failed is not None or state.server is None:
            return f"The tool {shown} is not available: its server {spec.name} {state.failed}."
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return f"The arguments were not JSON: call {shown} again with a JSON object."
        if not spec.trusts(name):
            if context.approve is None:
                # Nobody to ask (a pipe, the page): what reads the input may not be the person, so not even
                # a tool they allowed for good in a terminal runs here.
                context.notices.append(
                    f"the model asked to run {shown} of MCP server {spec.name}, which is not trusted: not run "
                    f'(only tools marked "trusted" in the MCP config run on a pipe and on the page)'
                )
                return f"The person has not allowed {shown} to run here. Do not call it again in this turn."
            if not self.allowed.allowed(context.user, spec.name, name):
                answer = await context.approve(spec.name, shown, json.dumps(parsed, ensure_ascii=False))
                if answer is Answer.NO:
                    return f"The person declined to run {shown}. Do not call it again unless they ask."
                if answer is Answer.ALWAYS:
                    try:
                        self.allowed.allow(context.user, spec.name, name)
                    except MemchatError as exc:
                        context.notices.append(str(exc))
        try:
            result = await asyncio.wait_for(state.server.call_tool(name, parsed), spec.timeout)
        except TimeoutError:
            context.notices.append(f"{shown} of MCP server {spec.name} took over {spec.timeout:g} s: given up")
            return f"The tool {shown} took too long and was stopped."
        except Exception as exc:  # noqa: BLE001 - whatever broke, the turn goes on without this tool
            reason = _reason(exc)
            if not await _alive(state.server):
                self._fail(state, f"stopped during a call of {shown} ({reason})")
                context.notices.extend(self.notices())
            else:
                context.notices.append(f"{shown} of MCP server {spec.name} failed: {reason}")
            return f"The tool {shown} failed: {reason}"
        text = result_text(result)
        if result.isError:
            text = f"The tool reported an error: {text}"
        return _bounded(text, context)

    def _fail(self, state: ServerState, why: str) -> None:
        state.failed = why
        self._unsaid.append(
            f"MCP server {state.spec.name} {why}: its tools are left out until memchat starts again "
            "(/tools shows every server)"
        )

    def _server(self, spec: ServerSpec) -> MCPServer:
        if spec.url is not None:
            return MCPServerStreamableHttp(
                {"url": spec.url, "headers": spec.headers, "timeout": START_SECONDS},
                name=spec.name,
                client_session_timeout_seconds=spec.timeout,
            )
        params: dict[str, Any] = {"command": spec.command or "", "args": list(spec.args)}
        if spec.env:
            # Added to the few variables the MCP client gives every server (PATH, HOME...): never memchat's
            # own environment, which holds the model's API key.
            params["env"] = spec.env
        if spec.cwd:
            params["cwd"] = spec.cwd
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            log: TextIO = open(self.log_dir / f"{_NAME.sub('_', spec.name)}.log", "a", encoding="utf-8")  # noqa: SIM115 - open while the server runs
        except OSError:
            log = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - as above
        self._logs.append(log)
        return _LoggedStdio(params, log, name=spec.name, client_session_timeout_seconds=spec.timeout)

    async def aclose(self) -> None:
        if self._manager is not None:
            await self._manager.cleanup_all()
            self._manager = None
        for log in self._logs:
            log.close()
        self._logs.clear()


class _LoggedStdio(MCPServerStdio):
    """A stdio server whose stderr goes to a file of its own."""

    def __init__(self, params: dict[str, Any], log: TextIO, **settings: Any) -> None:
        super().__init__(params, **settings)  # type: ignore[arg-type]
        self._log = log

    def create_streams(self) -> Any:
        return stdio_client(self.params, errlog=self._log)


async def _alive(server: MCPServer) -> bool:
    """Whether the server still answers, after a call failed."""
    try:
        await asyncio.wait_for(server.list_tools(), 5.0)
    except Exception:  # noqa: BLE001 - any failure means it is gone
        return False
    return True


def result_text(result: Any) -> str:
    """A call's result as text for the model: its text parts, and a mention of anything else."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind or 'content'} of type {getattr(block, 'mimeType', None) or 'unknown'}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


def _bounded(text: str, context: ToolContext) -> str:
    """``text`` within the room the request has left, with a note where it was cut; the room shrinks by it."""
    room = max(MIN_RESULT_TOKENS, context.room)
    chars = int(room * context.estimator.chars_per_token)
    if len(text) > chars:
        text = (
            f"{text[:chars]}\n[cut by memchat: the tool returned {len(text):,} characters; "
            f"the first {chars:,} are shown]"
        )
    context.room -= context.estimator.tokens(text)
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
