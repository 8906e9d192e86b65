"""The interface every store of memories offers, whatever its backend.

``Memory`` is one user's conversation. It is a structural match for the Agents
SDK's ``Session`` protocol (``get_items``, ``add_items``, ``pop_item``,
``clear_session``), so it can be handed to the SDK where a Session is expected,
plus the few operations memchat needs on top: whole-turn reads and undo.
``Store`` holds every user's memory and knows who is in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .items import Item


@dataclass(frozen=True)
class UserStats:
    """One user id found in a store."""

    user: str
    messages: int
    last_active: str


class Memory(Protocol):
    """One user's stored conversation."""

    session_id: str

    async def get_items(self, limit: int | None = None) -> list[Item]:
        """The latest ``limit`` items (all when None), oldest first."""
        ...

    async def add_items(self, items: list[Item]) -> None:
        """Append items all together or not at all."""
        ...

    async def pop_item(self) -> Item | None:
        """Remove and return the newest item."""
        ...

    async def clear_session(self) -> None:
        """Forget everything this user said."""
        ...

    async def last_turns(self, turns: int) -> list[Item]:
        """The items of the latest ``turns`` turns, oldest first."""
        ...

    async def undo(self) -> int:
        """Remove the latest turn (the last user message and all after it); return items removed."""
        ...

    async def count(self) -> int:
        """How many items are stored."""
        ...


class Store(Protocol):
    """Every user's memory in one place."""

    def memory(self, user: str) -> Memory:
        """The memory of ``user`` (created on first write)."""
        ...

    async def users(self) -> list[UserStats]:
        """Users with stored messages, most recently active first."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
