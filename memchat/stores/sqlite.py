"""Memories in one SQLite file, in the Agents SDK's ``SQLiteSession`` schema.

The tables are the SDK's own (``agent_sessions``, ``agent_messages``), so a file
written by a plain ``SQLiteSession("user1", "conversion.db")`` loop is read as
is, and the other way round. This class exists instead of ``SQLiteSession``
because memchat needs what that class does not give: a file created private
(0600), a clear refusal of a path that is not a usable database, whole-turn
reads and undo, a list of users, and no import of the SDK, which
takes seconds to load, on the paths that only touch the database.

Every call runs on one worker thread that owns the connection: the event loop
(and with it every other user of ``memchat web``) never waits on a lock or a
slow disk, and a memory can be used from any thread or event loop, as the SDK
allows. A write that has started runs to its end even if its caller is
cancelled, so a turn is stored whole or not at all.

Before each call the path is checked to still be the file that was opened: a
file deleted or replaced under a running memchat is an error, not a place
where turns vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from memchat.errors import StoreError, StoreLostError
from memchat.items import Item, is_user_message
from memchat.stores import graph, vector_index
from memchat.stores.base import END, PAGE_ROWS, MemoryBase, RawRow, new_mark, uninterrupted
from memchat.stores.codec import Codecs, UnreadableError
from memchat.stores.migrations.sqlite import MIGRATIONS
from memchat.stores.protocol import Summary, Turn, UserStats, Vectors
from memchat.stores.search import Hit, fts_match, index_body, index_query
from memchat.web.accounts import LoginFailures

# Messages indexed per transaction when catching up on an older file.
INDEX_BATCH = 2000

# Vectors given their bits per transaction when catching up (about 6 MB of 1,536-number vectors).
CODE_BATCH = 1000

UNEMBEDDED_COUNT = """
SELECT (SELECT COUNT(*) FROM agent_messages WHERE session_id = ?1)
    - (SELECT COUNT(*) FROM memchat_vectors WHERE session_id = ?1 AND model = ?2)
