"""Memories in one SQLite file, in the Agents SDK's ``SQLiteSession`` schema.

The tables are the SDK's own (``agent_sessions``, ``agent_messages``), so a file
written by a plain ``SQLiteSession("user1", "conversion.db")`` loop is read as
is, and the other way round. This class exists instead of ``SQLiteSession``
because memchat needs what that class does not give: a file created private
(0600), a clear refusal of a path that is not a usable database, whole-turn
reads and undo, a list of users, and no import of the SDK, which
takes seconds to load, on the paths that only touch the database.

Calls run inline rather than in a worker thread: each is a few milliseconds on
an indexed table, and a call that cannot be interrupted half-way is what keeps a
turn's write whole when Ctrl-C arrives.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .codec import Codecs
from .errors import StoreError
from .items import Item
from .memory import Summary, UserStats
from .memory_base import PAGE_ROWS, MemoryBase, Row, last_turn_start

# How long a write waits for another process holding the lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_sessions (
    session_id TEXT PRIMARY KEY,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS agent_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    message_data TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_agent_messages_session_id ON agent_messages (session_id, id);
CREATE TABLE IF NOT EXISTS memchat_passwords (
    user_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS memchat_summaries (
    session_id TEXT PRIMARY KEY,
    summary TEXT NOT NULL,
    through_id INTEGER NOT NULL,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
"""


# Another process may have cleared this memory, or saved a summary reaching
# further, while this one was writing its own: then the summary is not saved.
SAVE_SUMMARY = """
INSERT INTO memchat_summaries (session_id, summary, through_id)
SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM agent_messages WHERE id = ?3 AND session_id = ?1)
ON CONFLICT (session_id) DO UPDATE
SET summary = excluded.summary, through_id = excluded.through_id, updated_at = CURRENT_TIMESTAMP
WHERE excluded.through_id > memchat_summaries.through_id
"""


class SQLiteStore:
    """Every user's memory in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True, encryption_key: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.codecs = Codecs(encryption_key)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path} does not exist: check the path")
        self._conn = _open(self.path)

    def memory(self, user: str) -> SQLiteMemory:
        return SQLiteMemory(self, user)

    async def users(self) -> list[UserStats]:
        rows = self._conn.execute(
            """
            SELECT session_id, COUNT(*), MAX(created_at) FROM agent_messages
            GROUP BY session_id ORDER BY MAX(id) DESC
            """
        ).fetchall()
        return [UserStats(user, count, last) for user, count, last in rows]

    async def password_hash(self, user: str) -> str | None:
        rows = self.query("SELECT hash FROM memchat_passwords WHERE user_id = ?", user)
        return str(rows[0][0]) if rows else None

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO memchat_passwords (user_id, hash) VALUES (?, ?)
                ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated_at = CURRENT_TIMESTAMP
                """,
                (user, password_hash),
            )

    async def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front, so it never fails half-way on it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _busy_error(self.path, exc) from None
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()


class SQLiteMemory(MemoryBase):
    """One user's conversation in a ``SQLiteStore``; an SDK-compatible Session."""

    def __init__(self, store: SQLiteStore, user: str) -> None:
        super().__init__(user, store.codecs(user))
        self._store = store

    async def get_items(self, limit: int | None = None) -> list[Item]:
        if limit is None:
            rows = self._store.query(
                "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id", self.session_id
            )
        else:
            rows = self._store.query(
                """
                SELECT message_data FROM (
                    SELECT id, message_data FROM agent_messages
                    WHERE session_id = ? ORDER BY id DESC LIMIT ?
                ) ORDER BY id
                """,
                self.session_id,
                limit,
            )
        return [self.codec.decode(data) for (data,) in rows]

    async def add_items(self, items: list[Item]) -> None:
        if not items:
            return
        with self._store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO agent_sessions (session_id) VALUES (?)", (self.session_id,))
            conn.executemany(
                "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
                [(self.session_id, self.codec.encode(item)) for item in items],
            )
            conn.execute(
                "UPDATE agent_sessions SET updated_at = CURRENT_TIMESTAMP WHERE session_id = ?",
                (self.session_id,),
            )

    async def pop_item(self) -> Item | None:
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT id, message_data FROM agent_messages WHERE session_id = ? ORDER BY id DESC LIMIT 1",
                (self.session_id,),
            ).fetchone()
            if row is None:
                return None
            # Decoded before the delete: an item that cannot be read (a wrong key) is never removed.
            item: Item = self.codec.decode(row[1])
            conn.execute("DELETE FROM agent_messages WHERE id = ?", (row[0],))
        return item

    async def clear_session(self) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM agent_messages WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM agent_sessions WHERE session_id = ?", (self.session_id,))
            conn.execute("DELETE FROM memchat_summaries WHERE session_id = ?", (self.session_id,))

    async def undo(self) -> int:
        with self._store.transaction() as conn:
            start = await last_turn_start(self.rows_backward(0))
            if start is None:
                return 0
            removed = conn.execute(
                "DELETE FROM agent_messages WHERE session_id = ? AND id >= ?", (self.session_id, start)
            ).rowcount
        return int(removed)

    async def count(self) -> int:
        (row,) = self._store.query("SELECT COUNT(*) FROM agent_messages WHERE session_id = ?", self.session_id)
        return int(row[0])

    async def page(self, after: int, before: int, *, newest_first: bool, conn: Any = None) -> list[Row]:
        order = "DESC" if newest_first else "ASC"
        rows = self._store.query(
            f"""
            SELECT id, message_data FROM agent_messages WHERE session_id = ? AND id > ? AND id < ?
            ORDER BY id {order} LIMIT {PAGE_ROWS}
            """,
            self.session_id,
            after,
            before,
        )
        return [(row_id, self.codec.decode(data)) for row_id, data in rows]

    async def summary(self) -> Summary | None:
        rows = self._store.query(
            "SELECT summary, through_id FROM memchat_summaries WHERE session_id = ?", self.session_id
        )
        return Summary(self.codec.decode_text(rows[0][0]), rows[0][1]) if rows else None

    async def save_summary(self, summary: Summary) -> None:
        with self._store.transaction() as conn:
            conn.execute(SAVE_SUMMARY, (self.session_id, self.codec.encode_text(summary.text), summary.through))


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create, private to its owner) the database, refusing any path it can't use."""
    if path.is_dir():
        raise StoreError(
            f"{path} is a directory, not a database file: pass --db a file path such as {path / 'conversion.db'}"
        )
    created = False
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"the folder {path.parent} does not exist: create it or pass --db another path")
        try:
            # Created here rather than by SQLite so it is 0600 whatever the umask;
            # SQLite gives the -wal and -shm files the same mode as the database.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            fd = -1  # another memchat created it a moment ago
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}; pass --db a path in a writable folder") from None
        if fd >= 0:
            os.fchmod(fd, 0o600)
            os.close(fd)
            created = True
    elif not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"cannot read and write {path}: check its permissions or pass --db another path")

    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        # A read first: a file that is not SQLite fails here, before anything is written to it.
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if created:
            path.unlink(missing_ok=True)
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(
                f"{path} is not a SQLite database (or is damaged); it was left untouched: pass --db another path"
            ) from None
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise _busy_error(path, exc) from None
        raise StoreError(
            f"cannot use {path} as a database ({exc}): check the folder is writable or pass --db another path"
        ) from None
    return conn


def _busy_error(path: Path, exc: sqlite3.OperationalError) -> StoreError:
    return StoreError(
        f"{path} stayed locked by another process for {BUSY_TIMEOUT_SECONDS:g} s ({exc}): "
        "try again, or close the other memchat"
    )
