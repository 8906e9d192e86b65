"""``search_memory``: a tool a model that calls tools can use to look further back than recall did.

Automatic recall (see ``recall``) brings what matches the new message; the model
may need something else, said differently or about another thing. The tool
searches the same index and returns dated exchanges. Its calls and their
outputs are stored with the turn, paired, like any tool step.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents import RunContextWrapper, function_tool

from .memory import Memory
from .recall import dated, matching
from .semantic import Semantic

# Exchanges one call returns.
TOOL_RESULTS = 5


@dataclass(frozen=True)
class Searched:
    """What ``search_memory`` searches: one user's memory, given to each run as its context, so the model
    cannot name another user, and the tool (its schema is built once) is shared by every turn."""

    memory: Memory
    semantic: Semantic | None = None


@function_tool(name_override="search_memory")
async def search_memory(run: RunContextWrapper[Searched], query: str) -> str:
    """Search everything this user said in earlier conversations with you, beyond what you were given.

    Args:
        query: the words to look for, such as a name, a place or a topic.
    """
    found = await matching(run.context.memory, query, TOOL_RESULTS, run.context.semantic)
    if not found:
        return f"Nothing in the memory matches {query!r}."
    return dated(found)
