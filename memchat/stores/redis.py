"""Memories in Redis, in the Agents SDK's ``RedisSession`` key layout.

Each user has the keys ``RedisSession`` uses: a hash ``<prefix>:<id>``
(session_id, created_at, updated_at) and a list ``<prefix>:<id>:messages`` of
JSON items, so an agent built on that class reads what memchat wrote and the
other way round. The prefix is the SDK's default ``agents:session``, or the
URL's ``?key_prefix=`` (the SDK's ``key_prefix``), so several teams or test
runs can share one server. The running summary lives in more fields of the
hash, so clearing the session with either program takes it too.

A position is an item's place in the list, counting from 1. Positions can be
reused (the SDK's ``pop_item`` then ``add_items``), so the summary also keeps a
fingerprint of the item it ends at and counts only while that item is still in
its place. Every change runs under ``WATCH`` and starts again if another
process wrote in between; a turn is one ``RPUSH`` inside ``MULTI``, so turns
from many processes never mix.

A dropped connection is reconnected on the next command (with a health check
on idle connections and bounded retries for reads). A turn's write is never
blindly resent: after a failure memchat looks whether it landed before trying
again, so a turn is neither lost nor stored twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memchat.errors import StoreError, StoreUnreachableError
from memchat.items import Item
from memchat.stores.base import (
    PAGE_ROWS,
    MemoryBase,
    RawRow,
    hide_password,
    last_turn_start,
    new_mark,
    uninterrupted,
    write_surely,
)
from memchat.stores.codec import Codecs, UnreadableError
from memchat.stores.protocol import Summary, Turn, UserStats, Vectors
from memchat.stores.search import Hit, item_words, query_words, words
from memchat.web.accounts import LoginFailures

PREFIX = "agents:session"
# Web password hashes, one field per user id (outside the SDK's prefix, so no user id can reach it).
PASSWORDS_KEY = "memchat:passwords"
SESSIONS_KEY = "memchat:web_sessions"
# Failed web logins: a hash (failures, last) a key, which Redis drops when its count is to be forgotten.
LOGIN_FAILURES_KEY = "memchat:login_failures"
CONNECT_TIMEOUT_SECONDS = 10
# A connection idle this long is pinged before use, so one the server dropped is replaced, not failed on.
HEALTH_CHECK_SECONDS = 10
# Reads are retried this often on a dropped connection, with waits growing to a second.
READ_RETRIES = 3
# How often a watched change starts again when other processes keep writing, and the pauses between.
WATCH_ATTEMPTS = 100
WATCH_PAUSE, WATCH_PAUSE_CAP = 0.002, 0.05
# Where the search index's keys start (see RedisMemory.__init__), and the field of the SDK's session
# hash that says up to which item the index is complete. Words are indexed by their stems since
# 2026-12-03; the unstemmed index of before, under the old names, is dropped and made again under
# the new ones on a memory's first use (``index_missing``).
INDEX_PREFIX, INDEXED_FIELD = "memchat:stems", "memchat_stems_indexed"
OLD_INDEX_PREFIX, OLD_INDEXED_FIELD = "memchat:index", "memchat_indexed"
VECTORS_PREFIX = "memchat:vectors"
# Items indexed per transaction when catching up, and positions read per word when searching.
INDEX_BATCH = 2000
POSTINGS_READ = 200
# The SDK's keys for user "a" and user "a:messages" would overlap, so such ids are refused.
RESERVED_SUFFIXES = (":messages", ":counter")

T = TypeVar("T")


class RedisStore:
    """Every user's memory in one Redis database."""

    def __init__(
        self, client: aioredis.Redis, location: str, encryption_key: str | None = None, prefix: str = PREFIX
    ) -> None:
        self.client = client
        self.location = location
        self.created = False
        self.codecs = Codecs(encryption_key)
        self.prefix = prefix
        self.passwords_key = PASSWORDS_KEY if prefix == PREFIX else f"{PASSWORDS_KEY}:{prefix}"
        # Beside each password hash, the mark its web logins carry (see ``Store.end_web_sessions``).
        self.sessions_key = SESSIONS_KEY if prefix == PREFIX else f"{SESSIONS_KEY}:{prefix}"

    @classmethod
    def connect(cls, url: str, encryption_key: str | None = None, timeout: float = 20.0) -> RedisStore:
        """The store on ``url``, connecting when first used; a command unanswered for ``timeout`` seconds fails."""
        server_url, prefix = split_url(url)
        client = aioredis.from_url(
            server_url,
            decode_responses=True,
            socket_connect_timeout=min(CONNECT_TIMEOUT_SECONDS, timeout),
            socket_timeout=timeout,
            health_check_interval=HEALTH_CHECK_SECONDS,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), READ_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client, hide_password(url), encryption_key, prefix)

    @classmethod
    async def open(cls, url: str, encryption_key: str | None = None, timeout: float = 20.0) -> RedisStore:
        """Connect and check the server answers."""
        store = cls.connect(url, encryption_key, timeout)
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

    async def rebuild_indexes(self, progress: Callable[[int, int], None] | None = None) -> int:
        return 0  # its indexes are per user, made by ``index_vectors``

    async def users(self) -> list[UserStats]:
        found: list[tuple[str, int, int]] = []
        with self.errors():
            async for key in self.client.scan_iter(match=f"{_glob_escape(self.prefix)}:*:messages", _type="list"):
                user = key[len(self.prefix) + 1 : -len(":messages")]
                count = await self.client.llen(key)
                updated = await self.client.hget(f"{self.prefix}:{user}", "updated_at")
                if count:
                    found.append((user, int(count), int(updated or 0)))
        found.sort(key=lambda row: row[2], reverse=True)
        return [UserStats(user, count, _timestamp(updated)) for user, count, updated in found]

    async def password_hash(self, user: str) -> str | None:
        with self.errors():
            found = await self.client.hget(self.passwords_key, user)
        return None if found is None else str(found)

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        with self.errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.passwords_key, user, password_hash)
                pipe.hset(self.sessions_key, user, new_mark())
                await pipe.execute()

    async def web_sessions(self, user: str) -> str | None:
        with self.errors():
            has_password = await self.client.hexists(self.passwords_key, user)
            mark = await self.client.hget(self.sessions_key, user)
        return str(mark or "") if has_password else None

    async def end_web_sessions(self, user: str) -> None:
        with self.errors():
            await self.client.hset(self.sessions_key, user, new_mark())

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        with self.errors():
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._login_failures_key(key), "failures", "last")
                found = await pipe.execute()
        return {
            key: LoginFailures(int(failures), float(last))
            for key, (failures, last) in zip(keys, found, strict=True)
            if failures is not None and last is not None and float(last) >= since
        }

    async def count_login_failure(self, keys: Sequence[str], at: float, since: float) -> dict[str, LoginFailures]:
        with self.errors():
            async with self.client.pipeline(transaction=True) as pipe:
                for key in keys:
                    name = self._login_failures_key(key)
                    pipe.hincrby(name, "failures", 1)
                    pipe.hset(name, "last", repr(at))
                    # Gone when a later call's ``since`` passes this failure: as long after it as ``since`` is before.
                    pipe.expireat(name, math.ceil(2 * at - since))
                await pipe.execute()
        return await self.login_failures(keys, since)

    async def forget_login_failures(self, keys: Sequence[str]) -> None:
        with self.errors():
            await self.client.delete(*(self._login_failures_key(key) for key in keys))

    def _login_failures_key(self, key: str) -> str:
        return f"{LOGIN_FAILURES_KEY}:{self.prefix}:{key}"

    async def close(self) -> None:
        await self.client.aclose()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Driver errors become one clear line, password removed."""
        try:
            yield
        except AuthenticationError as exc:
            raise StoreError(
                f"Redis refused the login ({hide_password(str(exc))}): check the password in --db"
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnreachableError(
                f"cannot reach Redis at {self.location} ({hide_password(str(exc)) or 'timed out'}): "
                "start the server or check the host and port in --db"
            ) from None
        except ResponseError as exc:
            message = hide_password(str(exc))
            if message.startswith(("NOAUTH", "WRONGPASS", "AUTH")):
                raise StoreError(f"Redis refused the login ({message}): check the password in --db") from None
            if message.startswith("WRONGTYPE"):
                raise StoreError(
                    f"Redis at {self.location}: a key memchat uses holds another kind of value ({message}): "
                    "another program uses these keys; pick another user id or ?key_prefix= in --db"
                ) from None
            raise StoreError(f"Redis at {self.location} failed: {message}") from None
        except RedisError as exc:
            raise StoreError(f"Redis at {self.location} failed: {hide_password(str(exc))}") from None

    async def watched(self, keys: tuple[str, ...], change: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``change(pipe)`` with ``keys`` watched, again from the start if another client wrote to them.

        ``change`` reads what it needs, then calls ``pipe.multi()`` and queues its writes.
        """
        with self.errors():
            for attempt in range(1, WATCH_ATTEMPTS + 1):
                async with self.client.pipeline(transaction=True) as pipe:
                    await pipe.watch(*keys)
                    result = await change(pipe)
                    try:
                        await pipe.execute()
                    except WatchError:
                        # A random pause, growing with each loss, so writers racing on one memory take turns
                        # instead of all starting again at once (with many of them, that can go on forever).
                        await asyncio.sleep(random.uniform(0, min(WATCH_PAUSE_CAP, WATCH_PAUSE * attempt)))
                        continue
                    return result
        raise StoreError("this memory kept changing under other writers: try again")


