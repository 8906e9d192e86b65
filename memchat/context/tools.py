"""The tools memchat offers a model that calls tools, all bound to one user's memory.

``search_memory`` looks further back than recall did: automatic recall (see ``recall``)
brings what matches the new message, the model may need something else, said
differently or about another thing; the tool searches the same way and returns what
the request does not hold yet, within the room the budget left for it.

``remember`` (with ``replaces``, an update) and ``forget_memory`` keep the saved memories (see
``saved``). What they change is noted in the turn's context and written only once the
turn is stored: a turn that fails saves nothing.

Their calls and their outputs are stored with the turn, paired, like any tool step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents import FunctionTool, RunContextWrapper, function_tool

from memchat.context.budget import MESSAGE_TOKENS, TokenEstimator
from memchat.context.recall import HEADING, recall
from memchat.context.saved import Change, Fact, clean
from memchat.context.semantic import Semantic
from memchat.items import MEMORY_TOOL
from memchat.stores.base import END
from memchat.stores.protocol import Memory

if TYPE_CHECKING:
    from memchat.toolbox.approval import Approver


@dataclass
class ToolContext:
    """What ``search_memory`` searches, given to each run as its context: one user's memory, so the model
    cannot name another user, and the tool (its schema is built once) is shared by every turn.

    ``sent`` are the positions of the messages the request already holds, and ``room`` the tokens
    left for what the tool returns; both change as it is called within a turn.
    """

    memory: Memory
    semantic: Semantic | None = None
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    room: int = 0
    sent: set[int] = field(default_factory=set)
    # Messages from here on are the turn's own and are not searched.
    older_than: int = END
    # The saved memories as the request pinned them, and what the turn's tool calls change of them.
    facts: list[Fact] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    # Asks the person before an MCP tool runs (see ``toolbox``); None where nobody can be asked.
    approve: Approver | None = None
    # What the person should hear about the turn's tool calls, said with the reply.
    notices: list[str] = field(default_factory=list)

    @property
    def user(self) -> str:
        return self.memory.session_id


async def search(searched: ToolContext, query: str) -> str:
    """What one call of the tool returns: the best excerpts for ``query`` not yet in the request."""
    # The call, and the heading of what it returns, take their part of the room too.
    overhead = searched.estimator.tokens(HEADING + query) + 2 * MESSAGE_TOKENS
    found = await recall(
        searched.memory,
        query,
        searched.room - overhead,
        searched.estimator,
        older_than=searched.older_than,
        semantic=searched.semantic,
        leave_out=frozenset(searched.sent),
    )
    if not found.excerpts:
        if searched.room <= 0:
            return "No room is left in this request for more of the memory: answer with what you have."
        return f"Nothing in the memory matches {query!r} beyond what you were given."
    searched.sent |= found.positions
    searched.room -= found.tokens + overhead
    return found.text


@function_tool(name_override=MEMORY_TOOL)
async def search_memory(run: RunContextWrapper[ToolContext], query: str) -> str:
    """Search everything this user said in earlier conversations with you, beyond what you were given.

    Args:
        query: the words to look for, such as a name, a place or a topic.
    """
    return await search(run.context, query)


def _known(context: ToolContext, number: int) -> bool:
    return any(fact.number == number for fact in context.facts) or any(
        change.number == number for change in context.changes
    )


@function_tool
async def remember(run: RunContextWrapper[ToolContext], fact: str, replaces: int = 0) -> str:
    """Save a lasting fact about the user, in a short sentence.

    Args:
        fact: the fact.
        replaces: the number of the saved memory it updates; 0 for a new one.
    """
    if not clean(fact):
        return "Nothing saved: the fact was empty."
    if replaces and not _known(run.context, replaces):
        return f"There is no saved memory {replaces}: leave out replaces to save a new one."
    run.context.changes.append(Change(replaces, fact))
    return f"Memory {replaces} is now: {clean(fact)}" if replaces else f"Saved: {clean(fact)}"


@function_tool
async def forget_memory(run: RunContextWrapper[ToolContext], number: int) -> str:
    """Forget a saved memory.

    Args:
        number: its number.
    """
    if not _known(run.context, number):
        return f"There is no saved memory {number}."
    run.context.changes.append(Change(number, None))
    return f"Memory {number} is forgotten."


# Every tool memchat offers the model, beside the agent's own; a new one is a function_tool above, added here.
MODEL_TOOLS: list[FunctionTool] = [search_memory]
# Offered too while saved memories are on (MEMCHAT_SAVED_MEMORIES) and the store keeps them.
SAVED_TOOLS: list[FunctionTool] = [remember, forget_memory]
