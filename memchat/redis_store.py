"""Memories in Redis, in the Agents SDK's ``RedisSession`` key layout.

Each user has the keys ``RedisSession`` uses with its default prefix: a hash
``agents:session:<id>`` (session_id, created_at, updated_at) and a list
``agents:session:<id>:messages`` of JSON items, so an agent built on that class
reads what memchat wrote and the other way round. The running summary lives in
two more fields of the hash, so clearing the session with either program takes
it too.

A position is an item's place in the list, counting from 1. A turn is appended
with one ``RPUSH`` inside ``MULTI``, so turns from many processes never mix;
undo, pop and the summary check what they change under ``WATCH`` and start
again if another process wrote in between.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .codec import Codecs
from .errors import StoreError
from .items import Item
from .memory import Summary, UserStats
from .memory_base import PAGE_ROWS, MemoryBase, Row, last_turn_start
from .stores import redact

PREFIX = "agents:session"
# Web password hashes, one field per user id (outside the SDK's prefix, so no user id can reach it).
PASSWORDS_KEY = "memchat:passwords"
CONNECT_TIMEOUT_SECONDS = 10
COMMAND_TIMEOUT_SECONDS = 30
# How often a watched change starts again when other processes keep writing.
WATCH_ATTEMPTS = 100
# The SDK's keys for user "a" and user "a:messages" would overlap, so such ids are refused.
RESERVED_SUFFIXES = (":messages", ":counter")

T = TypeVar("T")


class RedisStore:
    """Every user's memory in one Redis database."""

    def __init__(self, client: aioredis.Redis, location: str, encryption_key: str | None = None) -> None:
        self.client = client
        self.location = location
        self.codecs = Codecs(encryption_key)

    @classmethod
    async def open(cls, url: str, encryption_key: str | None = None) -> RedisStore:
        """Connect and check the server answers."""
        store = cls(
            aioredis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                socket_timeout=COMMAND_TIMEOUT_SECONDS,
            ),
            redact(url),
            encryption_key,
        )
        try:
            with store.errors():
                await store.client.ping()
        except BaseException:
            await store.close()
            raise
        return store

    def memory(self, user: str) -> RedisMemory:
        if user.endswith(RESERVED_SUFFIXES):
            raise StoreError(
                f"user ids ending in {' or '.join(RESERVED_SUFFIXES)} cannot be kept in Redis "
                "(their keys would overlap another user's): pick another id"
            )
        return RedisMemory(self, user)

    async def users(self) -> list[UserStats]:
        found: list[tuple[str, int, int]] = []
        with self.errors():
            async for key in self.client.scan_iter(match=f"{PREFIX}:*:messages", _type="list"):
                user = key[len(PREFIX) + 1 : -len(":messages")]
                count, updated = await self.client.llen(key), await self.client.hget(f"{PREFIX}:{user}", "updated_at")
                if count:
                    found.append((user, int(count), int(updated or 0)))
        found.sort(key=lambda row: row[2], reverse=True)
        return [UserStats(user, count, _timestamp(updated)) for user, count, updated in found]

    async def password_hash(self, user: str) -> str | None:
        with self.errors():
            found = await self.client.hget(PASSWORDS_KEY, user)
        return None if found is None else str(found)

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        with self.errors():
            await self.client.hset(PASSWORDS_KEY, user, password_hash)

    async def close(self) -> None:
        await self.client.aclose()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Driver errors become one clear line, password removed."""
        try:
            yield
        except AuthenticationError as exc:
            raise StoreError(f"Redis refused the login ({redact(str(exc))}): check the password in --db") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreError(
                f"cannot reach Redis at {self.location} ({redact(str(exc)) or 'timed out'}): "
                "start the server or check the host and port in --db"
            ) from None
        except ResponseError as exc:
            message = redact(str(exc))
            if message.startswith(("NOAUTH", "WRONGPASS", "AUTH")):
                raise StoreError(f"Redis refused the login ({message}): check the password in --db") from None
            raise StoreError(f"Redis at {self.location} failed: {message}") from None
        except RedisError as exc:
            raise StoreError(f"Redis at {self.location} failed: {redact(str(exc))}") from None

    async def watched(self, keys: tuple[str, ...], change: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``change(pipe)`` with ``keys`` watched, again from the start if another client wrote to them.

        ``change`` reads what it needs, then calls ``pipe.multi()`` and queues its writes.
        """
        with self.errors():
            for _ in range(WATCH_ATTEMPTS):
                async with self.client.pipeline(transaction=True) as pipe:
                    await pipe.watch(*keys)
                    result = await change(pipe)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    return result
        raise StoreError("this memory kept changing under other writers: try again")


