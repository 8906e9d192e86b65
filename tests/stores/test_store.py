"""The SQLite store: what it keeps, for whom, and which files it refuses."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from memchat.stores.sqlite import SQLiteStore, StoreError


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


def test_memory_survives_reopening_the_file(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = SQLiteStore(db)
    run(store.memory("alice").add_items(turn("my name is Alice")))
    run(store.close())
    again = SQLiteStore(db)
    assert run(again.memory("alice").get_items()) == turn("my name is Alice")


def test_users_do_not_see_each_other(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    run(store.memory("alice").add_items(turn("a")))
    run(store.memory("bob").add_items(turn("b")))
    assert run(store.memory("alice").get_items()) == turn("a")
    assert run(store.memory("bob").get_items()) == turn("b")


def test_clear_wipes_only_that_user(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    run(store.memory("alice").add_items(turn("a")))
    run(store.memory("bob").add_items(turn("b")))
    run(store.memory("alice").clear_session())
    assert run(store.memory("alice").get_items()) == []
    assert run(store.memory("bob").get_items()) == turn("b")
    assert [u.user for u in run(store.users())] == ["bob"]


def test_undo_removes_the_last_exchange_with_its_tool_calls(tmp_path: Path) -> None:
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    run(memory.add_items(turn("first")))
    tool_turn = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"role": "assistant", "content": "sunny"},
    ]
    run(memory.add_items(tool_turn))
    assert run(memory.undo()) == 4
    assert run(memory.get_items()) == turn("first")
    assert run(memory.undo()) == 2
    assert run(memory.undo()) == 0


def test_last_turns_start_at_a_user_message(tmp_path: Path) -> None:
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    for text in ("one", "two", "three"):
        run(memory.add_items(turn(text)))
    assert run(memory.last_turns(2)) == turn("two") + turn("three")
    assert run(memory.last_turns(10)) == turn("one") + turn("two") + turn("three")
    assert run(memory.get_items(limit=1)) == turn("three")[1:]


def test_unicode_and_sql_looking_text_round_trip(tmp_path: Path) -> None:
    memory = SQLiteStore(tmp_path / "m.db").memory("x'); DROP TABLE agent_messages;--")
    odd = "héllo 👋 مرحبا \x00 '; DELETE FROM agent_sessions; --"
    run(memory.add_items(turn(odd)))
    assert run(memory.get_items()) == turn(odd)


def test_pop_item_returns_the_newest(tmp_path: Path) -> None:
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    run(memory.add_items(turn("a")))
    assert run(memory.pop_item()) == turn("a")[1]
    assert run(memory.count()) == 1


def test_new_database_is_private_to_its_owner(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        store = SQLiteStore(tmp_path / "m.db")
        run(store.memory("alice").add_items(turn("a")))
        for name in ("m.db", "m.db-wal", "m.db-shm"):
            path = tmp_path / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_a_file_written_by_the_sdks_sqlite_session_is_read(tmp_path: Path) -> None:
    from agents import SQLiteSession

    db = tmp_path / "sdk.db"
    run(SQLiteSession("user1", db).add_items(turn("from the SDK")))  # type: ignore[arg-type]
    assert run(SQLiteStore(db).memory("user1").get_items()) == turn("from the SDK")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes\n" * 100)
    before = notes.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        SQLiteStore(notes)
    assert notes.read_bytes() == before
    assert not (tmp_path / "notes.txt-wal").exists()


def test_an_unwritable_folder_is_refused(tmp_path: Path) -> None:
    # /sys refuses new files even to root, so this holds for every user running the tests.
    with pytest.raises(StoreError, match=r"cannot create /sys/m\.db: Permission denied"):
        SQLiteStore("/sys/m.db")


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(tmp_path / "nope" / "m.db")


def test_a_write_blocked_by_another_process_waits_then_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memchat.stores.sqlite as module

    db = tmp_path / "m.db"
    store = SQLiteStore(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store._conn.execute("PRAGMA busy_timeout = 200")
    monkeypatch.setattr(module, "BUSY_TIMEOUT_SECONDS", 0.2)
    with pytest.raises(StoreError, match="locked by another process"):
        run(store.memory("alice").add_items(turn("a")))
    blocker.execute("ROLLBACK")
    run(store.memory("alice").add_items(turn("a")))
    assert run(store.memory("alice").count()) == 2


def test_postgresql_reads_a_long_history_newest_first_by_its_index_on_a_server_that_never_counts_its_tables(
    tmp_path: Path,
) -> None:
    import asyncpg

    from support import fresh_store, opened

    location = fresh_store("postgres", tmp_path)
    newest_page = (
        "EXPLAIN SELECT id, message_data FROM agent_messages WHERE session_id = 'ann' AND id > 0 "
        "AND id < CAST(4611686018427387904 AS BIGINT) ORDER BY id DESC LIMIT 64"
    )

    async def run() -> str:
        async with opened(location):
            pass
        conn = await asyncpg.connect(location)
        try:
            # As on a server with autovacuum off: nothing counts the tables but memchat.
            for table in ("agent_messages", "memchat_search", "memchat_vectors"):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
            async with opened(location) as store:
                await store.memory("ann").add_items([{"role": "user", "content": "a first note"}])
            # A long history, written at once (as memchat import or a plain SDK loop would over months).
            await conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) SELECT 'ann', "
                """'{"role": "user", "content": "note ' || n || '"}' FROM generate_series(1, 200000) AS n"""
            )
            async with opened(location):  # the next run starts
                pass
            return "\n".join(row[0] for row in await conn.fetch(newest_page))
        finally:
            await conn.close()

    plan = asyncio.run(run())
    # Uncounted, the planner takes the user for a few rows: it reads all 200,000 and sorts them.
    assert "Sort" not in plan and "Index Scan Backward" in plan, plan
