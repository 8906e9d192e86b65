"""The interface every store of memories offers, whatever its backend.

``Memory`` is one user's conversation. It is a structural match for the Agents
SDK's ``Session`` protocol (``session_settings``, ``get_items``, ``add_items``,
``pop_item``, ``clear_session``), so it can be handed to the SDK where a Session is expected,
plus what memchat needs on top: whole-turn reads, undo, the summary, search by words.
``VectorMemory`` is what a memory adds for search by meaning, where the store keeps vectors, and
``SavedMemory`` what it adds for saved memories.
``Store`` holds every user's memory and knows who is in it. What the web page keeps
about its users (passwords, logins) is a protocol of its own: ``memchat.web.accounts``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from memchat.items import Item

if TYPE_CHECKING:
    # For the type checker only: importing the SDK takes seconds, and the database paths never need it.
    from agents import SessionSettings, TResponseInputItem

    from memchat.stores.search import Hit


@dataclass(frozen=True)
class UserStats:
    """One user id found in a store."""

    user: str
    messages: int
    last_active: str


@dataclass(frozen=True)
class Turn:
    """One exchange: a user message and everything up to the next one.

    ``start`` and ``end`` are the store's positions of its first and last item;
    positions only grow, so "after position N" is a stable bookmark.
    """

    start: int
    end: int
    items: list[Item]
    # The position of each item, where the reader knew them (a turn written at once has them in a row).
    positions: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Vectors:
    """Some of one user's vectors from one embedding model, as a reader that keeps them asks for them.

    ``rows`` are (position, when stored, vector), written after the mark asked for (all with 0);
    empty ones mark messages with no text. ``mark`` is the newest row's mark, to ask from next time,
    and ``total`` how many rows the user has in all: a reader holding fewer than that, with these
    added, knows some were deleted and reads them all again.
    """

    rows: list[tuple[int, str, bytes]]
    mark: int
    total: int


@dataclass(frozen=True)
class Summary:
    """What the model wrote about turns that no longer fit the context budget.

    ``through`` is the position of the last item folded into it.
    """

    text: str
    through: int


class Memory(Protocol):
    """One user's stored conversation."""

    session_id: str
    session_settings: SessionSettings | None

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items (all when None: ``session_settings.limit``, if set), oldest first."""
        ...

    async def add_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Append items all together or not at all."""
        ...

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item."""
        ...

    async def clear_session(self) -> None:
        """Forget everything this user said, summary included."""
        ...

    async def last_turns(self, turns: int) -> list[Item]:
        """The items of the latest ``turns`` turns, oldest first."""
        ...

    async def undo(self) -> int:
        """Remove the latest turn (the last user message and all after it); return items removed."""
        ...

    async def check_readable(self) -> None:
        """Raise ``StoreError`` now if this memory cannot be read (an encryption key that does not fit)."""
        ...

    async def count(self) -> int:
        """How many items are stored."""
        ...

    async def replace_turn(self, start: int, items: list[Item]) -> None:
        """Replace the newest turn, which starts at position ``start``, with ``items``, all at once.

        Raises ``StoreError`` and changes nothing if the newest turn no longer starts there.
        """
        ...

    async def search(self, query: str, limit: int, before: int | None = None) -> list[Hit]:
        """Stored messages matching the words of ``query``, best first (stored before ``before``, if given)."""
        ...

    async def forget(self, turns: list[Turn]) -> bool:
        """Delete these whole exchanges, with their index entries, all at once; True if the summary went too.

        A summary that covered any of them is removed (it may mention them), and is written
        again from what remains as the conversation goes on. Raises ``StoreError`` and changes
        nothing if any of them is no longer stored as it was.
        """
        ...

    async def turn_at(self, position: int) -> Turn | None:
        """The whole exchange that holds the item at ``position``; None if no user message opens it."""
        ...

    async def index_missing(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index the messages not in the search index yet (written by an older memchat or another program).

        Incremental and safe to interrupt; ``progress(done, total)`` follows it. Returns how many it looked at.
        """
        ...

    async def around(self, positions: Sequence[int]) -> list[tuple[int, str, Item]]:
        """The messages at ``positions`` with this user's message just before and just after each, oldest first.

        Each as (position, when stored, item); the time is '' where the store keeps none (Redis).
        """
        ...

    async def days(self, positions: Sequence[int]) -> dict[int, str]:
        """When each message at ``positions`` was stored ('YYYY-MM-DD HH:MM:SS'), where the store keeps it.

        Redis keeps no time for a message (the SDK's layout has none): there it is always empty.
        """
        ...

    async def instructions(self) -> str | None:
        """This user's own standing instructions (a persona, a language, a style), if set."""
        ...

    async def set_instructions(self, text: str | None) -> None:
        """Set or (with None) remove this user's standing instructions; ``clear_session`` removes them too."""
        ...

    def turns_backward(self, after: int, before: int = ...) -> AsyncIterator[Turn]:
        """Turns stored between positions ``after`` and ``before`` (default: the end), newest first, read lazily.

        A caller that stops iterating early has read only the rows it used.
        """
        ...

    def turns_forward(self, after: int, before: int) -> AsyncIterator[Turn]:
        """Turns between two positions, oldest first, read lazily."""
        ...

    async def summary(self) -> Summary | None:
        """The running summary of older turns, if one was written."""
        ...

    def reading(self) -> AbstractAsyncContextManager[None]:
        """A block of reads that see one moment of the store and, on a server, share one connection.

        Building a request makes a dozen reads; on PostgreSQL each on its own took a connection
        check and a transaction, most of the time of the lot. No writes inside.
        """
        ...

    async def save_summary(self, summary: Summary) -> None:
        """Replace the running summary, unless the stored one reaches further or its turns are gone.

        Two processes folding the same memory at once must not move the
        summary backward, and a fold that finishes after a clear must not bring
        the cleared memory back.
        """
        ...


