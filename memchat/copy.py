"""``memchat copy``: move memories from one store to another, safely repeatable.

Copying appends to the destination whatever of the source it does not have
yet, so running it twice adds nothing, and running it again after more chats
in the source brings just those over. A destination that holds a different
conversation for the same user is left alone and reported: merging two
histories is a choice for the person, not for a copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .items import Item
from .memory import Memory, Store, Summary, Turn
from .memory_base import END


@dataclass(frozen=True)
class Copied:
    """What happened to one user's memory."""

    user: str
    # How many items were added to the destination.
    added: int
    # False when the destination already held a different conversation.
    copied: bool


async def copy_store(source: Store, target: Store, users: list[str] | None = None) -> list[Copied]:
    """Copy ``users`` (default: everyone in ``source``) to ``target``, one result per user."""
    names = users if users is not None else [stats.user for stats in reversed(await source.users())]
    return [await copy_memory(source.memory(user), target.memory(user)) for user in names]


async def copy_memory(source: Memory, target: Memory) -> Copied:
    """Bring ``target`` up to ``source``; the summary comes along, pointing at the same turn."""
    have = await _turns(target)
    want = await _turns(source)
    have_items, want_items = _flat(have), _flat(want)
    if [_key(item) for item in want_items[: len(have_items)]] != [_key(item) for item in have_items]:
        # The destination is ahead (copied before, then chatted there) or has diverged.
        ahead = [_key(item) for item in have_items[: len(want_items)]] == [_key(item) for item in want_items]
        return Copied(source.session_id, 0, ahead)
    missing = want_items[len(have_items) :]
    await target.add_items(missing)
    summary = await source.summary()
    if summary is not None:
        folded = sum(len(turn.items) for turn in want if turn.end <= summary.through)
        if folded:
            await target.save_summary(Summary(summary.text, _end_of(await _turns(target), folded)))
    return Copied(source.session_id, len(missing), True)


async def _turns(memory: Memory) -> list[Turn]:
    return [turn async for turn in memory.turns_forward(0, END)]


def _flat(turns: list[Turn]) -> list[Item]:
    return [item for turn in turns for item in turn.items]


def _key(item: Item) -> str:
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _end_of(turns: list[Turn], items: int) -> int:
    """The position of the last item of the turn where the first ``items`` items end."""
    seen = 0
    for turn in turns:
        seen += len(turn.items)
        if seen >= items:
            return turn.end
    return turns[-1].end if turns else 0
