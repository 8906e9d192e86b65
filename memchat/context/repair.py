"""History that other programs wrote, repaired as it is sent (never rewritten in the store).

A plain SDK loop stopped at the wrong moment leaves a tool call without its
output, or a user message without a reply (the next one then follows it
directly). Servers refuse such a history (OpenAI: "tool_calls must be followed
by tool messages"; llama.cpp's chat templates: "roles must alternate"), so every
later turn would fail. memchat's own turns are stored whole and never look like
this; a memory shared with other programs may.
"""

from __future__ import annotations

from typing import Any

from memchat.items import Item, is_user_message


def repaired(items: list[Item]) -> list[Item]:
    """``items`` with unanswered tool calls and unasked-for outputs left out, and user messages in a row joined."""
    calls = {item.get("call_id") for item in items if item.get("type") == "function_call"}
    outputs = {item.get("call_id") for item in items if item.get("type") == "function_call_output"}
    paired = calls & outputs
    kept: list[Item] = []
    for item in items:
        if item.get("type") in ("function_call", "function_call_output") and item.get("call_id") not in paired:
            continue
        if is_user_message(item) and kept and is_user_message(kept[-1]):
            kept[-1] = {**kept[-1], "content": _joined(kept[-1].get("content"), item.get("content"))}
            continue
        kept.append(item)
    return kept


def _joined(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"
    return [*_parts(first), *_parts(second)]


def _parts(content: Any) -> list[Any]:
    if isinstance(content, list):
        return content
    return [{"type": "input_text", "text": str(content or "")}]
