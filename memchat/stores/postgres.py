"""Memories in PostgreSQL, in the Agents SDK's ``SQLAlchemySession`` schema.

The tables are the ones ``SQLAlchemySession`` creates (``agent_sessions``,
``agent_messages``), so an agent built on that class reads what memchat wrote
and the other way round; memchat adds ``memchat_summaries`` beside them. The
class exists instead of ``SQLAlchemySession`` for what that class does not
give: whole-turn reads, undo and the summary done in one locked transaction
each, a list of users, and errors a person can act on. Writes run to their end
even when the caller is cancelled (Ctrl-C, a stopped summary): a statement cut
off half-way costs a dropped connection, not just the write.

Every write locks the user's ``agent_sessions`` row first, as the SDK's own
class does, so writers of one user (memchat processes on any host, or SDK
sessions) take turns and a turn's rows get consecutive ids. A lock held too
long by someone else ends in a clear error, not a hang, and so does a server
that stops answering: every statement has a time limit on the server and on
the client. A connection the server dropped is noticed before use and replaced,
so a server that comes back is used again without restarting memchat; a turn
whose write met a dropped connection is tried again, after checking that it did
not land.

The summary counts only while the message it ends at is still stored, so the
SDK's own ``clear_session`` or ``pop_item`` on the same tables cannot leave a
summary of messages that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from memchat.errors import StoreError, StoreUnreachableError
from memchat.items import Item
from memchat.stores.base import (
    END,
    PAGE_ROWS,
    MemoryBase,
    RawRow,
    changed_meanwhile,
    hide_password,
    last_turn_start,
    new_mark,
    uninterrupted,
    write_surely,
)
from memchat.stores.codec import Codecs, UnreadableError
from memchat.stores.migrations.postgres import MIGRATIONS
from memchat.stores.protocol import Summary, Turn, UserStats, Vectors
from memchat.stores.search import Hit, index_body, index_query
from memchat.web.accounts import LoginFailures

CONNECT_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = 10

# Any constant will do: it only keeps two first starts from creating the tables at once.
SCHEMA_LOCK = 0x6D656D63


READ_LOGIN_FAILURES = """
SELECT key, failures, last FROM memchat_login_failures WHERE key = ANY(:keys) AND last >= :since
"""

# Messages indexed per transaction when catching up on an older database.
INDEX_BATCH = 2000

# With pgvector: a user with at most this many vectors is searched exactly (a scan of their rows, tens of
# milliseconds); past it, by an HNSW index of their sign bits, whose closest MOST_CANDIDATES (the
# walk's hnsw.ef_search) are ranked by cosine. The index walk skips other users' rows as it
# goes, up to SCAN_MOST of them: enough for a user with a fraction of the table.
EXACT_UP_TO = 5_000
# The index's shape: links a node keeps (HNSW's m) and candidates weighed while adding one
# (ef_construction). The sign bits of many vectors tie, and a denser graph finds its way among them:
# on the benchmark's million 1,536-number vectors, pgvector's own shape (16, 64) found 92.5% of the
# true nearest 10 walking 1,000 (110 ms at p50), this one 98% walking 300 (32 ms), 94.5% walking 200.
GRAPH_LINKS, GRAPH_BUILD = 32, 128
MOST_CANDIDATES = 300
SCAN_MOST = 200_000
# Vectors from before pgvector given their copy on a search, at most (about a second); memchat index does all.
CATCH_UP_PER_SEARCH = 5000

# The tables that grow with a history, and the columns memchat's plans filter or order them by (not
# the texts and vectors, which would take long to sample and say nothing to the planner).
ANALYZED = {
    "agent_messages": "id, session_id, created_at",
    "memchat_search": "message_id, session_id, body",
    "memchat_vectors": "seq, message_id, session_id, model",
}
# Tables changed by more rows since they were last counted than they held then (never counted: -1).
STALE_STATISTICS = """
SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
WHERE s.relid IN (SELECT to_regclass(name) FROM unnest(CAST(:names AS text[])) AS name)
AND s.n_mod_since_analyze > 1000 + GREATEST(c.reltuples, 0)
"""
# For this transaction, in one round trip: the walk's width and how far it may go for this user's rows;
# no sort (the planner, seeing the user's filter, may read all their rows and sort them instead: at
# 25,000 rows that took 430 ms against a few for the index), and no compiling (that rule makes the plan
# look costly enough to compile, JIT: 126 ms for a 14 ms query).
INDEX_SETTINGS = """
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', :walk, true),
    set_config('hnsw.max_scan_tuples', :scan, true), set_config('enable_sort', 'off', true),
    set_config('jit', 'off', true)
"""
COUNT_UP_TO = """
SELECT COUNT(*) FROM (SELECT 1 FROM memchat_vectors WHERE session_id = :user AND model = :model LIMIT :most) AS few
"""
NEAREST_EXACT = """
SELECT v.message_id, to_char(m.created_at, 'YYYY-MM-DD HH24:MI:SS'), v.embedding <=> CAST(:query AS halfvec) AS distance
FROM memchat_vectors AS v JOIN agent_messages AS m ON m.id = v.message_id
WHERE v.session_id = :user AND v.model = :model AND v.message_id < :before AND v.embedding IS NOT NULL
ORDER BY distance, v.message_id DESC LIMIT :limit
"""
# The closest by their bits, through the index (its expression and condition, so the planner can use it),
# then ranked by cosine on their half-precision copies, in the database: only the best leave it, and
# only they are looked up for their day (all the candidates' lookups took 4 ms of 41 at 100,000).
NEAREST_BY_INDEX = """
SELECT r.message_id, to_char(m.created_at, 'YYYY-MM-DD HH24:MI:SS'), r.distance
FROM (
    SELECT c.message_id, c.embedding <=> CAST(:query AS halfvec({size})) AS distance
    FROM (
        SELECT message_id, embedding FROM memchat_vectors
        WHERE vector_dims(embedding) = {size} AND session_id = :user AND model = :model AND message_id < :before
        ORDER BY binary_quantize(embedding)::bit({size}) <~> binary_quantize(CAST(:query AS halfvec({size})))
        LIMIT :wanted
    ) AS c
    ORDER BY distance, c.message_id DESC LIMIT :limit
) AS r JOIN agent_messages AS m ON m.id = r.message_id
ORDER BY r.distance, r.message_id DESC
"""
# A message's vector leans to the message before it (see ``semantic.in_context``): the one after a
# forgotten exchange loses its vector, and gets one again from what now precedes it.
FORGET_NEXT_VECTOR = """
DELETE FROM memchat_vectors WHERE session_id = :user
AND message_id = (SELECT MIN(id) FROM agent_messages WHERE session_id = :user AND id > :end)
"""
UNEMBEDDED_COUNT = """
SELECT (SELECT COUNT(*) FROM agent_messages WHERE session_id = :user)
    - (SELECT COUNT(*) FROM memchat_vectors WHERE session_id = :user AND model = :model)
