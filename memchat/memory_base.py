"""What every store's memory shares: turning stored rows into turns.

A store knows how to read a page of one user's rows, each an item with its
position, newest first or oldest first. Where a turn starts and ends is decided here, once,
so the stores cannot disagree about it: a turn opens at a user message and runs
to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from .codec import Codec
from .items import Item, is_user_message
from .memory import Summary, Turn

# Rows are read this many at a time, so a lazy reader never holds more.
PAGE_ROWS = 64

# A position later than any stored one: "up to the end".
END = 2**62

Row = tuple[int, Item]
T = TypeVar("T")
P = ParamSpec("P")


class MemoryBase(ABC):
    """The turn reads of ``Memory``, built on two row readers a store supplies."""

    def __init__(self, user: str, codec: Codec) -> None:
        self.session_id = user
        self.codec = codec

    @abstractmethod
    async def page(self, after: int, before: int, *, newest_first: bool, conn: Any = None) -> list[Row]:
        """Up to ``PAGE_ROWS`` (position, item) rows strictly between two positions.

        ``conn``, where a store has one, reads inside that open transaction.
        """

    async def rows_backward(self, after: int, conn: Any = None) -> AsyncIterator[Row]:
        """Rows after ``after``, newest first, a page at a time: stopping early reads no more."""
        before = END
        while page := await self.page(after, before, newest_first=True, conn=conn):
            for row in page:
                yield row
            before = page[-1][0]

    async def rows_forward(self, after: int, before: int) -> AsyncIterator[Row]:
        """Rows strictly between two positions, oldest first, a page at a time."""
        while page := await self.page(after, before, newest_first=False):
            for row in page:
                yield row
            after = page[-1][0]

    async def turns_backward(self, after: int) -> AsyncIterator[Turn]:
        items: list[Item] = []
        end = 0
        async for position, item in self.rows_backward(after):
            end = end or position
            items.append(item)
            if is_user_message(item):
                yield Turn(position, end, items[::-1])
                items, end = [], 0
        if items:  # items before the first user message (written by other tools)
            yield Turn(after + 1, end, items[::-1])

    async def turns_forward(self, after: int, before: int) -> AsyncIterator[Turn]:
        items: list[Item] = []
        start = end = 0
        async for position, item in self.rows_forward(after, before):
            if items and is_user_message(item):
                yield Turn(start, end, items)
                items = []
            if not items:
                start = position
            items.append(item)
            end = position
        if items:
            yield Turn(start, end, items)

    async def check_readable(self) -> None:
        """Decode the newest items and the summary, so a wrong or missing key stops a run before any change."""
        await self.page(0, END, newest_first=True)
        await self.summary()

    @abstractmethod
    async def summary(self) -> Summary | None: ...

    async def last_turns(self, turns: int) -> list[Item]:
        if turns <= 0:
            return []
        newest: list[Turn] = []
        async for turn in self.turns_backward(0):
            newest.append(turn)
            if len(newest) == turns:
                break
        return [item for turn in reversed(newest) for item in turn.items]


async def last_turn_start(rows: AsyncIterator[Row]) -> int | None:
    """The position where the newest turn begins, given rows newest first; None if no user message."""
    async for position, item in rows:
        if is_user_message(item):
            return position
    return None


def uninterrupted(write: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A write that runs to its end even if the caller is cancelled meanwhile; the cancellation is passed on after."""

    @functools.wraps(write)
    async def finishing(*args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(write(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task
            raise

    return finishing
