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
import re
import secrets
from abc import ABC, abstractmethod
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from memchat.errors import StoreError, StoreUnreachableError
from memchat.items import Item, is_user_message
from memchat.stores.codec import Codec, UnreadableError
from memchat.stores.protocol import Summary, Turn
from memchat.stores.search import Hit, item_words

# Up to the last "@" of the URL: a password may hold "@" itself.
_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")


def hide_password(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", text)


if TYPE_CHECKING:
    from agents import SessionSettings, TResponseInputItem

# Rows are read this many at a time, so a lazy reader never holds more.
PAGE_ROWS = 64
# Rows an exchange usually takes (a message and its reply; tool steps add more): the first read of one.
EXCHANGE_ROWS = 4

# A position later than any stored one: "up to the end".
END = 2**62

# A write over a connection that dropped is tried this often in all, with a short wait between.
WRITE_ATTEMPTS = 3

Row = tuple[int, Item]
RawRow = tuple[int, Any]
T = TypeVar("T")
P = ParamSpec("P")


class MemoryBase(ABC):
    """The turn reads of ``Memory``, built on two row readers a store supplies."""

    def __init__(self, user: str, codec: Codec) -> None:
        self.session_id = user
        self.codec = codec
        # The SDK's Session attribute: its ``limit`` applies when get_items is called without one.
        self.session_settings: SessionSettings | None = None

    async def nearest(self, model: str, query: bytes, limit: int, before: int | None = None) -> list[Hit] | None:
        # A store that cannot search its vectors in place: semantic search holds them (see semantic.HeldVectors).
        return None

    async def prepare_search(self, model: str) -> None:
        return None

    async def _search_for_nothing(self, model: str, size: int) -> None:
        """One search of this user's ``model`` vectors of ``size`` bytes, for no question.

        A process's first search costs more than later ones (numpy's first calls, statements prepared,
        the first walk of SQLite's graph, the first query on pgvector's types and index): a run's start
        makes it (see ``prepare_search``) rather than the person's first question.
        """
        await self.nearest(model, array("f", [1.0]).tobytes() * (size // 4), 1)

    async def index_vectors(self, model: str, progress: Callable[[int, int], None] | None = None) -> int:
        return 0

    @property
    def vector_search_note(self) -> str | None:
        """Why ``nearest`` gives None here or is slow, and how to change that, said once to the person; or None."""
        return None

    def reading(self) -> contextlib.AbstractAsyncContextManager[None]:
        # A local store's reads are cheap one by one; a server's store shares a connection instead.
        return contextlib.nullcontext()

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is None:
            items = [item async for _, item in self.rows_forward(0, END)]
        else:
            items = []
            if limit > 0:
                async for _, item in self.rows_backward(0):
                    items.append(item)
                    if len(items) == limit:
                        break
            items.reverse()
        return cast("list[TResponseInputItem]", items)

    async def add_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        if items:
            await self.append([dict(item) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        return cast("TResponseInputItem | None", await self.pop())

    @abstractmethod
    async def append(self, items: list[Item]) -> None:
        """Append ``items`` (never empty) all together or not at all."""

    @abstractmethod
    async def pop(self) -> Item | None:
        """Remove and return the newest readable item, dropping unreadable rows above it."""

    @abstractmethod
    async def raw_page(
        self, after: int, before: int, *, newest_first: bool, conn: Any = None, limit: int = PAGE_ROWS
    ) -> list[RawRow]:
        """Up to ``limit`` (position, stored text) rows strictly between two positions.

        ``conn``, where a store has one, reads inside that open transaction.
        """

    def texts(self, rows: Iterable[RawRow]) -> list[tuple[int, str]]:
        """The text of each stored row, as an embedding model is given it ("" when it holds none or is unreadable)."""
        found = []
        for position, data in rows:
            try:
                found.append((int(position), item_words(self.codec.decode(data)).strip()))
            except UnreadableError:
                found.append((int(position), ""))
        return found

    def decoded(self, rows: Iterable[tuple[Any, Any, Any]]) -> list[tuple[int, str, Item]]:
        """(position, when stored, stored text) rows decoded; rows that hold no item are left out."""
        found = []
        for position, stored_at, data in rows:
            with contextlib.suppress(UnreadableError):
                found.append((int(position), str(stored_at), self.codec.decode(data)))
        return found

    async def page(self, after: int, before: int, *, newest_first: bool) -> list[Row]:
        """Up to ``PAGE_ROWS`` rows, decoded; rows holding no item are left out."""
        return readable(self.codec, await self.raw_page(after, before, newest_first=newest_first))

    async def rows_backward(
        self, after: int, conn: Any = None, before: int = END, first_page: int = PAGE_ROWS
    ) -> AsyncIterator[Row]:
        """Rows between two positions, newest first, a page at a time: stopping early reads no more.

        Pages start at ``first_page`` rows and double up to ``PAGE_ROWS``, for a reader that expects to stop soon.
        """
        size = first_page
        while raw := await self.raw_page(after, before, newest_first=True, conn=conn, limit=size):
            for row in readable(self.codec, raw):
                yield row
            before, size = raw[-1][0], min(PAGE_ROWS, size * 2)

    async def rows_forward(self, after: int, before: int, first_page: int = PAGE_ROWS) -> AsyncIterator[Row]:
        """Rows strictly between two positions, oldest first, a page at a time (see ``rows_backward``)."""
        size = first_page
        while raw := await self.raw_page(after, before, newest_first=False, limit=size):
            for row in readable(self.codec, raw):
                yield row
            after, size = raw[-1][0], min(PAGE_ROWS, size * 2)

    async def turns_backward(self, after: int, before: int = END) -> AsyncIterator[Turn]:
        items: list[Item] = []
        positions: list[int] = []
        async for position, item in self.rows_backward(after, before=before):
            items.append(item)
            positions.append(position)
            if is_user_message(item):
                yield Turn(position, positions[0], items[::-1], tuple(positions[::-1]))
                items, positions = [], []
        if items:  # items before the first user message (written by other tools)
            yield Turn(after + 1, positions[0], items[::-1], tuple(positions[::-1]))

    async def turns_forward(self, after: int, before: int, first_page: int = PAGE_ROWS) -> AsyncIterator[Turn]:
        items: list[Item] = []
        positions: list[int] = []
        async for position, item in self.rows_forward(after, before, first_page):
            if items and is_user_message(item):
                yield Turn(positions[0], positions[-1], items, tuple(positions))
                items, positions = [], []
            items.append(item)
            positions.append(position)
        if items:
            yield Turn(positions[0], positions[-1], items, tuple(positions))

    @staticmethod
    def check_still_last(start: int, newest_start: int | None) -> None:
        """Refuse to replace a turn that is no longer the newest (another memchat wrote or undid meanwhile)."""
        if newest_start != start:
            raise StoreError(
                "the last exchange changed while the new reply was coming (another memchat on this memory?): "
                "the old one was kept; look at /history and try again"
            )

    async def turn_at(self, position: int) -> Turn | None:
        """The whole exchange that holds the item at ``position``; None if no user message opens it."""
        # An exchange is a few rows: read them a few at a time, not a page (recall reads a dozen exchanges).
        start = None
        async for row_position, item in self.rows_backward(0, before=position + 1, first_page=EXCHANGE_ROWS):
            if is_user_message(item):
                start = row_position
                break
        if start is None:
            return None
        async for turn in self.turns_forward(start - 1, END, first_page=EXCHANGE_ROWS):
            return turn
        return None

    def check_unchanged(self, turn: Turn, stored: Iterable[Any]) -> None:
        """Refuse to forget ``turn`` if what is ``stored`` at its positions is no longer its items."""
        if [item for _, item in readable(self.codec, enumerate(stored))] != turn.items:
            raise changed_meanwhile()

    @staticmethod
    def covers(through: int | None, turns: list[Turn]) -> bool:
        """Whether a summary reaching ``through`` took in any of ``turns`` (and so may mention them)."""
        return through is not None and any(turn.start <= through for turn in turns)

    def check_key_fits(self, newest: str | bytes | None) -> None:
        """Raise ``StoreError`` if this memory's newest stored row is not under this process's key.

        Called inside each store's write lock (or WATCH): another process may have started this
        memory under another key a moment ago, after this one's start-up check.
        """
        if newest is not None:
            with contextlib.suppress(UnreadableError):
                self.codec.decode(newest)

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


def new_mark() -> str:
    """A fresh random mark for a user's web logins (see ``Store.end_web_sessions``)."""
    return secrets.token_urlsafe(12)


def changed_meanwhile() -> StoreError:
    return StoreError(
        "the memory changed while this was being decided (another memchat on it?): nothing was forgotten; "
        "look again with /search and try once more"
    )


def readable(codec: Codec, rows: Iterable[RawRow]) -> list[Row]:
    """Decoded rows; rows that hold no item are skipped (see ``codec.UnreadableError``)."""
    decoded: list[Row] = []
    for position, data in rows:
        try:
            decoded.append((position, codec.decode(data)))
        except UnreadableError:
            continue
    return decoded


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


async def write_surely(write: Callable[[list[int]], Awaitable[None]], landed: Callable[[int], Awaitable[bool]]) -> None:
    """Run ``write`` again when the connection drops, but never write twice.

    ``write(mark)`` puts into ``mark`` the newest position it saw before writing; after a
    dropped connection ``landed(position)`` tells whether the write was applied after all
    (the server may have committed it just before the connection went).
    """
    mark: list[int] = []
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            await write(mark)
            return
        except StoreUnreachableError:
            if mark and await landed(mark[0]):
                return
            if attempt == WRITE_ATTEMPTS:
                raise
            await asyncio.sleep(0.25 * attempt)