@runtime_checkable
class VectorMemory(Protocol):
    """What a memory offers for search by meaning: its messages' vectors, kept and searched beside them.

    A capability of its own, as the SDK's sessions have theirs: a store without it is searched by words alone.
    """

    async def unembedded(self, model: str, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` of this user's messages with no vector from embedding ``model`` yet, newest first.

        Each as (position, text); the text is "" for a message that holds none.
        """
        ...

    async def save_vectors(self, model: str, vectors: Sequence[tuple[int, str, bytes]]) -> None:
        """Keep each (position, text, vector) beside its message, replacing one from another model.

        A message deleted or changed meanwhile (its text no longer the one given) gets none.
        The vectors go with their messages, whoever deletes them.
        """
        ...

    async def vectors(self, model: str, after: int = 0, most: int | None = None) -> Vectors:
        """This user's vectors from ``model`` written after mark ``after`` (see ``Vectors``), read at one moment.

        With ``most``, only those of the ``most`` newest messages among them.
        """
        ...

    async def nearest(self, model: str, query: bytes, limit: int, before: int | None = None) -> list[Hit] | None:
        """The ``limit`` messages before ``before`` whose ``model`` vectors are nearest ``query``, best first.

        None where the store cannot search its vectors itself: the caller then reads them (``vectors``).
        """
        ...

    async def prepare_search(self, model: str) -> None:
        """Make ready what a first ``nearest`` needs (SQLite: its graph), while the question is being embedded."""
        ...

    async def index_vectors(self, model: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Bring the store's own index of this user's ``model`` vectors up to date (vectors from an older memchat).

        Searches do it too, a bounded part at a time; this does all of it, ``progress(done, total)``
        following it. Returns how many vectors it indexed (0 where the store keeps no index).
        """
        ...

    @property
    def vector_search_note(self) -> str | None:
        """Why ``nearest`` gives None here or is slow, and how to change that, said once to the person; or None."""
        ...


@runtime_checkable
class SavedMemory(Protocol):
    """What a memory offers for saved memories: durable facts about the user, kept apart from the conversation.

    They are kept as one text (see ``memchat.context.saved``) with a version, so two processes changing
    them at once cannot lose each other's change: a write names the version it read.
    """

    async def saved_memories(self) -> tuple[str, int]:
        """This user's saved memories as last written ('' when none yet), and their version (0 when none)."""
        ...

    async def save_memories(self, text: str, version: int) -> bool:
        """Replace them with ``text`` if they are still at ``version``; False, changing nothing, if not.

        ``clear_session`` removes them with the rest of the memory.
        """
        ...


class Store(Protocol):
    """Every user's memory in one place."""

    # Where it is, for people: a file's absolute path, or a server URL with its password masked.
    location: str
    # True when opening it made a new, empty SQLite file (a new memory, not the one the user may expect).
    created: bool

    def memory(self, user: str) -> Memory:
        """The memory of ``user`` (created on first write)."""
        ...

    async def users(self) -> list[UserStats]:
        """Users with stored messages, most recently active first."""
        ...

    async def rebuild_indexes(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Make again the store-wide search indexes made in an older, slower shape; how many it made.

        ``memchat index`` does it, ``progress(done, total)`` following it (minutes at a million vectors).
        """
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...
