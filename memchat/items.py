"""Reading the SDK's conversation items (plain JSON dicts) without importing the SDK.

Items are what the Agents SDK sends and receives: a user message
``{"role": "user", "content": ...}``, an assistant message, a tool call and its
output, and so on. A *turn* starts at a user message and runs to the next one.
"""

from __future__ import annotations

from typing import Any

Item = dict[str, Any]


def is_user_message(item: Item) -> bool:
    """True for the item that opens a turn."""
    return item.get("role") == "user"


def item_text(item: Item) -> str:
    """The human-readable text of a message item; '' for items without text."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or part.get("refusal") or "") for part in content if isinstance(part, dict))
    return ""


def describe(item: Item) -> tuple[str, str]:
    """(speaker, text) for showing an item to a person, never raw JSON."""
    role = item.get("role")
    if role == "user":
        return "you", item_text(item)
    if role == "assistant":
        return "assistant", item_text(item)
    if role in ("system", "developer"):
        return role, item_text(item)
    kind = str(item.get("type", "item"))
    if kind == "function_call":
        return "tool", f"called {item.get('name', '?')}({item.get('arguments', '')})"
    if kind == "function_call_output":
        return "tool", f"returned {item.get('output', '')}"
    return "note", kind.replace("_", " ")


TOOL_STEPS = ("function_call", "function_call_output")
# The names of memchat's own memory tools (see ``context.tools``), kept here so reading items needs no SDK.
MEMORY_TOOL = "search_memory"
SAVED_TOOLS = ("remember", "forget_memory")


# What a later request carries of one output of another tool (an MCP server's): enough to recall what it said.
OLD_OUTPUT_CHARS = 1_500


def as_history(items: list[Item]) -> list[Item]:
    """A stored turn's items as a later request carries them: memchat's own memory tools' steps left out
    (see ``without_memory_searches``), and other tools' long outputs shortened.

    The turn that called a tool needed its whole result; a later one has the reply built on it. A result
    kept whole (up to the budget's room) would fill the recent history by itself and push out
    everything older, as memory searches did. The store keeps it whole; ``/history`` shows it.
    """
    kept = without_memory_searches(items)
    return [_shortened(item) if item.get("type") == "function_call_output" else item for item in kept]


def _shortened(item: Item) -> Item:
    output = item.get("output")
    if not isinstance(output, str) or len(output) <= OLD_OUTPUT_CHARS:
        return item
    cut = (
        f"{output[:OLD_OUTPUT_CHARS]}\n[shortened by memchat in later requests: {len(output):,} characters "
        "in all, kept in the memory]"
    )
    return {**item, "output": cut}


def without_memory_searches(items: list[Item]) -> list[Item]:
    """``items`` less memchat's own memory tools' calls and their outputs, as a later request carries them.

    What a search returned is a copy of older messages, often longer than the turn
    itself: kept, one such turn filled the recent history alone. Recall brings back
    what the new message needs, and the saved memories are pinned as they are now, so
    those steps are left out of later requests (the store keeps them, and ``/history``
    shows them).
    """
    own = (MEMORY_TOOL, *SAVED_TOOLS)
    calls = {item.get("call_id") for item in items if item.get("type") == "function_call" and item.get("name") in own}
    if not calls:
        return items
    return [item for item in items if not (item.get("type") in TOOL_STEPS and item.get("call_id") in calls)]