"""
UNEMBEDDED_NEWEST = """
SELECT id, message_data FROM (
    SELECT id, message_data FROM agent_messages WHERE session_id = ?1 ORDER BY id DESC LIMIT ?4
) AS m WHERE NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = ?2)
ORDER BY id DESC LIMIT ?3
"""
UNEMBEDDED_ANY = """
SELECT id, message_data FROM agent_messages AS m WHERE session_id = ?1
AND NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = ?2)
ORDER BY id DESC LIMIT ?3
"""
UNEMBEDDED_AFTER = """
SELECT id, message_data FROM agent_messages AS m WHERE session_id = ?1 AND id > ?3 AND id <= ?4
AND NOT EXISTS (SELECT 1 FROM memchat_vectors AS v WHERE v.message_id = m.id AND v.model = ?2)
ORDER BY id DESC LIMIT ?5
"""
# A message's vector leans to the message before it (see ``semantic.in_context``): the one after a
# forgotten exchange loses its vector, and gets one again from what now precedes it.
FORGET_NEXT_VECTOR = """
DELETE FROM memchat_vectors WHERE session_id = ?1
AND message_id = (SELECT MIN(id) FROM agent_messages WHERE session_id = ?1 AND id > ?2)
"""
GONE_CODES = "SELECT seq FROM memchat_codes_gone WHERE session_id = ? AND model = ?"
USER_CODES = "SELECT block, size, entries FROM memchat_codes WHERE session_id = ? AND model = ?"
GRAPH = "SELECT file, through_seq, from_block FROM memchat_graphs WHERE session_id = ? AND model = ? AND size = ?"
UPDATE_CODES = "UPDATE memchat_codes SET entries = ? WHERE session_id = ? AND model = ? AND block = ?"

# How long a write waits for another process holding the lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")


# A summary counts only while the message it ends at is still stored: whoever
# removed that message (memchat, or the SDK's own clear_session or pop_item on
# the same file) took the summary's anchor with it.
READ_SUMMARY = """
SELECT s.summary, s.through_id FROM memchat_summaries AS s
WHERE s.session_id = ?1
AND EXISTS (SELECT 1 FROM agent_messages WHERE id = s.through_id AND session_id = ?1)
"""

# Another process may have cleared this memory, or saved a summary reaching
# further, while this one was writing its own: then the summary is not saved.
SAVE_SUMMARY = """
INSERT INTO memchat_summaries (session_id, summary, through_id)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM agent_messages WHERE id = ?3 AND session_id = ?1)
ON CONFLICT (session_id) DO UPDATE
SET summary = excluded.summary, through_id = excluded.through_id, updated_at = CURRENT_TIMESTAMP
WHERE excluded.through_id > memchat_summaries.through_id
OR NOT EXISTS (SELECT 1 FROM agent_messages WHERE id = memchat_summaries.through_id AND session_id = ?1)
"""


class SQLiteStore:
    """Every user's memory in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True, encryption_key: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.codecs = Codecs(encryption_key)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path} does not exist: check the path")
        self.created = not self.path.exists()
        self.location = str(self.path.resolve())
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memchat-sqlite")
        try:
            self._conn, self._identity = self._worker.submit(_open, self.path).result()
        except BaseException:
            self._worker.shutdown(wait=False)
            raise
        self._closed = threading.Event()
        self.graphs = graph.Graphs(self.path)
        # (user, model) searched once by this process (see ``SQLiteMemory.prepare_search``).
        self.searched: set[tuple[str, str]] = set()

    def memory(self, user: str) -> SQLiteMemory:
        return SQLiteMemory(self, user)

    async def rebuild_indexes(self, progress: Callable[[int, int], None] | None = None) -> int:
        return 0  # its indexes are per user, made by ``index_vectors``

    async def users(self) -> list[UserStats]:
        rows = await self.query(
            """
            SELECT session_id, COUNT(*), MAX(created_at) FROM agent_messages
            GROUP BY session_id ORDER BY MAX(id) DESC
            """
        )
        return [UserStats(user, count, last) for user, count, last in rows]

    async def password_hash(self, user: str) -> str | None:
        rows = await self.query("SELECT hash FROM memchat_passwords WHERE user_id = ?", user)
        return str(rows[0][0]) if rows else None

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        await self.write(
            lambda conn: conn.execute(
                """
                INSERT INTO memchat_passwords (user_id, hash, sessions) VALUES (?1, ?2, ?3)
                ON CONFLICT (user_id) DO UPDATE
                SET hash = excluded.hash, sessions = excluded.sessions, updated_at = CURRENT_TIMESTAMP
                """,
                (user, password_hash, new_mark()),
            )
        )

    async def web_sessions(self, user: str) -> str | None:
        rows = await self.query("SELECT sessions FROM memchat_passwords WHERE user_id = ?", user)
        return str(rows[0][0]) if rows else None

    async def end_web_sessions(self, user: str) -> None:
        await self.write(
            lambda conn: conn.execute("UPDATE memchat_passwords SET sessions = ? WHERE user_id = ?", (new_mark(), user))
        )

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        return await self.run(lambda conn: _login_failures(conn, keys, since))

    async def count_login_failure(self, keys: Sequence[str], at: float, since: float) -> dict[str, LoginFailures]:
        def count(conn: sqlite3.Connection) -> dict[str, LoginFailures]:
            conn.execute("DELETE FROM memchat_login_failures WHERE last < ?", (since,))
            conn.executemany(
                """
                INSERT INTO memchat_login_failures (key, failures, last) VALUES (?, 1, ?)
                ON CONFLICT (key) DO UPDATE SET failures = failures + 1, last = excluded.last
                """,
                [(key, at) for key in keys],
            )
            return _login_failures(conn, keys, since)

        return await self.write(count)

    async def forget_login_failures(self, keys: Sequence[str]) -> None:
        await self.write(
            lambda conn: conn.executemany("DELETE FROM memchat_login_failures WHERE key = ?", [(key,) for key in keys])
        )

    async def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            await asyncio.get_running_loop().run_in_executor(self._worker, self._conn.close)
            self._worker.shutdown(wait=True)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the store's thread; SQLite's errors become one clear line."""
        if self._closed.is_set():
            raise StoreError(f"{self.path} was closed: this is a bug in memchat, please report it")
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._call, work)

    @uninterrupted
    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in a transaction that takes the write lock up front, so it never fails half-way on it."""

        return await self.run(lambda conn: _transaction(conn, work))

    async def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._check_still_there()
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            self._check_still_there()
            raise explain(self.path, exc) from None

    def _check_still_there(self) -> None:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise StoreLostError(
                f"{self.path} was deleted while memchat was running, so nothing more can be kept in it: "
                "restore the file, or start memchat again to begin a new memory there"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot reach {self.path} ({exc.strerror}): check the disk and the folder") from None
        if (now.st_dev, now.st_ino) != self._identity:
            raise StoreLostError(
                f"{self.path} was replaced by another file while memchat was running: "
                "start memchat again to use the new file"
            )


class SQLiteMemory(MemoryBase):
    """One user's conversation in a ``SQLiteStore``; an SDK-compatible Session."""

    def __init__(self, store: SQLiteStore, user: str) -> None:
        super().__init__(user, store.codecs(user))
        self._store = store
        # Set when a search scanned far more vectors than a graph leaves outside it.
        self._slow_search = False

    @property
    def vector_search_note(self) -> str | None:
        if not self._slow_search:
            return None
        return (
            f"{self.session_id}'s search by meaning reads every vector written since its last graph was made: "
            f"memchat index --user {self.session_id} makes it quick again (see docs/recall.md)"
        )

    async def append(self, items: list[Item]) -> None:
        def add(conn: sqlite3.Connection) -> None:
            newest = conn.execute(
                "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id DESC LIMIT 1",
                (self.session_id,),
            ).fetchone()
            self.check_key_fits(None if newest is None else newest[0])
            conn.execute("INSERT OR IGNORE INTO agent_sessions (session_id) VALUES (?)", (self.session_id,))
            self._insert(conn, items)

        await self._store.write(add)

    def _insert(self, conn: sqlite3.Connection, items: list[Item]) -> None:
        """Store ``items`` after this user's newest, each with its index entry, in the caller's transaction."""
        params = (self.session_id,)
        newest = conn.execute("SELECT MAX(id) FROM agent_messages WHERE session_id = ?", params).fetchone()[0]
        mark = conn.execute("SELECT through_id FROM memchat_indexed WHERE session_id = ?", params).fetchone()
        # Everything before is in the index (memchat wrote it all, or caught up): then so is all up to this turn.
        caught_up = newest is None or (mark is not None and mark[0] >= newest)
        last = 0
        for item in items:
            row_id = conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
                (self.session_id, self.codec.encode(item)),
            ).lastrowid
            assert row_id is not None  # an INSERT's
            self._index(conn, row_id, item)
            last = row_id
        if caught_up:
            self._indexed_through(conn, last)
        conn.execute("UPDATE agent_sessions SET updated_at = CURRENT_TIMESTAMP WHERE session_id = ?", params)

    def _index(self, conn: sqlite3.Connection, row_id: int, item: Item) -> None:
        conn.execute(
            "INSERT INTO memchat_search (rowid, session_id, body) VALUES (?, ?, ?)",
            (row_id, self.session_id, index_body(self.codec, item)),
        )

    def _indexed_through(self, conn: sqlite3.Connection, row_id: int) -> None:
        """Record that every message of this user up to ``row_id`` is in the index."""
        conn.execute(
            """
            INSERT INTO memchat_indexed (session_id, through_id) VALUES (?1, ?2)
            ON CONFLICT (session_id) DO UPDATE SET through_id = excluded.through_id
            """,
            (self.session_id, row_id),
        )

    def _unindex_from(self, conn: sqlite3.Connection, start: int) -> None:
        conn.execute("DELETE FROM memchat_search WHERE rowid >= ? AND session_id = ?", (start, self.session_id))

    async def index_missing(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index this user's messages that are not yet (written by an older memchat or another program).

        A batch at a time, each in its own transaction: an interrupted run keeps what it did
        and the next one goes on from there. ``progress(done, total)`` is told after each batch.
        """
        # This user's messages after the last one known to be indexed.
        unindexed = """
            FROM agent_messages WHERE session_id = ?1
            AND id > COALESCE((SELECT through_id FROM memchat_indexed WHERE session_id = ?1), 0)
        """

        def remaining(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT COUNT(*) {unindexed}", (self.session_id,)).fetchone()[0])

        def batch(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT id, message_data {unindexed} ORDER BY id LIMIT ?2", (self.session_id, INDEX_BATCH)
            ).fetchall()
            for row_id, data in rows:
                # memchat's own turns written while the index was behind are in it already.
                if conn.execute("SELECT 1 FROM memchat_search WHERE rowid = ?", (row_id,)).fetchone():
                    continue
                with contextlib.suppress(UnreadableError):
                    self._index(conn, row_id, self.codec.decode(data))
            if rows:
                self._indexed_through(conn, rows[-1][0])
            return len(rows)

        total = await self._store.run(remaining)
        done = 0
        while done < total and (added := await self._store.write(batch)):
            done += added
            if progress is not None:
                progress(done, total)
        return done

    async def search(self, query: str, limit: int, before: int | None = None) -> list[Hit]:
        terms = index_query(self.codec, query)
        if not terms:
            return []
        rows = await self._store.query(
            """
            SELECT m.id, m.created_at, bm25(memchat_search) AS rank
            FROM memchat_search JOIN agent_messages AS m ON m.id = memchat_search.rowid
            WHERE memchat_search MATCH ?1 AND memchat_search.session_id = ?2 AND m.session_id = ?2 AND m.id < ?3
            ORDER BY rank LIMIT ?4
            """,
            fts_match(terms),
            self.session_id,
            END if before is None else before,
            limit,
        )
        return [Hit(int(row_id), str(stored_at), float(rank)) for row_id, stored_at, rank in rows]

    async def pop(self) -> Item | None:
        def pop(conn: sqlite3.Connection) -> Item | None:
            for row_id, data in self._newest_first(conn):
                try:
                    # Decoded before the delete: an item that cannot be decrypted (a wrong key) is never removed.
                    item = self.codec.decode(data)
                except UnreadableError:
                    item = None
                conn.execute("DELETE FROM agent_messages WHERE id = ?", (row_id,))
                conn.execute("DELETE FROM memchat_search WHERE rowid = ?", (row_id,))
                if item is not None:
                    return item
            return None

        return await self._store.write(pop)

    async def clear_session(self) -> None:
        def clear(conn: sqlite3.Connection) -> list[str]:
            conn.execute("DELETE FROM agent_messages WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM agent_sessions WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_summaries WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_instructions WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_saved WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_search WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_indexed WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_embedded WHERE session_id = ?", (self.session_id,))
            for table in ("memchat_codes", "memchat_coded", "memchat_codes_gone"):
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (self.session_id,))
            # Read, then deleted: RETURNING needs SQLite 3.35, newer than some systems' own.
            graphs = conn.execute("SELECT file FROM memchat_graphs WHERE session_id = ?", (self.session_id,)).fetchall()
            conn.execute("DELETE FROM memchat_graphs WHERE session_id = ?", (self.session_id,))
            return [str(name) for (name,) in graphs]

        for name in await self._store.write(clear):
            self._store.graphs.remove(name)

    async def unembedded(self, model: str, limit: int) -> list[tuple[int, str]]:
        params = (self.session_id, model)

        def find(conn: sqlite3.Connection) -> tuple[list[RawRow], int | None]:
            """What lacks a vector, and the newest message if the mark may move up to it."""
            # Up to the newest message now: one written meanwhile is after it, and not vouched for below.
            (newest,) = conn.execute("SELECT MAX(id) FROM agent_messages WHERE session_id = ?", params[:1]).fetchone()
            if newest is None:
                return [], None
            mark = conn.execute("SELECT through_id FROM memchat_embedded WHERE session_id = ? AND model = ?", params)
            known = mark.fetchone()
            if known is not None:
                # Only what came after the mark is looked at: counting a million messages took 1.2 s when the
                # file was not in the system's cache, and a run's first turn waited behind it.
                found = conn.execute(UNEMBEDDED_AFTER, (*params, known[0], newest, limit)).fetchall()
                # A mark already at the newest is not written again: that would take the write lock each start.
                return found, None if known[0] >= newest else newest
            # No mark yet (a file from before it, or a history never fully embedded): two counts tell how
            # many lack a vector, and they are nearly always among as many of the newest messages.
            (missing,) = conn.execute(UNEMBEDDED_COUNT, params).fetchone()
            if missing <= 0:
                return [], newest
            found = conn.execute(UNEMBEDDED_NEWEST, (*params, limit, missing)).fetchall()
            if len(found) < min(missing, limit):
                found = conn.execute(UNEMBEDDED_ANY, (*params, limit)).fetchall()
            return found, newest

        rows, newest = await self._store.run(find)
        if not rows and newest is not None:
            await self._store.write(
                lambda conn: conn.execute(
                    """
                    INSERT INTO memchat_embedded (session_id, model, through_id) VALUES (?1, ?2, ?3)
                    ON CONFLICT (session_id, model) DO UPDATE SET through_id = MAX(through_id, excluded.through_id)
                    """,
                    (*params, newest),
                )
            )
        return self.texts(rows)

    async def save_vectors(self, model: str, vectors: Sequence[tuple[int, str, bytes]]) -> None:
        # Message ids are never reused: a message still there is the one the vector was made from.
        def save(conn: sqlite3.Connection) -> None:
            # Deleted first, not replaced: a replaced row fires no trigger, so its bits would stay.
            conn.executemany(
                "DELETE FROM memchat_vectors WHERE message_id = ? AND session_id = ?",
                [(position, self.session_id) for position, _, _ in vectors],
            )
            # A message has one vector: any other model's may have been replaced here, so its mark is no
            # longer sure (see ``unembedded``).
            conn.execute("DELETE FROM memchat_embedded WHERE session_id = ? AND model != ?", (self.session_id, model))
            conn.executemany(
                """
                INSERT INTO memchat_vectors (message_id, session_id, model, vector)
                SELECT id, session_id, ?2, ?3 FROM agent_messages WHERE id = ?1 AND session_id = ?4
                """,
                [(position, model, vector, self.session_id) for position, _, vector in vectors],
            )
            self._code(conn, model, CODE_BATCH)

        await self._store.write(save)

    async def prepare_search(self, model: str) -> None:
        # Opening a graph walks its whole file: 110 ms at a million entries when the file is in the
        # system's cache, 0.6 to 0.9 s when it is not, after about 150 ms importing numpy and usearch in a
        # new process. In a thread of its own, so the store's reads (a turn's history, its search by
        # words) go on meanwhile.
        names = await self._store.query(
            "SELECT file FROM memchat_graphs WHERE session_id = ? AND model = ?", self.session_id, model
        )
        for (name,) in names:
            await asyncio.to_thread(self._store.graphs.readable, str(name))
        if (self.session_id, model) not in self._store.searched:
            self._store.searched.add((self.session_id, model))
            sizes = await self._store.query(
                "SELECT DISTINCT size FROM memchat_codes WHERE session_id = ? AND model = ?", self.session_id, model
            )
            for (size,) in sizes:
                await self._search_for_nothing(model, int(size))

    async def nearest(self, model: str, query: bytes, limit: int, before: int | None = None) -> list[Hit]:
        def search(conn: sqlite3.Connection) -> list[Hit]:
            # Bits for vectors written without them (an older memchat, a run cut short), and none for deleted ones.
            while self._uncoded(conn, model) and _transaction(conn, lambda conn: self._code(conn, model, CODE_BATCH)):
                pass
            wanted = vector_index.candidates(limit, len(query))
            known = conn.execute(GRAPH, (self.session_id, model, len(query))).fetchone()
            found = None if known is None else self._store.graphs.closest(known[0], vector_index.query_bits(query))
            # Without a graph (or with one that cannot be read), every block is scanned.
            after, from_block = (0, 0) if found is None else (int(known[1]), int(known[2]))
            scanned = 0

            def blocks() -> Iterator[bytes]:
                # One at a time: a search holds one block, however long the history.
                nonlocal scanned
                for (data,) in conn.execute(
                    """
                    SELECT entries FROM memchat_codes WHERE session_id = ? AND model = ? AND size = ? AND block >= ?
                    """,
                    (self.session_id, model, len(query), from_block),
                ):
                    scanned += vector_index.count(data, len(query))
                    yield data

            seqs, _ = vector_index.closest(blocks(), query, wanted, before, after, found)
            if scanned > 2 * graph.TAIL_MOST:
                self._slow_search = True
            rows = conn.execute(
                "SELECT message_id, vector FROM memchat_vectors WHERE seq IN (SELECT value FROM json_each(?)) "
                "AND message_id < ?",
                (json.dumps(seqs.tolist()), END if before is None else before),
            ).fetchall()
            hits = vector_index.ranked([(int(at), "", bytes(vector)) for at, vector in rows], query, limit)
            # Dates for the hits alone: on a cold disk each candidate's message is one more read (a vector
            # outlives no message, its trigger sees to that).
            days = dict(
                conn.execute(
                    "SELECT id, created_at FROM agent_messages WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps([hit.position for hit in hits]),),
                ).fetchall()
            )
            return [Hit(hit.position, str(days[hit.position]), hit.rank) for hit in hits if hit.position in days]

        return await self._store.run(search)

    async def index_vectors(self, model: str, progress: Callable[[int, int], None] | None = None) -> int:
        (total,) = (
            await self._store.query(
                """
                SELECT COUNT(*) FROM memchat_vectors WHERE session_id = ?1 AND model = ?2
                AND seq > COALESCE((SELECT through_seq FROM memchat_coded WHERE session_id = ?1 AND model = ?2), 0)
                """,
                self.session_id,
                model,
            )
        )[0]
        done = 0
        while added := await self._store.write(lambda conn: self._code(conn, model, CODE_BATCH)):
            done += added
            if progress is not None:
                progress(min(done, total), max(total, done))
        sizes = await self._store.query(
            "SELECT DISTINCT size FROM memchat_codes WHERE session_id = ? AND model = ?", self.session_id, model
        )
        for (size,) in sizes:
            await self._store.run(functools.partial(self._extend_graph, model=model, size=int(size), progress=progress))
        return done

    def _extend_graph(
        self, conn: sqlite3.Connection, model: str, size: int, progress: Callable[[int, int], None] | None
    ) -> None:
        """Put the user's vectors of this size that are outside their graph into it, once there are enough.

        Run outside any transaction, as memchat index: the blocks are read as they are (a million
        entries take minutes), and the new graph replaces the old only if no other process replaced it
        meanwhile. A graph that cannot be read is made again from all the vectors.
        """
        user = (self.session_id, model, size)
        known = conn.execute(GRAPH, user).fetchone()
        old, after, from_block = (None, 0, 0) if known is None else (str(known[0]), int(known[1]), int(known[2]))
        if old is not None and not self._store.graphs.readable(old):
            old, after, from_block = None, 0, 0
        if old is not None:
            (kept,) = conn.execute(
                "SELECT COUNT(*) FROM memchat_vectors WHERE session_id = ? AND model = ? AND seq <= ? "
                "AND length(vector) = ?",
                (self.session_id, model, after, size),
            ).fetchone()
            # Mostly vectors deleted since (a history embedded again, much forgotten): extended, the graph
            # would walk the dead to reach the living; made again from what is there, it holds only these.
            if 2 * kept < self._store.graphs.size(old):
                old, after, from_block = None, 0, 0
        (outside,) = conn.execute(
            "SELECT COUNT(*) FROM memchat_vectors WHERE session_id = ? AND model = ? AND seq > ? AND length(vector) = ?",
            (self.session_id, model, after, size),
        ).fetchone()
        if outside < graph.TAIL_MOST:
            return
        (newest, last_block) = conn.execute(
            """
            SELECT (SELECT through_seq FROM memchat_coded WHERE session_id = ?1 AND model = ?2),
                (SELECT MAX(block) FROM memchat_codes WHERE session_id = ?1 AND model = ?2 AND size = ?3)
            """,
            user,
        ).fetchone()
        if newest is None or last_block is None:
            return
        rows = conn.execute(
            """
            SELECT entries FROM memchat_codes WHERE session_id = ? AND model = ? AND size = ? AND block >= ?
            ORDER BY block
            """,
            (*user, from_block),
        )
        chunks = (vector_index.keyed_bits(data, size, after) for (data,) in rows)
        name = graph.file_name(*user, int(newest))

        def followed(added: int) -> None:
            if progress is not None:
                progress(added, outside)

        self._store.graphs.extended(old, chunks, name, followed)

        def switch(conn: sqlite3.Connection) -> bool:
            # Only from the graph this one extends: another process may have switched meanwhile.
            return bool(
                conn.execute(
                    """
                    INSERT INTO memchat_graphs (session_id, model, size, file, through_seq, from_block)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (session_id, model, size) DO UPDATE SET
                        file = excluded.file, through_seq = excluded.through_seq, from_block = excluded.from_block
                    WHERE memchat_graphs.file IS ?
                    """,
                    (*user, name, int(newest), int(last_block), None if known is None else str(known[0])),
                ).rowcount
            )

        switched = _transaction(conn, switch)
        if switched and known is not None:
            self._store.graphs.remove(str(known[0]))
        elif not switched:
            self._store.graphs.remove(name)

    def _uncoded(self, conn: sqlite3.Connection, model: str) -> bool:
        """Whether some of this user's vectors have no bits yet, or some bits have no vector."""
        newest, through, gone = conn.execute(
            """
            SELECT (SELECT MAX(seq) FROM memchat_vectors WHERE session_id = ?1 AND model = ?2),
                (SELECT through_seq FROM memchat_coded WHERE session_id = ?1 AND model = ?2),
                EXISTS (SELECT 1 FROM memchat_codes_gone WHERE session_id = ?1 AND model = ?2)
            """,
            (self.session_id, model),
        ).fetchone()
        return bool(gone) or (newest or 0) > (through or 0)

    def _code(self, conn: sqlite3.Connection, model: str, most: int) -> int:
        """Drop the bits of deleted vectors, and write those of up to ``most`` new ones; how many were written."""
        user = (self.session_id, model)
        gone = {seq for (seq,) in conn.execute(GONE_CODES, user)}
        if gone:
            # The last block stays, even empty: block numbers then only grow, so a graph's from_block holds.
            (last,) = conn.execute(
                "SELECT MAX(block) FROM memchat_codes WHERE session_id = ? AND model = ?", user
            ).fetchone()
            for block, size, data in conn.execute(USER_CODES, user).fetchall():
                kept = vector_index.without(data, size, gone)
                if not kept and block != last:
                    conn.execute(
                        "DELETE FROM memchat_codes WHERE session_id = ? AND model = ? AND block = ?", (*user, block)
                    )
                elif len(kept) != len(data):
                    conn.execute(UPDATE_CODES, (kept, *user, block))
            conn.execute("DELETE FROM memchat_codes_gone WHERE session_id = ? AND model = ?", user)
        (through,) = conn.execute(
            "SELECT COALESCE(MAX(through_seq), 0) FROM memchat_coded WHERE session_id = ? AND model = ?", user
        ).fetchone()
        rows = conn.execute(
            """
            SELECT seq, message_id, vector FROM memchat_vectors
            WHERE session_id = ? AND model = ? AND seq > ? ORDER BY seq LIMIT ?
            """,
            (*user, through, most),
        ).fetchall()
        if not rows:
            return 0
        size, data = vector_index.entries([(int(seq), int(at), bytes(vector)) for seq, at, vector in rows])
        if data:
            self._append_codes(conn, model, size, data)
        conn.execute(
            """
            INSERT INTO memchat_coded (session_id, model, through_seq) VALUES (?, ?, ?)
            ON CONFLICT (session_id, model) DO UPDATE SET through_seq = excluded.through_seq
            """,
            (*user, int(rows[-1][0])),
        )
        return len(rows)

    def _append_codes(self, conn: sqlite3.Connection, model: str, size: int, data: bytes) -> None:
        """Add entries to the user's last block of this size while it has room, then to new blocks."""
        user = (self.session_id, model)
        entry = vector_index.entry_dtype(size).itemsize
        last = conn.execute(
            "SELECT block, size, entries FROM memchat_codes WHERE session_id = ? AND model = ? ORDER BY block DESC",
            user,
        ).fetchone()
        number = -1 if last is None else int(last[0])
        if last is not None and last[1] == size and vector_index.count(last[2], size) < vector_index.BLOCK_ENTRIES:
            room = (vector_index.BLOCK_ENTRIES - vector_index.count(last[2], size)) * entry
            conn.execute(UPDATE_CODES, (bytes(last[2]) + data[:room], *user, number))
            data = data[room:]
        while data:
            number += 1
            conn.execute(
                "INSERT INTO memchat_codes (session_id, model, block, size, entries) VALUES (?, ?, ?, ?, ?)",
                (*user, number, size, data[: vector_index.BLOCK_ENTRIES * entry]),
            )
            data = data[vector_index.BLOCK_ENTRIES * entry :]

    async def around(self, positions: Sequence[int]) -> list[tuple[int, str, Item]]:
        if not positions:
            return []
        rows = await self._store.query(
            """
            WITH hit(id) AS (SELECT value FROM json_each(?2))
            SELECT id, created_at, message_data FROM agent_messages WHERE session_id = ?1 AND id IN (
                SELECT id FROM hit
                UNION SELECT (SELECT max(id) FROM agent_messages WHERE session_id = ?1 AND id < hit.id) FROM hit
                UNION SELECT (SELECT min(id) FROM agent_messages WHERE session_id = ?1 AND id > hit.id) FROM hit
            ) ORDER BY id
            """,
            self.session_id,
            json.dumps([int(position) for position in positions]),
        )
        return self.decoded(rows)

    async def days(self, positions: Sequence[int]) -> dict[int, str]:
        if not positions:
            return {}
        rows = await self._store.query(
            "SELECT id, created_at FROM agent_messages WHERE session_id = ? AND id IN (SELECT value FROM json_each(?))",
            self.session_id,
            json.dumps([int(position) for position in positions]),
        )
        return {int(row_id): str(stored_at) for row_id, stored_at in rows}

    async def vectors(self, model: str, after: int = 0, most: int | None = None) -> Vectors:
        def read(conn: sqlite3.Connection) -> Vectors:
            conn.execute("BEGIN")  # the count and the rows from one snapshot
            try:
                params = (self.session_id, model)
                total, newest = conn.execute(
                    "SELECT COUNT(*), MAX(seq) FROM memchat_vectors WHERE session_id = ? AND model = ?", params
                ).fetchone()
                rows = conn.execute(
                    """
                    SELECT v.message_id, m.created_at, v.vector
                    FROM memchat_vectors AS v JOIN agent_messages AS m ON m.id = v.message_id
                    WHERE v.session_id = ? AND v.model = ? AND v.seq > ? ORDER BY v.message_id DESC LIMIT ?
                    """,
                    (*params, after, -1 if most is None else most),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            return Vectors([(int(at), str(day), bytes(vector)) for at, day, vector in rows], newest or 0, total)

        return await self._store.run(read)

    async def undo(self) -> int:
        def undo(conn: sqlite3.Connection) -> int:
            start = self._newest_turn_start(conn)
            if start is None:
                return 0
            self._unindex_from(conn, start)
            return int(
                conn.execute(
                    "DELETE FROM agent_messages WHERE session_id = ? AND id >= ?", (self.session_id, start)
                ).rowcount
            )

        return await self._store.write(undo)

    async def replace_turn(self, start: int, items: list[Item]) -> None:
        def replace(conn: sqlite3.Connection) -> None:
            self.check_still_last(start, self._newest_turn_start(conn))
            conn.execute("DELETE FROM agent_messages WHERE session_id = ? AND id >= ?", (self.session_id, start))
            self._unindex_from(conn, start)
            self._insert(conn, items)

        await self._store.write(replace)

    async def forget(self, turns: list[Turn]) -> bool:
        def forget(conn: sqlite3.Connection) -> bool:
            params = (self.session_id,)
            for turn in turns:
                rows = conn.execute(
                    "SELECT message_data FROM agent_messages WHERE session_id = ? AND id BETWEEN ? AND ? ORDER BY id",
                    (self.session_id, turn.start, turn.end),
                ).fetchall()
                self.check_unchanged(turn, (data for (data,) in rows))
            summary = conn.execute("SELECT through_id FROM memchat_summaries WHERE session_id = ?", params).fetchone()
            for turn in turns:
                span = (self.session_id, turn.start, turn.end)
                conn.execute("DELETE FROM agent_messages WHERE session_id = ? AND id BETWEEN ? AND ?", span)
                conn.execute("DELETE FROM memchat_search WHERE session_id = ? AND rowid BETWEEN ? AND ?", span)
                conn.execute(FORGET_NEXT_VECTOR, (self.session_id, turn.end))
            # The vectors of the messages after them are made again, beside what now comes before them.
            conn.execute("DELETE FROM memchat_embedded WHERE session_id = ?", params)
            covered = self.covers(None if summary is None else summary[0], turns)
            if covered:
                conn.execute("DELETE FROM memchat_summaries WHERE session_id = ?", params)
            return covered

        return await self._store.write(forget)

    def _newest_turn_start(self, conn: sqlite3.Connection) -> int | None:
        for row_id, data in self._newest_first(conn):
            with contextlib.suppress(UnreadableError):
                if is_user_message(self.codec.decode(data)):
                    return int(row_id)
        return None

    def _newest_first(self, conn: sqlite3.Connection) -> Iterator[RawRow]:
        """This user's rows, newest first, a page at a time: stopping early reads no more."""
        before = END
        while page := conn.execute(
            f"""
            SELECT id, message_data FROM agent_messages WHERE session_id = ? AND id < ?
            ORDER BY id DESC LIMIT {PAGE_ROWS}
            """,
            (self.session_id, before),
        ).fetchall():
            yield from page
            before = page[-1][0]

    async def count(self) -> int:
        (row,) = await self._store.query("SELECT COUNT(*) FROM agent_messages WHERE session_id = ?", self.session_id)
        return int(row[0])

    async def raw_page(
        self, after: int, before: int, *, newest_first: bool, conn: Any = None, limit: int = PAGE_ROWS
    ) -> list[RawRow]:
        order = "DESC" if newest_first else "ASC"
        rows = await self._store.query(
            f"""
            SELECT id, message_data FROM agent_messages WHERE session_id = ? AND id > ? AND id < ?
            ORDER BY id {order} LIMIT {int(limit)}
            """,
            self.session_id,
            after,
            before,
        )
        return [(row_id, data) for row_id, data in rows]

    async def summary(self) -> Summary | None:
        rows = await self._store.query(READ_SUMMARY, self.session_id)
        return Summary(self.codec.decode_text(rows[0][0]), rows[0][1]) if rows else None

    async def save_summary(self, summary: Summary) -> None:
        stored = self.codec.encode_text(summary.text)
        await self._store.write(lambda conn: conn.execute(SAVE_SUMMARY, (self.session_id, stored, summary.through)))

    async def instructions(self) -> str | None:
        rows = await self._store.query(
            "SELECT instructions FROM memchat_instructions WHERE session_id = ?", self.session_id
        )
        return self.codec.decode_text(rows[0][0]) if rows else None

    async def set_instructions(self, text: str | None) -> None:
        def change(conn: sqlite3.Connection) -> None:
            if text is None:
                conn.execute("DELETE FROM memchat_instructions WHERE session_id = ?", (self.session_id,))
            else:
                conn.execute(
                    """
                    INSERT INTO memchat_instructions (session_id, instructions) VALUES (?, ?)
                    ON CONFLICT (session_id) DO UPDATE
                    SET instructions = excluded.instructions, updated_at = CURRENT_TIMESTAMP
                    """,
                    (self.session_id, self.codec.encode_text(text)),
                )

        await self._store.write(change)

    async def saved_memories(self) -> tuple[str, int]:
        rows = await self._store.query("SELECT body, version FROM memchat_saved WHERE session_id = ?", self.session_id)
        return (self.codec.decode_text(rows[0][0]), int(rows[0][1])) if rows else ("", 0)

    async def save_memories(self, text: str, version: int) -> bool:
        body = self.codec.encode_text(text)

        def change(conn: sqlite3.Connection) -> bool:
            if version == 0:
                written = conn.execute(
                    "INSERT INTO memchat_saved (session_id, body, version) VALUES (?, ?, 1) ON CONFLICT DO NOTHING",
                    (self.session_id, body),
                )
            else:
                written = conn.execute(
                    """
                    UPDATE memchat_saved SET body = ?, version = version + 1, updated_at = CURRENT_TIMESTAMP
                    WHERE session_id = ? AND version = ?
                    """,
                    (body, self.session_id, version),
                )
            return written.rowcount == 1

        return await self._store.write(change)


def explain(path: Path, exc: sqlite3.Error) -> StoreError:
    """One line for a SQLite error: what happened to the file, and what to do."""
    message = str(exc)
    lowered = message.lower()
    if _is_busy(exc):
        return StoreError(
            f"{path} stayed locked by another process for {BUSY_TIMEOUT_SECONDS:g} s ({message}): "
            "try again, or close the other memchat"
        )
    if "full" in lowered:
        return StoreError(f"cannot write to {path}: the disk is full: free some space, then try again")
    if "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"cannot write to {path}: it is read-only: give yourself write access (chmod u+w) or pass --db another path"
        )
    if "not a database" in lowered or "malformed" in lowered:
        return StoreError(
            f"{path} is damaged or is not a SQLite database: restore it from a backup or pass --db another path"
        )
    return StoreError(f"{path} failed ({message}): check the disk and the file, then try again")


def _open(path: Path) -> tuple[sqlite3.Connection, tuple[int, int]]:
    """Open (or create, private to its owner) the database, refusing any path it can't use.

    Runs on the store's thread, which then owns the connection.
    """
    if path.is_dir():
        raise StoreError(
            f"{path} is a directory, not a database file: pass --db a file path such as {path / 'conversion.db'}"
        )
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"the folder {path.parent} does not exist: create it or pass --db another path")
        try:
            # Created here rather than by SQLite so it is 0600 whatever the umask;
            # SQLite gives the -wal and -shm files the same mode as the database.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass  # another memchat created it a moment ago
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}; pass --db a path in a writable folder") from None
        else:
            os.fchmod(fd, 0o600)
            os.close(fd)
    elif not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"cannot read and write {path}: check its permissions or pass --db another path")

    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    try:
        opened = os.stat(path)
        _prepare(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        # Never delete the file here, even one this process created: other processes may already be writing to it.
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(
                f"{path} is not a SQLite database (or is damaged); it was left untouched: pass --db another path"
            ) from None
        raise explain(path, exc) from None
    return conn, (opened.st_dev, opened.st_ino)


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL and the migrations, written only when missing, so many processes can start on one new file at once."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            # A read first: a file that is not SQLite fails here, before anything is written to it.
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            if _schema_version(conn) < len(MIGRATIONS):
                _transaction(conn, _migrate)
            return
        except sqlite3.OperationalError as exc:
            # Switching to WAL needs a moment alone with the file; other starters may hold it.
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise


def _schema_version(conn: sqlite3.Connection) -> int:
    """How many of ``MIGRATIONS`` this file has."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'memchat_migrations'").fetchone()
    if found is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM memchat_migrations").fetchone()[0])


def _login_failures(conn: sqlite3.Connection, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
    marks = ", ".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT key, failures, last FROM memchat_login_failures WHERE key IN ({marks}) AND last >= ?",
        (*keys, since),
    )
    return {key: LoginFailures(failures, last) for key, failures, last in rows}


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks, in order, in the caller's transaction."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS memchat_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        )
        """
    )
    # Read again under the write lock: another process may have migrated a moment ago.
    for version in range(_schema_version(conn) + 1, len(MIGRATIONS) + 1):
        name, statements = MIGRATIONS[version - 1]
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO memchat_migrations (version, name) VALUES (?, ?)", (version, name))


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` in a transaction that takes the write lock up front, so it never fails half-way on it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result


def _is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLite says "locked" or "busy")."""
    message = str(exc).lower()
    return "locked" in message or "busy" in message