class RedisMemory(MemoryBase):
    """One user's conversation in a ``RedisStore``; an SDK-compatible Session."""

    def __init__(self, store: RedisStore, user: str) -> None:
        super().__init__(user, store.codecs(user))
        self._store = store
        self._redis = store.client
        self._session_key = f"{PREFIX}:{user}"
        self._messages_key = f"{self._session_key}:messages"

    async def _watched(self, change: Callable[[Any], Awaitable[T]]) -> T:
        """``change`` under ``WATCH`` of this user's keys (see ``RedisStore.watched``)."""
        return await self._store.watched((self._session_key, self._messages_key), change)

    async def get_items(self, limit: int | None = None) -> list[Item]:
        if limit is not None and limit <= 0:
            return []
        with self._store.errors():
            raw = await self._redis.lrange(self._messages_key, 0 if limit is None else -limit, -1)
        return [self.codec.decode(data) for data in raw]

    async def add_items(self, items: list[Item]) -> None:
        if not items:
            return
        now = str(int(time.time()))
        with self._store.errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._session_key, "session_id", self.session_id)
                pipe.hsetnx(self._session_key, "created_at", now)
                pipe.rpush(self._messages_key, *[self.codec.encode(item) for item in items])
                pipe.hset(self._session_key, "updated_at", now)
                await pipe.execute()

    async def pop_item(self) -> Item | None:
        async def change(pipe: Any) -> Item | None:
            count = int(await pipe.llen(self._messages_key))
            if count == 0:
                pipe.multi()
                return None
            # Decoded before the removal is queued: an item that cannot be read (a wrong key) stays.
            item = self.codec.decode(await pipe.lindex(self._messages_key, -1))
            await self._truncate(pipe, count - 1)
            return item

        return await self._watched(change)

    async def clear_session(self) -> None:
        with self._store.errors():
            await self._redis.delete(self._session_key, self._messages_key, f"{self._session_key}:counter")

    async def undo(self) -> int:
        async def change(pipe: Any) -> int:
            count = int(await pipe.llen(self._messages_key))
            start = await last_turn_start(self.rows_backward(0))
            if start is None:
                pipe.multi()
                return 0
            await self._truncate(pipe, start - 1)
            return count - (start - 1)

        return await self._watched(change)

    async def _truncate(self, pipe: Any, keep: int) -> None:
        """Queue the removal of every item after position ``keep``; a summary reaching past it is cut back."""
        through = await pipe.hget(self._session_key, "memchat_through")
        pipe.multi()
        if keep == 0:
            pipe.delete(self._messages_key)
            pipe.hdel(self._session_key, "memchat_summary", "memchat_through")
        else:
            pipe.ltrim(self._messages_key, 0, keep - 1)
            if through is not None and int(through) > keep:
                pipe.hset(self._session_key, "memchat_through", keep)
        pipe.hset(self._session_key, "updated_at", str(int(time.time())))

    async def count(self) -> int:
        with self._store.errors():
            return int(await self._redis.llen(self._messages_key))

    async def page(self, after: int, before: int, *, newest_first: bool, conn: Any = None) -> list[Row]:
        with self._store.errors():
            high = min(before - 1, int(await self._redis.llen(self._messages_key)))
            low = max(after + 1, high - PAGE_ROWS + 1) if newest_first else after + 1
            high = high if newest_first else min(high, after + PAGE_ROWS)
            if low > high:
                return []
            raw = await self._redis.lrange(self._messages_key, low - 1, high - 1)
        rows = [(low + offset, self.codec.decode(data)) for offset, data in enumerate(raw)]
        return rows[::-1] if newest_first else rows

    async def summary(self) -> Summary | None:
        with self._store.errors():
            text, through = await self._redis.hmget(self._session_key, ["memchat_summary", "memchat_through"])
        return (
            Summary(self.codec.decode_text(str(text)), int(through))
            if text is not None and through is not None
            else None
        )

    async def save_summary(self, summary: Summary) -> None:
        async def change(pipe: Any) -> None:
            count = int(await pipe.llen(self._messages_key))
            current = await pipe.hget(self._session_key, "memchat_through")
            pipe.multi()
            if summary.through <= count and (current is None or int(current) < summary.through):
                pipe.hset(
                    self._session_key,
                    mapping={
                        "memchat_summary": self.codec.encode_text(summary.text),
                        "memchat_through": summary.through,
                    },
                )

        await self._watched(change)


def _timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
