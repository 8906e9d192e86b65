"""/tools: the MCP servers, their tools, and which of them run without asking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memchat.commands.registry import Arg, CommandError, CommandOutput, Note, Rows, command, plural

if TYPE_CHECKING:
    from memchat.conversation import Conversation


@command(
    "tools",
    "the MCP servers and their tools, and whether each runs without asking; revoke: ask again for all",
    arg=Arg.OPTIONAL,
    arg_help="[revoke]",
)
async def _tools(conv: Conversation, arg: str) -> CommandOutput:
    if not conv.settings.tools:
        return Note("tools are off (--no-tools or MEMCHAT_TOOLS=off): the model is offered none")
    if not conv.runners.servers:
        return Note(
            "no MCP servers are configured: write them in ~/.config/memchat/mcp.json or the file "
            "MEMCHAT_MCP_CONFIG names (see docs/tools.md); the model has memchat's own memory tools"
        )
    toolbox = conv.runners.toolbox
    assert toolbox is not None  # there are servers
    if arg:
        if arg != "revoke":
            raise CommandError("/tools takes only revoke: type /tools to list, /tools revoke to be asked again")
        count = toolbox.allowed.revoke(conv.user)
        return Note(f"{plural(count, 'tool')} of {conv.user} will ask again before running")
    await toolbox.start()
    rows: dict[str, str] = {}
    for state in toolbox.states:
        if state.failed is not None:
            rows[state.spec.name] = f"not available: {state.failed}"
            continue
        rows[state.spec.name] = f"{plural(len(state.tools), 'tool')} · {state.spec.where}"
        for shown in state.tools:
            rows[f"  {shown}"] = toolbox.rule(conv.user, state, shown)
    return Rows(rows)