class RedisMemory(MemoryBase):
    """One user's conversation in a ``RedisStore``; an SDK-compatible Session."""

    def __init__(self, store: RedisStore, user: str) -> None:
        super().__init__(user, store.codecs(user))
        self._store = store
        self._redis = store.client
        self._session_key = f"{store.prefix}:{user}"
        self._messages_key = f"{self._session_key}:messages"
        # The search index lives outside the SDK's key space, named by a digest of the user, so no
        # user id can reach another's: a set of the stems indexed, and one sorted set of positions per stem.
        digest = hashlib.sha256(f"{store.prefix}\x00{user}".encode()).hexdigest()[:32]
        self._vocabulary_key = f"{INDEX_PREFIX}:{store.prefix}:{digest}"
        self._old_vocabulary_key = f"{OLD_INDEX_PREFIX}:{store.prefix}:{digest}"
        # Embeddings likewise: one vector per position (base64), and beside it "model tag:seq", seq
        # from a counter that only grows, so a reader can ask for the vectors written since it last read.
        self._vectors_key = f"{VECTORS_PREFIX}:{store.prefix}:{digest}"
        self._vector_models_key = f"{self._vectors_key}:models"
        self._vector_seq_key = f"{self._vectors_key}:seq"
        # Positions scored by seq: what was written since a mark, without reading every entry.
        self._vector_order_key = f"{self._vectors_key}:order"

    async def _watched(self, change: Callable[[Any], Awaitable[T]]) -> T:
        """``change`` under ``WATCH`` of this user's keys (see ``RedisStore.watched``)."""

        async def checked(pipe: Any) -> T:
            # MULTI does not undo the commands before one that fails on a key of the wrong type,
            # so the types are checked while watched, before anything is queued.
            for key, kind in ((self._session_key, "hash"), (self._messages_key, "list")):
                found = await pipe.type(key)
                if found not in ("none", kind):
                    raise ResponseError(f"WRONGTYPE {key} holds a {found}, not a {kind}")
            return await change(pipe)

        return await self._store.watched((self._session_key, self._messages_key), checked)

    @uninterrupted
    async def append(self, items: list[Item]) -> None:
        encoded = [self.codec.encode(item) for item in items]

        async def write(mark: list[int]) -> None:
            async def change(pipe: Any) -> None:
                count = int(await pipe.llen(self._messages_key))
                if mark and await holds(pipe, mark[0]):
                    # An earlier try landed and only its answer was lost (redis-py reports a connection
                    # dropped under WATCH as a WatchError, so this try runs again): nothing more to write.
                    pipe.multi()
                    return
                self.check_key_fits(await pipe.lindex(self._messages_key, -1) if count else None)
                mark[:] = [count]
                caught_up = int(await pipe.hget(self._session_key, INDEXED_FIELD) or 0) == count
                now = str(int(time.time()))
                pipe.multi()
                pipe.hset(self._session_key, "session_id", self.session_id)
                pipe.hsetnx(self._session_key, "created_at", now)
                pipe.rpush(self._messages_key, *encoded)
                # Vectors left at these positions by items another program removed are not theirs.
                self._queue_unembed(pipe, range(count + 1, count + len(encoded) + 1))
                pipe.hset(self._session_key, "updated_at", now)
                if caught_up:
                    self._queue_index(pipe, count, items)

            await self._watched(change)

        async def holds(reader: Any, count: int) -> bool:
            """Whether this turn's items stand right after the first ``count`` items."""
            return bool(await reader.lrange(self._messages_key, count, count + len(encoded) - 1) == encoded)

        async def landed(count: int) -> bool:
            with contextlib.suppress(StoreError), self._store.errors():
                return await holds(self._redis, count)
            return False

        await write_surely(write, landed)

    async def pop(self) -> Item | None:
        async def change(pipe: Any) -> Item | None:
            count = int(await pipe.llen(self._messages_key))
            while count:
                try:
                    # Decoded before the removal is queued: an item that cannot be decrypted (a wrong key) stays.
                    item: Item | None = self.codec.decode(await pipe.lindex(self._messages_key, count - 1))
                except UnreadableError:
                    item = None
                count -= 1
                if item is not None:
                    await self._truncate(pipe, count)
                    return item
            await self._truncate(pipe, 0)
            return None

        return await self._watched(change)

    async def clear_session(self) -> None:
        await self._drop_old_index()
        with self._store.errors():
            indexed = await self._redis.smembers(self._vocabulary_key)
            await self._redis.delete(
                self._session_key,
                self._messages_key,
                f"{self._session_key}:counter",
                self._vocabulary_key,
                self._vectors_key,
                self._vector_models_key,
                self._vector_seq_key,
                self._vector_order_key,
                *(self._postings_key(str(word)) for word in indexed),
            )

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

    async def replace_turn(self, start: int, items: list[Item]) -> None:
        encoded = [self.codec.encode(item) for item in items]

        async def change(pipe: Any) -> None:
            self.check_still_last(start, await last_turn_start(self.rows_backward(0)))
            caught_up = int(await pipe.hget(self._session_key, INDEXED_FIELD) or 0) >= start - 1
            await self._truncate(pipe, start - 1)
            pipe.rpush(self._messages_key, *encoded)
            if caught_up:
                self._queue_index(pipe, start - 1, items)

        await self._watched(change)

    def _postings_key(self, word: str) -> str:
        return f"{self._vocabulary_key}:{word}"

    def _index_words(self, item: Item) -> set[str]:
        return set(self.codec.index_words(stems(words(item_words(item)))))

    def _queue_index(self, pipe: Any, after: int, items: list[Item]) -> None:
        """Queue the index entries of ``items``, stored at the positions after ``after``."""
        for offset, item in enumerate(items, start=after + 1):
            found = self._index_words(item)
            if found:
                pipe.sadd(self._vocabulary_key, *found)
            for word in found:
                pipe.zadd(self._postings_key(word), {str(offset): offset})
        pipe.hset(self._session_key, INDEXED_FIELD, after + len(items))

    async def search(self, query: str, limit: int, before: int | None = None) -> list[Hit]:
        """Words ranked by how rare they are in this memory (a sum of their idf), newest first among equals.

        Redis 7 has no search module here, so the index is this user's own: one sorted set of
        positions per word. Each candidate is read back and checked, so an entry left behind by
        another program's pop can never return the wrong message.
        """
        terms = self.codec.index_words(list(dict.fromkeys(stems(query_words(query)))))
        if not terms:
            return []
        newest = "+inf" if before is None else f"({before}"
        with self._store.errors():
            total = int(await self._redis.llen(self._messages_key))
            if not total:
                return []
            reader = self._redis.pipeline(transaction=False)
            for term in terms:
                reader.zcard(self._postings_key(term))
                reader.zrevrangebyscore(self._postings_key(term), newest, "-inf", start=0, num=POSTINGS_READ)
            answers = await reader.execute()
        scores: dict[int, float] = {}
        for count, positions in zip(answers[::2], answers[1::2], strict=True):
            weight = math.log(1 + total / max(1, int(count)))
            for position in positions:
                scores[int(position)] = scores.get(int(position), 0.0) + weight
        ranked = sorted(scores, key=lambda position: (-scores[position], -position))[: limit * 2]
        if not ranked:
            return []
        stored = await self._stored_at(ranked)
        hits: list[Hit] = []
        wanted = set(terms)
        for position, data in zip(ranked, stored, strict=True):
            if data is None:
                continue
            with contextlib.suppress(UnreadableError):
                if self._index_words(self.codec.decode(data)) & wanted:
                    # Redis keeps no time for an item (the SDK's layout has none): the day is unknown.
                    hits.append(Hit(position, "", -scores[position]))
            if len(hits) == limit:
                break
        return hits

    async def index_missing(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index the items after the last one known to be indexed, a batch a transaction."""
        await self._drop_old_index()
        with self._store.errors():
            start = int(await self._redis.hget(self._session_key, INDEXED_FIELD) or 0)
            total = int(await self._redis.llen(self._messages_key)) - start
        done = 0
        while done < total:

            async def change(pipe: Any) -> int:
                indexed = int(await pipe.hget(self._session_key, INDEXED_FIELD) or 0)
                batch = await pipe.lrange(self._messages_key, indexed, indexed + INDEX_BATCH - 1)
                items: list[Item] = []
                for data in batch:
                    try:
                        items.append(self.codec.decode(data))
                    except UnreadableError:
                        items.append({})
                pipe.multi()
                if items:
                    self._queue_index(pipe, indexed, items)
                return len(items)

            added = await self._watched(change)
            if not added:
                break
            done += added
            if progress is not None:
                progress(min(done, total), total)
        return done

    async def _drop_old_index(self) -> None:
        """Delete the unstemmed index an older memchat kept; the messages are indexed again by their stems."""
        with self._store.errors():
            reader = self._redis.pipeline(transaction=False)
            reader.smembers(self._old_vocabulary_key)
            reader.hexists(self._session_key, OLD_INDEXED_FIELD)
            old, marked = await reader.execute()
            if not old and not marked:
                return
            keys = [self._old_vocabulary_key, *(f"{self._old_vocabulary_key}:{word}" for word in old)]
            for start in range(0, len(keys), INDEX_BATCH):
                await self._redis.delete(*keys[start : start + INDEX_BATCH])
            await self._redis.hdel(self._session_key, OLD_INDEXED_FIELD)

    async def unembedded(self, model: str, limit: int) -> list[tuple[int, str]]:
        tag = _model_tag(model)
        with self._store.errors():
            count = int(await self._redis.llen(self._messages_key))
            made = await self._redis.hgetall(self._vector_models_key)
            have = {int(position) for position, value in made.items() if _tag_and_seq(value)[0] == tag}
            wanted = [position for position in range(count, 0, -1) if position not in have][:limit]
            reader = self._redis.pipeline(transaction=False)
            for position in wanted:
                reader.lindex(self._messages_key, position - 1)
            stored = await reader.execute() if wanted else []
        return self.texts((position, data) for position, data in zip(wanted, stored, strict=True) if data is not None)

    async def save_vectors(self, model: str, vectors: Sequence[tuple[int, str, bytes]]) -> None:
        async def change(pipe: Any) -> None:
            found = [(position, await pipe.lindex(self._messages_key, position - 1)) for position, _, _ in vectors]
            # Positions are reused after an undo: a vector is kept only beside the text it was made from.
            current = dict(self.texts((position, data) for position, data in found if data is not None))
            kept = [(position, vector) for position, text, vector in vectors if current.get(position) == text]
            # INCRBY is atomic on its own: numbers a failed try took are skipped, never given twice.
            last = int(await pipe.incrby(self._vector_seq_key, len(kept))) if kept else 0
            pipe.multi()
            if kept:
                tag = _model_tag(model)
                seqs = {position: last - len(kept) + n for n, (position, _) in enumerate(kept, start=1)}
                pipe.hset(self._vectors_key, mapping={p: base64.b64encode(v).decode() for p, v in kept})
                pipe.hset(self._vector_models_key, mapping={p: f"{tag}:{seq}" for p, seq in seqs.items()})
                pipe.zadd(self._vector_order_key, {str(p): seq for p, seq in seqs.items()})

        if vectors:
            await self._watched(change)

    async def around(self, positions: Sequence[int]) -> list[tuple[int, str, Item]]:
        wanted = sorted({near for position in positions for near in (position - 1, position, position + 1) if near > 0})
        if not wanted:
            return []
        stored = await self._stored_at(wanted)
        # Redis keeps no time for an item (the SDK's layout has none).
        return self.decoded([(position, "", data) for position, data in zip(wanted, stored, strict=True) if data])

    async def _stored_at(self, positions: list[int]) -> list[Any]:
        """What is stored at each of ``positions`` (None where nothing is), read in one round trip."""
        with self._store.errors():
            reader = self._redis.pipeline(transaction=False)
            for position in positions:
                reader.lindex(self._messages_key, position - 1)
            return list(await reader.execute())

    async def days(self, positions: Sequence[int]) -> dict[int, str]:
        # The SDK's layout keeps no time for an item.
        return {}

    async def vectors(self, model: str, after: int = 0, most: int | None = None) -> Vectors:
        tag = _model_tag(model)
        with self._store.errors():
            reader = self._redis.pipeline(transaction=True)  # MULTI: the count and the rows of one moment
            reader.llen(self._messages_key)
            reader.zcard(self._vector_order_key)
            reader.zrangebyscore(self._vector_order_key, f"({after}", "+inf", withscores=True)
            count, total, written = await reader.execute()
            mark = int(max((seq for _, seq in written), default=after))
            if most is not None:
                written = sorted(written, key=lambda entry: -int(entry[0]))[:most]
            positions = [str(at) for at, _ in written]
            reader = self._redis.pipeline(transaction=False)
            reader.hmget(self._vector_models_key, positions)
            reader.hmget(self._vectors_key, positions)
            made, stored = await reader.execute() if positions else ([], [])
        rows = [
            (int(at), "", base64.b64decode(value or ""))
            for at, found, value in zip(positions, made, stored, strict=True)
            # Positions past the end were left by another program's pop; memchat's next write there clears them.
            if found is not None and _tag_and_seq(found)[0] == tag and int(at) <= int(count)
        ]
        # Counted the way this store counts (every model's, every position's): a reader holding fewer reads all again.
        return Vectors(rows, mark, int(total))

    def _queue_unembed(self, pipe: Any, positions: Iterable[int]) -> None:
        if fields := [str(position) for position in positions]:
            pipe.hdel(self._vectors_key, *fields)
            pipe.hdel(self._vector_models_key, *fields)
            pipe.zrem(self._vector_order_key, *fields)

    async def forget(self, turns: list[Turn]) -> bool:
        """Items cannot leave the middle of a Redis list in place: the list is written again without them.

        Positions after the first forgotten item shift, so the index is rebuilt from there
        (``index_missing``, right after) and a summary reaching past it is removed.
        """
        gone = {position for turn in turns for position in range(turn.start, turn.end + 1)}
        first = min(gone)

        async def change(pipe: Any) -> bool:
            stored = await pipe.lrange(self._messages_key, first - 1, -1)
            for turn in turns:
                self.check_unchanged(turn, stored[turn.start - first : turn.end - first + 1])
            kept = [data for position, data in enumerate(stored, start=first) if position not in gone]
            through = await pipe.hget(self._session_key, "memchat_through")
            await self._truncate(pipe, first - 1)
            if kept:
                pipe.rpush(self._messages_key, *kept)
            covered = self.covers(None if through is None else int(through), turns)
            if covered:
                pipe.hdel(self._session_key, "memchat_summary", "memchat_through", "memchat_anchor")
            return covered

        covered = await self._watched(change)
        await self.index_missing()
        return covered

    async def instructions(self) -> str | None:
        with self._store.errors():
            stored = await self._redis.hget(self._session_key, "memchat_instructions")
        return None if stored is None else self.codec.decode_text(str(stored))

    async def set_instructions(self, text: str | None) -> None:
        with self._store.errors():
            if text is None:
                await self._redis.hdel(self._session_key, "memchat_instructions")
            else:
                encoded = self.codec.encode_text(text)
                await self._redis.hset(
                    self._session_key, mapping={"session_id": self.session_id, "memchat_instructions": encoded}
                )

    async def saved_memories(self) -> tuple[str, int]:
        with self._store.errors():
            body, version = await self._redis.hmget(self._session_key, "memchat_saved", "memchat_saved_version")
        return ("", 0) if body is None else (self.codec.decode_text(str(body)), int(version or 0))

    async def save_memories(self, text: str, version: int) -> bool:
        encoded = self.codec.encode_text(text)

        async def change(pipe: Any) -> bool:
            found = int(await pipe.hget(self._session_key, "memchat_saved_version") or 0)
            pipe.multi()
            if found != version:
                return False
            pipe.hset(
                self._session_key,
                mapping={"session_id": self.session_id, "memchat_saved": encoded, "memchat_saved_version": version + 1},
            )
            return True

        return await self._watched(change)

    async def _truncate(self, pipe: Any, keep: int) -> None:
        """Queue the removal of every item after position ``keep``; a summary reaching past it is cut back.

        Their search entries go too, and the index counts as complete no further than ``keep``.
        """
        through = await pipe.hget(self._session_key, "memchat_through")
        anchor = await pipe.lindex(self._messages_key, keep - 1) if keep else None
        indexed = int(await pipe.hget(self._session_key, INDEXED_FIELD) or 0)
        embedded = await pipe.hkeys(self._vector_models_key)
        removed_words: set[str] = set()
        for data in await pipe.lrange(self._messages_key, keep, -1):
            with contextlib.suppress(UnreadableError, StoreError):
                removed_words.update(self._index_words(self.codec.decode(data)))
        pipe.multi()
        for word in removed_words:
            pipe.zremrangebyscore(self._postings_key(word), keep + 1, "+inf")
        self._queue_unembed(pipe, [position for position in map(int, embedded) if position > keep])
        if indexed > keep:
            pipe.hset(self._session_key, INDEXED_FIELD, keep)
        if keep == 0:
            pipe.delete(self._messages_key)
            pipe.hdel(self._session_key, "memchat_summary", "memchat_through", "memchat_anchor")
        else:
            pipe.ltrim(self._messages_key, 0, keep - 1)
            if through is not None and int(through) > keep:
                pipe.hset(self._session_key, mapping={"memchat_through": keep, "memchat_anchor": _fingerprint(anchor)})
        pipe.hset(self._session_key, "updated_at", str(int(time.time())))

    async def count(self) -> int:
        with self._store.errors():
            return int(await self._redis.llen(self._messages_key))

    async def raw_page(
        self, after: int, before: int, *, newest_first: bool, conn: Any = None, limit: int = PAGE_ROWS
    ) -> list[RawRow]:
        with self._store.errors():
            high = min(before - 1, int(await self._redis.llen(self._messages_key)))
            low = max(after + 1, high - limit + 1) if newest_first else after + 1
            high = high if newest_first else min(high, after + limit)
            if low > high:
                return []
            raw = await self._redis.lrange(self._messages_key, low - 1, high - 1)
        rows = [(low + offset, data) for offset, data in enumerate(raw)]
        return rows[::-1] if newest_first else rows

    async def summary(self) -> Summary | None:
        with self._store.errors():
            text, through, anchor = await self._redis.hmget(
                self._session_key, ["memchat_summary", "memchat_through", "memchat_anchor"]
            )
            if text is None or through is None:
                return None
            # The item the summary ends at was popped or replaced by someone else: the summary no longer fits.
            if not await self._anchored(self._redis, through, anchor):
                return None
        return Summary(self.codec.decode_text(str(text)), int(through))

    async def _anchored(self, reader: Any, through: Any, anchor: Any) -> bool:
        """Whether a summary reaching ``through`` still ends at the item whose fingerprint is ``anchor``."""
        if through is None:
            return False
        return bool(anchor == _fingerprint(await reader.lindex(self._messages_key, int(through) - 1)))

    async def save_summary(self, summary: Summary) -> None:
        async def change(pipe: Any) -> None:
            at = await pipe.lindex(self._messages_key, summary.through - 1)
            current, anchor = await pipe.hmget(self._session_key, ["memchat_through", "memchat_anchor"])
            valid = await self._anchored(pipe, current, anchor)
            pipe.multi()
            if at is not None and (not valid or int(current) < summary.through):
                pipe.hset(
                    self._session_key,
                    mapping={
                        "memchat_summary": self.codec.encode_text(summary.text),
                        "memchat_through": summary.through,
                        "memchat_anchor": _fingerprint(at),
                    },
                )

        await self._watched(change)


def split_url(url: str) -> tuple[str, str]:
    """The server URL for the driver, and the key prefix (``?key_prefix=``, else the SDK's default).

    The database number is checked here: the driver would read ``/13abc`` as database 0.
    """
    parts = urlsplit(url)
    try:
        _ = parts.port
    except ValueError:
        raise StoreError(f"--db {hide_password(url)}: the port is not a number: write redis://HOST:PORT/N") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StoreError(
            f"--db {hide_password(url)}: the Redis database must be a number, as in redis://HOST:PORT/0, not {path!r}"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for key, value in query if key == "key_prefix"), PREFIX)
    if not prefix:
        raise StoreError(f"--db {hide_password(url)}: key_prefix is empty: leave it out for the default, or name one")
    rest = urlencode([(key, value) for key, value in query if key != "key_prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _model_tag(model: str) -> str:
    """A short name for an embedding model, safe in a hash field."""
    return hashlib.sha256(model.encode()).hexdigest()[:12]


def _tag_and_seq(value: object) -> tuple[str, int]:
    """The model tag and write number a vector's entry holds ("tag:seq")."""
    tag, _, seq = str(value).partition(":")
    return tag, int(seq or 0)


def _fingerprint(stored: str | None) -> str:
    return "" if stored is None else hashlib.sha256(stored.encode()).hexdigest()[:16]


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def _timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    # Snowball's English stemmer, pure Python: 20 µs a word; a history repeats its words, so a cache.
    import snowballstemmer  # type: ignore[import-untyped]

    return str(snowballstemmer.stemmer("english").stemWord(word))


def stems(words: list[str]) -> list[str]:
    """Each word by its stem ("repairing" and "repaired" are "repair"), as SQLite's and PostgreSQL's indexes keep them."""
    return [_stem(word) for word in words]
