"""Saved memories: durable facts about the user, kept apart from the conversation and pinned in every request.

Recall finds the past when the new message points at it; "suggest a dinner" shares no
word with "I am vegetarian". So the model keeps a short list of what lasts about the
person (``remember``, ``forget_memory``, see ``tools``), the person
sees and corrects it (``/memories``), and every request carries it in its instructions,
newest-confirmed first, within a small share of the budget.

The list is one JSON text per user in the store (``SavedMemory``), written with the
version it was read at, so two processes changing it at once never lose a change.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from memchat.context.budget import TokenEstimator
from memchat.errors import MemchatError
from memchat.stores.protocol import Memory, SavedMemory

# Pinned facts take at most this share of the budget (a tenth); the oldest-confirmed are left out first.
PINNED_SHARE = 10
# A fact is a sentence or two; a longer one is cut, so one fact cannot crowd out the rest.
MOST_CHARS = 500
# Enough for what lasts about a person; past it, the oldest-confirmed fact makes room.
MOST_FACTS = 200
# Tries when another process changed the list between a read and a write, each after a short random wait.
WRITE_TRIES = 30

HEADING = (
    "Saved memories about this user, with the day each was last confirmed (use them unasked; remember what "
    "lasts, with replaces=N when memory N changed; forget_memory when asked):"
)


@dataclass(frozen=True)
class Fact:
    """One saved memory: its number (unique among this user's; one past the highest), what it says, and when."""

    number: int
    text: str
    saved: str
    confirmed: str
    # Who wrote it last: "model" (a tool call) or "you" (/memories).
    by: str = "model"
    # The store's position of the turn it came from (0: none, /memories); /forget of that turn forgets it.
    turn: int = 0


@dataclass(frozen=True)
class Change:
    """One change to the list: add (number 0), replace the text of a number, or forget a number (text None)."""

    number: int
    text: str | None
    by: str = "model"
    turn: int = 0


def now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M")


def parse(text: str) -> list[Fact]:
    if not text:
        return []
    return [Fact(**fact) for fact in json.loads(text)["facts"]]


def dump(facts: Sequence[Fact]) -> str:
    return json.dumps({"facts": [asdict(fact) for fact in facts]}, ensure_ascii=False)


def clean(text: str) -> str:
    """A fact as kept: one line, at most ``MOST_CHARS`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= MOST_CHARS else line[: MOST_CHARS - 1].rstrip() + "…"


def applied(facts: Sequence[Fact], changes: Sequence[Change], at: str) -> tuple[list[Fact], list[str]]:
    """``facts`` with ``changes`` made, and a line for the person about each (``saved: ...``)."""
    kept = {fact.number: fact for fact in facts}
    said: list[str] = []
    for change in changes:
        old = kept.get(change.number)
        if change.text is None:
            if old is not None:
                del kept[change.number]
                said.append(f"forgot: {old.text}")
            continue
        text = clean(change.text)
        if not text:
            continue
        if old is None:
            same = next((fact for fact in kept.values() if fact.text.casefold() == text.casefold()), None)
            if same is not None:  # said again: confirmed, not kept twice
                kept[same.number] = replace(same, confirmed=at)
                continue
            number = max([0, *kept, *(fact.number for fact in facts)]) + 1
            kept[number] = Fact(number, text, at, at, change.by, change.turn)
            said.append(f"saved: {text}")
        elif old.text != text:
            kept[change.number] = replace(old, text=text, confirmed=at, by=change.by, turn=change.turn)
            said.append(f"updated: {text}")
    ordered = sorted(kept.values(), key=lambda fact: fact.number)
    while len(ordered) > MOST_FACTS:
        ordered.remove(min(ordered, key=lambda fact: fact.confirmed))
    return ordered, said


async def read(memory: Memory) -> list[Fact]:
    """This user's saved memories, oldest number first; none where the store keeps none."""
    if not isinstance(memory, SavedMemory):
        return []
    return parse((await memory.saved_memories())[0])


def from_turns(facts: Sequence[Fact], starts: set[int]) -> list[Change]:
    """Forgetting the facts that came from the turns starting at ``starts`` (the exchanges /forget deletes)."""
    return [Change(fact.number, None, "you") for fact in facts if fact.turn and fact.turn in starts]


async def change(memory: Memory, changes: Sequence[Change]) -> list[str]:
    """Make ``changes`` to this user's saved memories; the lines that say what changed."""
    if not changes:
        return []
    if not isinstance(memory, SavedMemory):
        raise MemchatError("this store keeps no saved memories: they need SQLite, PostgreSQL or Redis")
    for attempt in range(WRITE_TRIES):
        text, version = await memory.saved_memories()
        facts, said = applied(parse(text), changes, now())
        if await memory.save_memories(dump(facts), version):
            return said
        # Two writers in step would keep meeting: a random wait breaks the step.
        await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
    raise MemchatError("the saved memories kept changing under this change: try again")


def pinned(facts: Sequence[Fact], room: int, estimator: TokenEstimator) -> tuple[str, int]:
    """The text that pins ``facts`` in a request, within ``room`` tokens, and how many were left out.

    The most recently confirmed go in first; they are listed by number.
    """
    if not facts:
        return "", 0
    chosen: list[Fact] = []
    used = estimator.tokens(HEADING)
    for fact in sorted(facts, key=lambda fact: (fact.confirmed, fact.number), reverse=True):
        cost = estimator.tokens(line(fact)) + 1
        if used + cost > room:
            continue
        chosen.append(fact)
        used += cost
    if not chosen:
        return "", len(facts)
    listed = "\n".join(line(fact) for fact in sorted(chosen, key=lambda fact: fact.number))
    return f"{HEADING}\n{listed}", len(facts) - len(chosen)


def line(fact: Fact) -> str:
    return f"{fact.number}. [{fact.confirmed[:10]}] {fact.text}"


# For servers that take no tools: after a turn, the same model is asked, in a short request of its
# own, what of the new exchange should be kept. Plain lines, which small local models write reliably.
NOTE_INSTRUCTIONS = """You keep a short list of lasting facts about a user: preferences, facts about their life, \
things they asked you to remember. Read the new exchange below and answer only with lines of these forms:
SAVE: <a new lasting fact about the user, as a short sentence>
REPLACE <number>: <what is now true, where a saved fact changed or was wrong>
FORGET <number>
or the single line NOTHING when there is nothing lasting to keep. Never save small talk, questions, or what \
only matters for this conversation."""
_NOTE_LINE = re.compile(r"^\s*(SAVE|REPLACE|FORGET)\s*(\d+)?\s*:?\s*(.*?)\s*$", re.IGNORECASE)
# A reply past this many lines is a model that did not follow the form: nothing of it is kept.
MOST_NOTED = 5


def note_request(facts: Sequence[Fact], user_text: str, reply: str) -> str:
    """What the noting request asks about: the saved facts as they are, and the new exchange."""
    listed = "\n".join(line(fact) for fact in facts) or "(none yet)"
    return f"Saved facts:\n{listed}\n\nNew exchange:\nuser: {user_text}\nassistant: {reply}"


def noted(answer: str, facts: Sequence[Fact]) -> list[Change]:
    """The changes a noting answer proposes; numbers that name no saved fact are left out."""
    known = {fact.number for fact in facts}
    changes: list[Change] = []
    for raw in answer.strip().splitlines():
        match = _NOTE_LINE.match(raw)
        if match is None:
            continue
        verb, number, text = match.group(1).upper(), int(match.group(2) or 0), match.group(3)
        if verb == "SAVE" and text:
            changes.append(Change(0, text))
        elif verb == "REPLACE" and number in known and text:
            changes.append(Change(number, text))
        elif verb == "FORGET" and number in known:
            changes.append(Change(number, None))
    return changes if len(changes) <= MOST_NOTED else []
