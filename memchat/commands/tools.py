"""What the person brings to the conversation: /tools (the MCP servers and which tools run without asking)
and /attach (files that go with the next message)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from memchat.attachments import read_attachment, text_room
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


@command(
    "attach",
    "add a text file or an image to your next message; alone, list what is attached; none: attach nothing",
    arg=Arg.OPTIONAL,
    arg_help="[PATH]",
    terminal_only=True,
)
async def _attach(conv: Conversation, arg: str) -> CommandOutput:
    if not arg:
        if not conv.attached:
            return Note("nothing is attached: /attach PATH adds a file to your next message")
        return Note(f"with your next message: {', '.join(item.label for item in conv.attached)}")
    if arg == "none":
        count, conv.attached = len(conv.attached), []
        return Note(f"{plural(count, 'file')} taken off your next message")
    item = read_attachment(Path(arg), text_room(conv.settings.context_tokens, conv.attached))
    conv.attached.append(item)
    kept = "" if conv.settings.keep_attachments or item.is_image else "; only its name is kept"
    return Note(f"attached {item.label}{kept}: it goes with your next message")
