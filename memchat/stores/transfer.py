"""Moving memories: ``memchat copy`` between stores, and export and import through files.

Copying appends to the destination whatever of the source it does not have
yet, so running it twice adds nothing, and running it again after more chats
in the source brings just those over. A destination that holds a different
conversation for the same user is left alone and reported: merging two
histories is a choice for the person, not for a copy.

An export is a ``Snapshot`` of one user's memory (every item as stored, the
summary with how many items it covers, the standing instructions) written as
JSON; importing it is a copy from that snapshot, by the same rules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from memchat.context import saved
from memchat.errors import MemchatError
from memchat.items import Item, describe, is_user_message
from memchat.stores.base import END
from memchat.stores.protocol import Memory, SavedMemory, Store, Summary, Turn

FORMAT = "memchat-export"
VERSION = 1


@dataclass(frozen=True)
class Copied:
    """What happened to one user's memory."""

    user: str
    # How many items were added to the destination.
    added: int
    # False when the destination already held a different conversation.
    copied: bool


@dataclass(frozen=True)
class Snapshot:
    """One user's whole memory, independent of any store."""

    user: str
    items: list[Item]
    summary: str | None = None
    # How many of the first items the summary covers.
    summarized: int = 0
    instructions: str | None = None
    # The saved memories, each fact's turn given as the place of its first item (store positions differ).
    facts: tuple[saved.Fact, ...] = ()

    @classmethod
    async def of(cls, memory: Memory) -> Snapshot:
        turns = await _turns(memory)
        summary = await memory.summary()
        covered = sum(len(turn.items) for turn in turns if summary is not None and turn.end <= summary.through)
        return cls(
            user=memory.session_id,
            items=_flat(turns),
            summary=summary.text if summary is not None and covered else None,
            summarized=covered if summary is not None else 0,
            instructions=await memory.instructions(),
            facts=_by_index(await saved.read(memory), turns),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "user": self.user,
                "instructions": self.instructions,
                "saved_memories": [asdict(fact) for fact in self.facts],
                "summary": None if self.summary is None else {"text": self.summary, "items": self.summarized},
                "items": self.items,
            },
            ensure_ascii=False,
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> Snapshot:
        """The snapshot in an export file; one clear line if ``text`` is not one."""
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("it is not a memchat export")
            if data.get("version") != VERSION:
                raise ValueError(f"it is version {data.get('version')!r} of the format; this memchat reads {VERSION}")
            items, summary = data["items"], data.get("summary")
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise ValueError("its items are not a list of objects")
            if summary is not None and not (
                isinstance(summary.get("text"), str) and isinstance(summary.get("items"), int)
            ):
                raise ValueError("its summary is malformed")
            instructions = data.get("instructions")
            if instructions is not None and not isinstance(instructions, str):
                raise ValueError("its instructions are not text")
            facts = data.get("saved_memories") or []  # absent from exports of memchat before saved memories
            if not isinstance(facts, list) or not all(isinstance(fact, dict) for fact in facts):
                raise ValueError("its saved memories are not a list of objects")
            kept = tuple(saved.Fact(**fact) for fact in facts)
            return cls(
                user=str(data["user"]),
                items=items,
                summary=None if summary is None else summary["text"],
                summarized=0 if summary is None else summary["items"],
                instructions=instructions,
                facts=kept,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MemchatError(f"{where} cannot be imported: {exc}; pass a file written by memchat export") from None

    def to_markdown(self) -> str:
        """For people to read: the instructions, the summary, then every exchange."""
        lines = [f"# memchat: the memory of {self.user}", ""]
        if self.instructions:
            lines += ["## Standing instructions", "", self.instructions, ""]
        if self.facts:
            lines += ["## Saved memories", "", *(f"- {saved.line(fact)}" for fact in self.facts), ""]
        if self.summary:
            lines += [f"## Summary of the first {self.summarized} messages", "", self.summary, ""]
        lines += ["## Conversation", ""]
        for item in self.items:
            speaker, text = describe(item)
            if is_user_message(item):
                lines += ["---", ""]
            lines += [f"**{speaker}:**", "", text, ""]
        return "\n".join(lines)


async def copy_store(source: Store, target: Store, users: list[str] | None = None) -> list[Copied]:
    """Copy ``users`` (default: everyone in ``source``) to ``target``, one result per user."""
    names = users if users is not None else [stats.user for stats in reversed(await source.users())]
    return [await restore(target.memory(user), await Snapshot.of(source.memory(user))) for user in names]


async def restore(target: Memory, snapshot: Snapshot) -> Copied:
    """Bring ``target`` up to ``snapshot``; the summary comes along, pointing at the same turn."""
    have_items = _flat(await _turns(target))
    want_items = snapshot.items
    if [_key(item) for item in want_items[: len(have_items)]] != [_key(item) for item in have_items]:
        # The destination is ahead (copied before, then chatted there) or has diverged.
        ahead = [_key(item) for item in have_items[: len(want_items)]] == [_key(item) for item in want_items]
        return Copied(target.session_id, 0, ahead)
    missing = want_items[len(have_items) :]
    await target.add_items(missing)
    if snapshot.summary is not None and snapshot.summarized:
        await target.save_summary(Summary(snapshot.summary, _end_of(await _turns(target), snapshot.summarized)))
    if snapshot.instructions is not None and await target.instructions() is None:
        await target.set_instructions(snapshot.instructions)
    if snapshot.facts and isinstance(target, SavedMemory) and not (await target.saved_memories())[0]:
        # Each fact's turn, kept in the snapshot as the place of its first item, is a position of this store again.
        position_of = {index: start for start, index in _indexes(await _turns(target)).items()}
        facts = [replace(fact, turn=position_of.get(fact.turn, 0)) for fact in snapshot.facts]
        await target.save_memories(saved.dump(facts), 0)
    return Copied(target.session_id, len(missing), True)


def _indexes(turns: list[Turn]) -> dict[int, int]:
    """Each turn's store position, and the place of its first item among all the items (from 1)."""
    found, count = {}, 0
    for turn in turns:
        found[turn.start] = count + 1
        count += len(turn.items)
    return found


def _by_index(facts: list[saved.Fact], turns: list[Turn]) -> tuple[saved.Fact, ...]:
    """``facts``, each fact's turn given as the place of its first item: positions are the store's own."""
    index = _indexes(turns)
    return tuple(replace(fact, turn=index.get(fact.turn, 0)) for fact in facts)


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