"""
UNEMBEDDED_NEWEST = """
SELECT id, message_data FROM (
    SELECT id, message_data FROM agent_messages WHERE session_id = :user ORDER BY id DESC LIMIT :missing
) AS m WHERE NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = :model)
ORDER BY id DESC LIMIT :limit
"""
UNEMBEDDED_AFTER = """
SELECT id, message_data FROM agent_messages AS m
WHERE session_id = :user AND id > :mark AND id <= :newest
AND NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = :model)
ORDER BY id DESC LIMIT :limit
"""
UNEMBEDDED_ANY = """
SELECT id, message_data FROM agent_messages AS m WHERE session_id = :user
AND NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = :model)
ORDER BY id DESC LIMIT :limit
"""
SAVE_VECTOR = """
INSERT INTO memchat_vectors (message_id, session_id, model, vector{columns})
SELECT id, session_id, :model, :vector{values} FROM agent_messages WHERE id = :id AND session_id = :user
ON CONFLICT (message_id) DO UPDATE
SET model = EXCLUDED.model, vector = EXCLUDED.vector, seq = nextval('memchat_vectors_seq_seq'){again}
"""
WITHOUT_EMBEDDING = """
SELECT message_id, vector FROM memchat_vectors
WHERE session_id = :user AND model = :model AND embedding IS NULL AND octet_length(vector) > 0 LIMIT 500
"""

READ_SUMMARY = """
SELECT s.summary, s.through_id FROM memchat_summaries AS s
WHERE s.session_id = :user
AND EXISTS (SELECT 1 FROM agent_messages WHERE id = s.through_id AND session_id = :user)
"""

# Same rule as the SQLite store: never move the summary backward, never save one for a cleared memory.
SAVE_SUMMARY = """
INSERT INTO memchat_summaries (session_id, summary, through_id)
SELECT CAST(:user AS VARCHAR), CAST(:summary AS TEXT), CAST(:through AS INTEGER)
WHERE EXISTS (
    SELECT 1 FROM agent_messages WHERE id = CAST(:through AS INTEGER) AND session_id = CAST(:user AS VARCHAR)
)
ON CONFLICT (session_id) DO UPDATE
SET summary = EXCLUDED.summary, through_id = EXCLUDED.through_id, updated_at = CURRENT_TIMESTAMP
WHERE memchat_summaries.through_id < EXCLUDED.through_id
OR NOT EXISTS (
    SELECT 1 FROM agent_messages
    WHERE id = memchat_summaries.through_id AND session_id = CAST(:user AS VARCHAR)
)
"""


class PostgresStore:
    """Every user's memory in one PostgreSQL database."""

    def __init__(self, engine: AsyncEngine, location: str, encryption_key: str | None, timeout: float) -> None:
        self._engine = engine
        # The connection of the block of reads the running task is in (see ``reading``), per store:
        # ``memchat copy`` may read one database while it writes another.
        self._reading: ContextVar[AsyncConnection | None] = ContextVar(f"memchat-reading-{id(self)}", default=None)
        self.location = location
        self.created = False
        self.codecs = Codecs(encryption_key)
        self.timeout = timeout
        # Whether the server has pgvector, so vectors are searched where they are (see ``open``).
        self.pgvector = False
        # (user, model) searched once by this process (see ``PostgresMemory.prepare_search``).
        self.searched: set[tuple[str, str]] = set()
        self._indexed_sizes: set[int] = set()
        # (user, model) with more vectors than are searched exactly (see ``PostgresMemory.nearest``).
        self.long_histories: set[tuple[str, str]] = set()
        # Vector indexes made in an older shape, which memchat index makes again (see ``rebuild_indexes``).
        self.older: list[str] = []

    @classmethod
    def connect(cls, url: str, encryption_key: str | None = None, timeout: float = 20.0) -> PostgresStore:
        """The store on ``url``, connecting when first used (``open`` also makes sure the tables exist).

        The server ends a statement that runs ``timeout`` seconds, and the client gives up
        on a server that stays silent a little longer (one that hangs cannot end anything).
        """
        parsed = _checked_url(url)
        milliseconds = str(int(timeout * 1000))
        engine = create_async_engine(
            parsed.set(drivername="postgresql+asyncpg"),
            connect_args={
                "timeout": min(CONNECT_TIMEOUT_SECONDS, timeout),
                "command_timeout": timeout + 2,
                "server_settings": {
                    "statement_timeout": milliseconds,
                    "idle_in_transaction_session_timeout": milliseconds,
                },
            },
            pool_pre_ping=True,
            pool_use_lifo=True,
        )
        return cls(engine, hide_password(url), encryption_key, timeout)

    @classmethod
    async def open(cls, url: str, encryption_key: str | None = None, timeout: float = 20.0) -> PostgresStore:
        """Connect, and create the tables if this database has none yet."""
        store = cls.connect(url, encryption_key, timeout)
        try:
            async with store.connection(write=True) as conn:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                await _migrate(conn)
                store.pgvector = await _with_pgvector(conn)
            if store.pgvector:
                store.older = await store.older_indexes()
            await store._refresh_statistics()
        except BaseException:
            await store.close()
            raise
        return store

    def memory(self, user: str) -> PostgresMemory:
        return PostgresMemory(self, user)

    async def _refresh_statistics(self) -> None:
        """Have the server look again at the tables a history grows, where what it knows of them is far behind.

        Its planner chooses by what it last counted. A server that never counts on its own
        (autovacuum off) plans a newest-first page of a history of 100,000 messages as if the user
        had three: it reads all their rows and sorts them, 30 ms for 64 rows, 300 ms at a million;
        a turn reads about twenty such pages. Once counted, 0.1 ms. Where the server keeps up, this finds nothing to do.
        """
        async with self.connection() as conn:
            stale = (await conn.execute(text(STALE_STATISTICS), {"names": list(ANALYZED)})).scalars().all()
            for name in stale:
                # A table that is not memchat's to count (another owner) is passed over with a warning.
                await conn.execute(text(f"ANALYZE {name} ({ANALYZED[str(name)]})"))

    async def users(self) -> list[UserStats]:
        rows = await self.query(
            """
            SELECT session_id, COUNT(*), to_char(MAX(created_at), 'YYYY-MM-DD HH24:MI:SS')
            FROM agent_messages GROUP BY session_id ORDER BY MAX(id) DESC
            """
        )
        return [UserStats(user, count, last) for user, count, last in rows]

    async def password_hash(self, user: str) -> str | None:
        rows = await self.query("SELECT hash FROM memchat_passwords WHERE user_id = :user", user=user)
        return str(rows[0][0]) if rows else None

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        async with self.connection(write=True) as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO memchat_passwords (user_id, hash, sessions) VALUES (:user, :hash, :mark)
                    ON CONFLICT (user_id) DO UPDATE
                    SET hash = EXCLUDED.hash, sessions = EXCLUDED.sessions, updated_at = CURRENT_TIMESTAMP
                    """
                ),
                {"user": user, "hash": password_hash, "mark": new_mark()},
            )

    async def web_sessions(self, user: str) -> str | None:
        rows = await self.query("SELECT sessions FROM memchat_passwords WHERE user_id = :user", user=user)
        return str(rows[0][0]) if rows else None

    async def end_web_sessions(self, user: str) -> None:
        async with self.connection(write=True) as conn:
            await conn.execute(
                text("UPDATE memchat_passwords SET sessions = :mark WHERE user_id = :user"),
                {"user": user, "mark": new_mark()},
            )

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        rows = await self.query(READ_LOGIN_FAILURES, keys=list(keys), since=since)
        return {key: LoginFailures(failures, last) for key, failures, last in rows}

    async def count_login_failure(self, keys: Sequence[str], at: float, since: float) -> dict[str, LoginFailures]:
        async with self.connection(write=True) as conn:
            # Old counts go, but never with a wait: another process counting may hold some of them.
            await conn.execute(
                text(
                    """
                    DELETE FROM memchat_login_failures WHERE key IN (
                        SELECT key FROM memchat_login_failures WHERE last < :since FOR UPDATE SKIP LOCKED
                    )
                    """
                ),
                {"since": since},
            )
            # In key order: two processes counting the same pair of keys never wait on each other's rows.
            for key in sorted(keys):
                await conn.execute(
                    text(
                        """
                        INSERT INTO memchat_login_failures (key, failures, last) VALUES (:key, 1, :at)
                        ON CONFLICT (key) DO UPDATE
                        SET failures = CASE WHEN memchat_login_failures.last < :since THEN 1
                                            ELSE memchat_login_failures.failures + 1 END,
                            last = EXCLUDED.last
                        """
                    ),
                    {"key": key, "at": at, "since": since},
                )
            rows = (await conn.execute(text(READ_LOGIN_FAILURES), {"keys": list(keys), "since": since})).all()
        return {key: LoginFailures(failures, last) for key, failures, last in rows}

    async def forget_login_failures(self, keys: Sequence[str]) -> None:
        async with self.connection(write=True) as conn:
            await conn.execute(text("DELETE FROM memchat_login_failures WHERE key = ANY(:keys)"), {"keys": list(keys)})

    async def close(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def connection(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed at the end; errors become one clear line."""
        with self._errors():
            async with self._engine.begin() as conn:
                if write:
                    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
                yield conn

    async def index_size(self, conn: AsyncConnection, size: int) -> None:
        """An HNSW index of the sign bits of vectors of ``size`` numbers, made when the first such vector is kept.

        Bits, not the numbers: Hamming distance is far cheaper than cosine, so adding a vector to the
        index takes a fraction of the time (1,536 numbers: 14 ms a vector for cosine on this project's
        machine); the candidates it gives are then ranked by cosine (see ``NEAREST_BY_INDEX``).
        """
        if size in self._indexed_sizes:
            return
        await conn.execute(text(_bits_index(f"idx_memchat_vectors_bits_{size}", size)))
        self._indexed_sizes.add(size)

    async def older_indexes(self) -> list[str]:
        """The vector indexes made in an older shape than today's (``GRAPH_LINKS``)."""
        rows = await self.query(
            "SELECT relname, reloptions FROM pg_class WHERE relkind = 'i' "
            "AND relname ~ '^idx_memchat_vectors_bits_[0-9]+$'"
        )
        return sorted(str(name) for name, options in rows if f"m={GRAPH_LINKS}" not in (options or []))

    async def rebuild_indexes(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Each vector index of an older shape made again beside the store's reads and writes (``CONCURRENTLY``).

        With no time limit. The new index takes the old one's name in one statement, so searches and
        saves always find it; one cut short leaves a spare (``_new`` or ``_old``), dropped by the next.
        """
        older = await self.older_indexes()
        spares = await self.query(
            "SELECT relname FROM pg_class WHERE relkind = 'i' AND relname ~ '^idx_memchat_vectors_bits_[0-9]+_(new|old)$'"
        )
        if not older and not spares:
            return 0
        async with self._engine.connect() as plain:
            conn = await plain.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("SET statement_timeout = 0"))
            try:
                for (spare,) in spares:
                    await conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {spare}"))
                for name in older:
                    building = asyncio.ensure_future(
                        conn.execute(text(_bits_index(f"{name}_new", int(name.rsplit("_", 1)[1]), concurrently=True)))
                    )
                    while not building.done():
                        await asyncio.wait([building], timeout=1.0)
                        if progress is not None and not building.done():
                            progress(*await self._build_progress())
                    await building
                    await conn.execute(
                        text(
                            f"DO $$ BEGIN ALTER INDEX {name} RENAME TO {name}_old; ALTER INDEX {name}_new RENAME TO {name}; END $$"
                        )
                    )
                    await conn.execute(text(f"DROP INDEX CONCURRENTLY {name}_old"))
            finally:
                await conn.execute(text("RESET statement_timeout"))
        self.older = []
        return len(older)

    async def _build_progress(self) -> tuple[int, int]:
        """How far the server is in building an index of the vectors' table, in blocks read (its own count)."""
        rows = await self.query(
            "SELECT blocks_done, blocks_total FROM pg_stat_progress_create_index "
            "WHERE relid = to_regclass('memchat_vectors')"
        )
        done, total = rows[0] if rows else (0, 0)
        return int(done), max(int(total), int(done), 1)

    async def query(self, sql: str, **params: Any) -> list[Any]:
        if (reading := self._reading.get()) is not None:
            with self._errors():
                return list((await reading.execute(text(sql), params)).all())
        async with self.connection() as conn:
            return list((await conn.execute(text(sql), params)).all())

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """``query`` in this block (of this task) uses one read-only transaction: one snapshot, one connection.

        Each query on its own costs a connection check, BEGIN and COMMIT: about 1 ms here,
        against 0.2 ms inside a transaction, and a request makes a dozen.
        """
        if self._reading.get() is not None:
            yield
            return
        async with self.connection() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            token = self._reading.set(conn)
            try:
                yield
            finally:
                self._reading.reset(token)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except DBAPIError as exc:
            cause = exc.orig.__cause__ if exc.orig is not None else None
            if exc.connection_invalidated:  # the connection dropped mid-statement
                raise self._unreachable(cause or exc.orig or exc) from None
            raise self._explain(cause or exc.orig or exc) from None
        except (OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from None
        except SQLAlchemyError as exc:
            if isinstance(exc.__cause__, (OSError, TimeoutError)):
                raise self._unreachable(exc.__cause__) from None
            raise StoreError(f"PostgreSQL at {self.location} failed: {exc}") from None

    def _explain(self, exc: BaseException) -> StoreError:
        """One line for an error from the server or the driver, password removed."""
        if isinstance(exc, (OSError, TimeoutError)):
            return self._unreachable(exc)
        code = getattr(exc, "sqlstate", None)
        message = hide_password(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if code == "57014":  # query_canceled: the statement timeout
            return StoreUnreachableError(
                f"PostgreSQL at {self.location} did not finish within {self.timeout:g} s: "
                "the server is overloaded or stuck; try again, or raise MEMCHAT_STORE_TIMEOUT"
            )
        if code == "55P03":  # lock_not_available
            return StoreError(
                f"this memory stayed locked by another process for {LOCK_TIMEOUT_SECONDS} s: try again, "
                "or close the other memchat"
            )
        if code is not None and code.startswith(("28", "3D")):  # invalid authorization, unknown database
            return StoreError(
                f"PostgreSQL refused the connection ({message}): check the user, password and database in --db "
                f"{self.location}"
            )
        return StoreError(f"PostgreSQL at {self.location} failed: {message}")

    def _unreachable(self, exc: BaseException) -> StoreError:
        reason = hide_password(str(exc)) or f"no answer within {self.timeout:g} s"
        return StoreUnreachableError(
            f"cannot reach PostgreSQL at {self.location} ({reason}): start the server or check the host and port in --db"
        )


class PostgresMemory(MemoryBase):
    """One user's conversation in a ``PostgresStore``; an SDK-compatible Session."""

    def __init__(self, store: PostgresStore, user: str) -> None:
        super().__init__(user, store.codecs(user))
        self._store = store

    @property
    def vector_search_note(self) -> str | None:
        if self._store.pgvector and self._store.older:
            return (
                f"the vector index of {self._store.location} was made in an older shape that finds fewer of the "
                "closest messages, more slowly: memchat index makes it again (minutes at a million messages, "
                "while the chat goes on)"
            )
        if self._store.pgvector:
            return None
        return (
            f"{self._store.location} has no pgvector, so search by meaning reads each user's vectors into memory: "
            "install pgvector on the server for a search in the database (docs/recall.md says how)"
        )

    def reading(self) -> AbstractAsyncContextManager[None]:
        return self._store.reading()

    @asynccontextmanager
    async def _locked(self, *, create: bool = False) -> AsyncIterator[AsyncConnection | None]:
        """A transaction holding this user's lock; None if the user has no memory (and ``create`` is off)."""
        async with self._store.connection(write=True) as conn:
            params = {"user": self.session_id}
            if create:
                await conn.execute(
                    text("INSERT INTO agent_sessions (session_id) VALUES (:user) ON CONFLICT DO NOTHING"), params
                )
            found = await conn.execute(text("SELECT 1 FROM agent_sessions WHERE session_id = :user FOR UPDATE"), params)
            yield conn if found.first() is not None else None

    @uninterrupted
    async def append(self, items: list[Item]) -> None:
        rows = [{"user": self.session_id, "data": self.codec.encode(item)} for item in items]
        params = {"user": self.session_id}

        async def write(mark: list[int]) -> None:
            async with self._locked(create=True) as conn:
                assert conn is not None
                newest = (
                    await conn.execute(
                        text(
                            "SELECT id, message_data FROM agent_messages WHERE session_id = :user ORDER BY id DESC LIMIT 1"
                        ),
                        params,
                    )
                ).first()
                self.check_key_fits(None if newest is None else newest[1])
                mark[:] = [newest[0] if newest is not None else 0]
                await self._insert(conn, items, rows)

        async def landed(after: int) -> bool:
            with contextlib.suppress(StoreError):
                found = await self._store.query(
                    "SELECT message_data FROM agent_messages WHERE session_id = :user AND id > :after ORDER BY id LIMIT :n",
                    user=self.session_id,
                    after=after,
                    n=len(rows),
                )
                return [data for (data,) in found] == [row["data"] for row in rows]
            return False

        await write_surely(write, landed)

    async def _insert(self, conn: AsyncConnection, items: list[Item], rows: list[dict[str, str]]) -> None:
        """Store the encoded ``rows`` of ``items``, each with its index entry, in the caller's transaction."""
        for item, row in zip(items, rows, strict=True):
            row_id = (
                await conn.execute(
                    text("INSERT INTO agent_messages (session_id, message_data) VALUES (:user, :data) RETURNING id"),
                    row,
                )
            ).scalar_one()
            await self._index(conn, row_id, item)
        await conn.execute(
            text("UPDATE agent_sessions SET updated_at = CURRENT_TIMESTAMP WHERE session_id = :user"),
            {"user": self.session_id},
        )

    async def _index(self, conn: AsyncConnection, row_id: int, item: Item) -> None:
        await conn.execute(
            text(
                """
                INSERT INTO memchat_search (message_id, session_id, body)
                VALUES (:id, :user, to_tsvector(CAST(:config AS regconfig), :body))
                ON CONFLICT (message_id) DO NOTHING
                """
            ),
            {"id": row_id, "user": self.session_id, "config": self._config, "body": index_body(self.codec, item)},
        )

    @property
    def _config(self) -> str:
        # Hashed words are not English: they are kept as they are, never stemmed.
        return "simple" if self.codec.encrypted else "english"

    async def index_missing(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index this user's messages that are not yet (see ``SQLiteMemory.index_missing``)."""
        missing = """
            FROM agent_messages AS m WHERE m.session_id = :user
            AND NOT EXISTS (SELECT 1 FROM memchat_search AS s WHERE s.message_id = m.id)
        """
        total = int((await self._store.query(f"SELECT COUNT(*) {missing}", user=self.session_id))[0][0])
        done = 0
        while done < total:
            async with self._store.connection(write=True) as conn:
                rows = (
                    await conn.execute(
                        text(f"SELECT m.id, m.message_data {missing} ORDER BY m.id LIMIT :n"),
                        {"user": self.session_id, "n": INDEX_BATCH},
                    )
                ).all()
                for row_id, data in rows:
                    with contextlib.suppress(UnreadableError):
                        await self._index(conn, row_id, self.codec.decode(data))
            if not rows:
                break
            done += len(rows)
            if progress is not None:
                progress(min(done, total), total)
        if done > INDEX_BATCH:
            # Fresh statistics, so the planner reads a few rows by index, not all of them (autovacuum would, later).
            async with self._store.connection(write=True) as conn:
                await conn.execute(text("ANALYZE agent_messages, memchat_search"))
        return done

    async def search(self, query: str, limit: int, before: int | None = None) -> list[Hit]:
        terms = [term for term in index_query(self.codec, query) if term.isalnum()]
        if not terms:
            return []
        rows = await self._store.query(
            """
            SELECT m.id, to_char(m.created_at, 'YYYY-MM-DD HH24:MI:SS'), ts_rank_cd(s.body, q) AS rank
            FROM memchat_search AS s JOIN agent_messages AS m ON m.id = s.message_id,
                to_tsquery(CAST(:config AS regconfig), :query) AS q
            WHERE s.session_id = :user AND s.body @@ q AND m.id < :before
            ORDER BY rank DESC, m.id DESC LIMIT :limit
            """,
            config=self._config,
            query=" | ".join(terms),
            user=self.session_id,
            before=min(before if before is not None else END, 2**31 - 1),
            limit=limit,
        )
        return [Hit(int(row_id), str(stored_at), -float(rank)) for row_id, stored_at, rank in rows]

    async def unembedded(self, model: str, limit: int) -> list[tuple[int, str]]:
        params = {"user": self.session_id, "model": model, "limit": limit}
        # As on SQLite: past the mark only; without one, two counts say how many lack a vector, nearly
        # always among as many of the newest. A user's messages are written under the lock of their
        # session row, so none below the newest seen can still be on its way.
        async with self._store.connection() as conn:
            newest = (
                await conn.execute(text("SELECT MAX(id) FROM agent_messages WHERE session_id = :user"), params)
            ).scalar_one()
            if newest is None:
                return []
            mark = (
                await conn.execute(
                    text("SELECT through_id FROM memchat_embedded WHERE session_id = :user AND model = :model"), params
                )
            ).scalar_one_or_none()
            if mark is not None:
                rows = (await conn.execute(text(UNEMBEDDED_AFTER), {**params, "mark": mark, "newest": newest})).all()
                if mark >= newest:
                    return self.texts(rows)  # the mark is where it would be written: no write for nothing
            elif (missing := (await conn.execute(text(UNEMBEDDED_COUNT), params)).scalar_one()) <= 0:
                rows = []
            else:
                rows = (await conn.execute(text(UNEMBEDDED_NEWEST), {**params, "missing": missing})).all()
                if len(rows) < min(missing, limit):
                    rows = (await conn.execute(text(UNEMBEDDED_ANY), params)).all()
        if not rows:
            async with self._store.connection(write=True) as conn:
                await conn.execute(
                    text(
                        """
                        INSERT INTO memchat_embedded (session_id, model, through_id) VALUES (:user, :model, :newest)
                        ON CONFLICT (session_id, model)
                        DO UPDATE SET through_id = GREATEST(memchat_embedded.through_id, EXCLUDED.through_id)
                        """
                    ),
                    {**params, "newest": newest},
                )
        return self.texts(rows)

    async def save_vectors(self, model: str, vectors: Sequence[tuple[int, str, bytes]]) -> None:
        if not vectors:
            return
        rows = [
            {"id": position, "user": self.session_id, "model": model, "vector": vector}
            for position, _, vector in vectors
        ]
        sql = SAVE_VECTOR.format(columns="", values="", again="")
        sizes: set[int] = set()
        if self._store.pgvector:
            # pgvector's copy written with the vector, in the same row version (an update after would write it twice).
            sql = SAVE_VECTOR.format(
                columns=", embedding",
                values=", CAST(:embedding AS halfvec)",
                again=", embedding = EXCLUDED.embedding",
            )
            for row, (_, _, vector) in zip(rows, vectors, strict=True):
                row["embedding"] = _as_text(vector) if vector else None
            sizes = {len(vector) // 4 for _, _, vector in vectors if vector}
        async with self._store.connection(write=True) as conn:
            for size in sizes:
                await self._store.index_size(conn, size)
            # A message has one vector: another model's may be replaced here, so its mark is no longer sure.
            await conn.execute(
                text("DELETE FROM memchat_embedded WHERE session_id = :user AND model != :model"),
                {"user": self.session_id, "model": model},
            )
            await conn.execute(text(sql), rows)

    async def prepare_search(self, model: str) -> None:
        if not self._store.pgvector or (self.session_id, model) in self._store.searched:
            return
        self._store.searched.add((self.session_id, model))
        sizes = await self._store.query(
            "SELECT octet_length(vector) FROM memchat_vectors WHERE session_id = :user AND model = :model "
            "AND octet_length(vector) > 0 LIMIT 1",
            user=self.session_id,
            model=model,
        )
        for (size,) in sizes:
            await self._search_for_nothing(model, int(size))

    async def nearest(self, model: str, query: bytes, limit: int, before: int | None = None) -> list[Hit] | None:
        if not self._store.pgvector:
            return None
        size = len(query) // 4
        params = {"user": self.session_id, "model": model, "before": min(before or END, 2**31 - 1)}
        async with self._store.connection() as conn:
            given = 0
            while given < CATCH_UP_PER_SEARCH and (more := await self._give_embeddings(conn, model)):
                given += more
            # A history only grows (but for /clear): once past the exact search, counted no more (5 to 10 ms
            # at a million, a twentieth of the rows read for nothing).
            key = (self.session_id, model)
            if key not in self._store.long_histories:
                few = (await conn.execute(text(COUNT_UP_TO), {**params, "most": EXACT_UP_TO + 1})).scalar_one()
                if few > EXACT_UP_TO:
                    self._store.long_histories.add(key)
            wanted = limit
            sql = NEAREST_EXACT
            if key in self._store.long_histories:
                # HNSW, filtered to this user as it walks (an iterative scan goes on until enough are theirs).
                wanted = MOST_CANDIDATES
                await conn.execute(text(INDEX_SETTINGS), {"walk": str(wanted), "scan": str(SCAN_MOST)})
                sql = NEAREST_BY_INDEX.format(size=size)
            asked = {**params, "query": _as_text(query), "wanted": wanted, "limit": limit}
            rows = (await conn.execute(text(sql), asked)).all()
        # Ranked as the other stores rank: minus the cosine, lower is nearer.
        return [Hit(int(at), str(day), float(distance) - 1.0) for at, day, distance in rows]

    async def index_vectors(self, model: str, progress: Callable[[int, int], None] | None = None) -> int:
        if not self._store.pgvector:
            return 0
        ((total,),) = await self._store.query(
            """
            SELECT COUNT(*) FROM memchat_vectors
            WHERE session_id = :user AND model = :model AND embedding IS NULL AND octet_length(vector) > 0
            """,
            user=self.session_id,
            model=model,
        )
        done = 0
        while True:
            async with self._store.connection(write=True) as conn:
                added = await self._give_embeddings(conn, model)
            if not added:
                return done
            done += added
            if progress is not None:
                progress(min(done, total), max(total, done))

    async def _give_embeddings(self, conn: AsyncConnection, model: str) -> int:
        """Give pgvector's copy to some of this user's vectors that lack it (new ones, or from before pgvector).

        A few hundred a call, so no search or save waits long on an older history; ``memchat index`` does the rest.
        """
        rows = (await conn.execute(text(WITHOUT_EMBEDDING), {"user": self.session_id, "model": model})).all()
        if rows:
            await conn.execute(
                text("UPDATE memchat_vectors SET embedding = CAST(:embedding AS halfvec) WHERE message_id = :id"),
                [{"id": row_id, "embedding": _as_text(bytes(vector))} for row_id, vector in rows],
            )
            await self._store.index_size(conn, len(rows[0][1]) // 4)
        return len(rows)

    async def around(self, positions: Sequence[int]) -> list[tuple[int, str, Item]]:
        if not positions:
            return []
        rows = await self._store.query(
            """
            WITH hit(id) AS (SELECT unnest(CAST(:ids AS BIGINT[])))
            SELECT id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), message_data FROM agent_messages
            WHERE session_id = :user AND id IN (
                SELECT id FROM hit
                UNION SELECT (SELECT max(id) FROM agent_messages WHERE session_id = :user AND id < hit.id) FROM hit
                UNION SELECT (SELECT min(id) FROM agent_messages WHERE session_id = :user AND id > hit.id) FROM hit
            ) ORDER BY id
            """,
            user=self.session_id,
            ids=[int(position) for position in positions],
        )
        return self.decoded(rows)

    async def days(self, positions: Sequence[int]) -> dict[int, str]:
        if not positions:
            return {}
        rows = await self._store.query(
            """
            SELECT id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') FROM agent_messages
            WHERE session_id = :user AND id = ANY(CAST(:ids AS BIGINT[]))
            """,
            user=self.session_id,
            ids=[int(position) for position in positions],
        )
        return {int(row_id): str(stored_at) for row_id, stored_at in rows}

    async def vectors(self, model: str, after: int = 0, most: int | None = None) -> Vectors:
        params = {"user": self.session_id, "model": model, "after": after, "most": most}
        # One transaction, repeatable read: the count and the rows from one snapshot.
        async with self._store.connection() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            total, newest = (
                await conn.execute(
                    text("SELECT COUNT(*), MAX(seq) FROM memchat_vectors WHERE session_id = :user AND model = :model"),
                    params,
                )
            ).one()
            rows = (
                await conn.execute(
                    text(
                        """
                        SELECT v.message_id, to_char(m.created_at, 'YYYY-MM-DD HH24:MI:SS'), v.vector
                        FROM memchat_vectors AS v JOIN agent_messages AS m ON m.id = v.message_id
                        WHERE v.session_id = :user AND v.model = :model AND v.seq > :after
                        ORDER BY v.message_id DESC LIMIT :most
                        """
                    ),
                    params,
                )
            ).all()
        return Vectors([(int(at), str(day), bytes(vector)) for at, day, vector in rows], int(newest or 0), int(total))

    @uninterrupted
    async def pop(self) -> Item | None:
        async with self._locked() as conn:
            if conn is None:
                return None
            while True:
                row = (
                    await conn.execute(
                        text(
                            """
                            DELETE FROM agent_messages WHERE id = (
                                SELECT MAX(id) FROM agent_messages WHERE session_id = :user
                            ) RETURNING message_data
                            """
                        ),
                        {"user": self.session_id},
                    )
                ).first()
                if row is None:
                    return None
                # Decoded inside the transaction: an item that cannot be decrypted (a wrong key) rolls the delete back.
                with contextlib.suppress(UnreadableError):
                    return self.codec.decode(row[0])

    @uninterrupted
    async def clear_session(self) -> None:
        params = {"user": self.session_id}
        self._store.long_histories = {key for key in self._store.long_histories if key[0] != self.session_id}
        async with self._store.connection(write=True) as conn:
            await conn.execute(text("SELECT 1 FROM agent_sessions WHERE session_id = :user FOR UPDATE"), params)
            # Standing instructions may exist before any message, so they go whether or not there is a memory.
            for table in (
                "memchat_instructions",
                "memchat_saved",
                "memchat_embedded",
                "memchat_summaries",
                "agent_messages",
                "agent_sessions",
            ):
                await conn.execute(text(f"DELETE FROM {table} WHERE session_id = :user"), params)

    @uninterrupted
    async def undo(self) -> int:
        async with self._locked() as conn:
            if conn is None:
                return 0
            start = await last_turn_start(self.rows_backward(0, conn))
            if start is None:
                return 0
            result = await conn.execute(
                text("DELETE FROM agent_messages WHERE session_id = :user AND id >= :start"),
                {"user": self.session_id, "start": start},
            )
        return int(result.rowcount)

    @uninterrupted
    async def replace_turn(self, start: int, items: list[Item]) -> None:
        rows = [{"user": self.session_id, "data": self.codec.encode(item)} for item in items]
        async with self._locked() as conn:
            self.check_still_last(start, None if conn is None else await last_turn_start(self.rows_backward(0, conn)))
            assert conn is not None
            params = {"user": self.session_id, "start": start}
            await conn.execute(text("DELETE FROM agent_messages WHERE session_id = :user AND id >= :start"), params)
            await self._insert(conn, items, rows)

    @uninterrupted
    async def forget(self, turns: list[Turn]) -> bool:
        async with self._locked() as conn:
            if conn is None:
                raise changed_meanwhile()
            for turn in turns:
                span = {"user": self.session_id, "start": turn.start, "end": turn.end}
                rows = (
                    await conn.execute(
                        text(
                            "SELECT id, message_data FROM agent_messages "
                            "WHERE session_id = :user AND id BETWEEN :start AND :end ORDER BY id"
                        ),
                        span,
                    )
                ).all()
                self.check_unchanged(turn, (data for _, data in rows))
            params = {"user": self.session_id}
            summary = (
                await conn.execute(text("SELECT through_id FROM memchat_summaries WHERE session_id = :user"), params)
            ).first()
            for turn in turns:
                span = {"user": self.session_id, "start": turn.start, "end": turn.end}
                await conn.execute(
                    text("DELETE FROM agent_messages WHERE session_id = :user AND id BETWEEN :start AND :end"), span
                )
                await conn.execute(text(FORGET_NEXT_VECTOR), span)
            # The vectors of the messages after them are made again, beside what now comes before them.
            await conn.execute(text("DELETE FROM memchat_embedded WHERE session_id = :user"), params)
            covered = self.covers(None if summary is None else summary[0], turns)
            if covered:
                await conn.execute(text("DELETE FROM memchat_summaries WHERE session_id = :user"), params)
            return covered

    async def instructions(self) -> str | None:
        rows = await self._store.query(
            "SELECT instructions FROM memchat_instructions WHERE session_id = :user", user=self.session_id
        )
        return self.codec.decode_text(rows[0][0]) if rows else None

    @uninterrupted
    async def set_instructions(self, text_: str | None) -> None:
        params = {"user": self.session_id, "text": None if text_ is None else self.codec.encode_text(text_)}
        async with self._store.connection(write=True) as conn:
            if text_ is None:
                await conn.execute(text("DELETE FROM memchat_instructions WHERE session_id = :user"), params)
            else:
                await conn.execute(
                    text(
                        """
                        INSERT INTO memchat_instructions (session_id, instructions) VALUES (:user, :text)
                        ON CONFLICT (session_id) DO UPDATE
                        SET instructions = EXCLUDED.instructions, updated_at = CURRENT_TIMESTAMP
                        """
                    ),
                    params,
                )

    async def saved_memories(self) -> tuple[str, int]:
        rows = await self._store.query(
            "SELECT body, version FROM memchat_saved WHERE session_id = :user", user=self.session_id
        )
        return (self.codec.decode_text(rows[0][0]), int(rows[0][1])) if rows else ("", 0)

    @uninterrupted
    async def save_memories(self, text_: str, version: int) -> bool:
        params = {"user": self.session_id, "body": self.codec.encode_text(text_), "version": version}
        async with self._store.connection(write=True) as conn:
            if version == 0:
                statement = """
                    INSERT INTO memchat_saved (session_id, body, version) VALUES (:user, :body, 1)
                    ON CONFLICT (session_id) DO NOTHING
                    """
            else:
                statement = """
                    UPDATE memchat_saved SET body = :body, version = version + 1, updated_at = CURRENT_TIMESTAMP
                    WHERE session_id = :user AND version = :version
                    """
            written = await conn.execute(text(statement), params)
            return bool(written.rowcount == 1)

    async def count(self) -> int:
        rows = await self._store.query(
            "SELECT COUNT(*) FROM agent_messages WHERE session_id = :user", user=self.session_id
        )
        return int(rows[0][0])

    async def raw_page(
        self, after: int, before: int, *, newest_first: bool, conn: Any = None, limit: int = PAGE_ROWS
    ) -> list[RawRow]:
        order = "DESC" if newest_first else "ASC"
        sql = f"""
            SELECT id, message_data FROM agent_messages
            WHERE session_id = :user AND id > :after AND id < CAST(:before AS BIGINT)
            ORDER BY id {order} LIMIT {int(limit)}
        """
        params = {"user": self.session_id, "after": after, "before": before}
        if conn is None:
            rows = await self._store.query(sql, **params)
        else:
            rows = list((await conn.execute(text(sql), params)).all())
        return [(row_id, data) for row_id, data in rows]

    async def summary(self) -> Summary | None:
        rows = await self._store.query(READ_SUMMARY, user=self.session_id)
        return Summary(self.codec.decode_text(rows[0][0]), rows[0][1]) if rows else None

    @uninterrupted
    async def save_summary(self, summary: Summary) -> None:
        async with self._locked() as conn:
            if conn is None:
                return
            await conn.execute(
                text(SAVE_SUMMARY),
                {"user": self.session_id, "summary": self.codec.encode_text(summary.text), "through": summary.through},
            )


async def _with_pgvector(conn: AsyncConnection) -> bool:
    """Whether vectors can be searched in the database: pgvector is there, or could be added, and has its column."""
    installed = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"
    if not (await conn.execute(text(installed))).scalar_one():
        available = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
        if not (await conn.execute(text(available))).scalar_one():
            return False
        try:
            async with conn.begin_nested():
                await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError:
            return False  # not allowed to: a superuser can (see docs/recall.md)
    # Beside the float32 vector (what a store without pgvector, or a copy, reads), half-precision for the
    # search: half the size.
    await conn.execute(text("ALTER TABLE memchat_vectors ADD COLUMN IF NOT EXISTS embedding halfvec"))
    # Kept in the row, not moved out to TOAST (3 KB for 1,536 numbers), so a scan reads it with the row.
    await conn.execute(text("ALTER TABLE memchat_vectors ALTER COLUMN embedding SET STORAGE PLAIN"))
    await conn.execute(
        text(
            """
            CREATE INDEX IF NOT EXISTS idx_memchat_vectors_unindexed ON memchat_vectors (session_id, model)
            WHERE embedding IS NULL AND octet_length(vector) > 0
            """
        )
    )
    return True


def _bits_index(name: str, size: int, *, concurrently: bool = False) -> str:
    """The statement that makes an index of the sign bits of vectors of ``size`` numbers, in today's shape."""
    return f"""
        CREATE INDEX {"CONCURRENTLY " if concurrently else ""}IF NOT EXISTS {name} ON memchat_vectors
        USING hnsw ((binary_quantize(embedding)::bit({size})) bit_hamming_ops)
        WITH (m = {GRAPH_LINKS}, ef_construction = {GRAPH_BUILD})
        WHERE vector_dims(embedding) = {size}
    """


def _as_text(vector: bytes) -> str:
    """A float32 vector as pgvector reads it: '[0.1,0.2,...]'."""
    import numpy as np

    return "[" + ",".join(map(repr, np.frombuffer(vector, dtype=np.float32).tolist())) + "]"


async def _migrate(conn: AsyncConnection) -> None:
    """Apply the migrations this database lacks, in order, in the caller's transaction (which holds the lock)."""
    await conn.execute(
        text(
            """
            CREATE TABLE IF NOT EXISTS memchat_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                applied_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """
        )
    )
    have = (await conn.execute(text("SELECT COALESCE(MAX(version), 0) FROM memchat_migrations"))).scalar_one()
    for version in range(int(have) + 1, len(MIGRATIONS) + 1):
        name, statements = MIGRATIONS[version - 1]
        for statement in statements:
            await conn.execute(text(statement))
        await conn.execute(
            text("INSERT INTO memchat_migrations (version, name) VALUES (:version, :name)"),
            {"version": version, "name": name},
        )


def _checked_url(url: str) -> URL:
    """The URL parsed, or one line saying what is wrong with it (a port that is not a number...)."""
    try:
        parsed = make_url(url)
        _ = parsed.port
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            f"--db {hide_password(url)} is not a usable PostgreSQL URL ({hide_password(str(exc))}): "
            "write it as postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    return parsed
