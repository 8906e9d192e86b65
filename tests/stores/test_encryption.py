"""Encryption at rest with MEMCHAT_ENCRYPTION_KEY: nothing readable in the store, nothing lost to a wrong key."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from memchat.errors import StoreError
from memchat.stores import open_store
from memchat.stores.codec import Codec
from memchat.stores.protocol import Summary
from support import Memchat, opened

KEY = "correct horse battery staple"
SECRET_WORDS = ("Quinn", "lighthouse", "Hokkaido")


def turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


async def raw_contents(location: str) -> str:
    """Everything the store holds, as its bytes would show it to someone reading the disk or the server."""
    if location.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(location)
        rows = await conn.fetch(
            """
            SELECT message_data FROM agent_messages UNION ALL SELECT summary FROM memchat_summaries
            UNION ALL SELECT instructions FROM memchat_instructions UNION ALL SELECT body::text FROM memchat_search
            """
        )
        await conn.close()
        return "\n".join(row[0] for row in rows)
    if location.startswith("redis"):
        import redis.asyncio as aioredis

        from memchat.stores.redis import INDEX_PREFIX, split_url

        url, prefix = split_url(location)
        client = aioredis.Redis.from_url(url, decode_responses=True)
        found = []
        for pattern in (f"{prefix}:*", f"{INDEX_PREFIX}:{prefix}:*"):
            async for key in client.scan_iter(match=pattern):
                kind = await client.type(key)
                read = {
                    "list": lambda key: client.lrange(key, 0, -1),
                    "set": client.smembers,
                    "zset": lambda key: client.zrange(key, 0, -1),
                }.get(kind, client.hgetall)
                found.append(f"{key} {await read(key)}")
        await client.aclose()
        return "\n".join(found)
    files = [Path(location), Path(f"{location}-wal")]
    return "\n".join(path.read_bytes().decode("latin-1") for path in files if path.exists())


async def stored_rows(location: str) -> str:
    """What the store holds, row by row (a SQLite file's bytes move about when its journal is folded in)."""
    if "://" in location:
        return await raw_contents(location)
    with sqlite3.connect(location) as conn:
        rows = conn.execute("SELECT id, session_id, message_data FROM agent_messages ORDER BY id").fetchall()
    return repr(rows)


@pytest.mark.anyio
async def test_with_a_key_the_store_holds_no_plaintext_messages_summary_instructions_or_index(location: str) -> None:
    text = "my name is Quinn and I keep a lighthouse in Hokkaido"
    store = await open_store(location, encryption_key=KEY)
    try:
        memory = store.memory("alice")
        await memory.add_items(turn(text))
        ends = [t.end async for t in memory.turns_backward(0)]
        await memory.save_summary(Summary("Quinn keeps a lighthouse in Hokkaido.", ends[0]))
        await memory.set_instructions("Call me Quinn of Hokkaido.")
        raw = await raw_contents(location)
        assert raw and not any(word in raw for word in SECRET_WORDS)
        assert await memory.get_items() == turn(text)
        assert (await memory.summary()) == Summary("Quinn keeps a lighthouse in Hokkaido.", ends[0])
        # The index holds keyed hashes of the words: the search still finds them, the bytes do not show them.
        found = {hit.position for hit in await memory.search("where is the LIGHTHOUSE?", 5)}
        assert found == {ends[0] - 1, ends[0]}
        if location.startswith("redis"):  # its own index hashes stems, so it stems with a key too
            assert ends[0] - 1 in {hit.position for hit in await memory.search("lighthouses", 5)}
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_wrong_key_deletes_pops_and_overwrites_nothing(location: str) -> None:
    async with opened(location) as _:
        pass  # the store exists
    store = await open_store(location, encryption_key=KEY)
    await store.memory("alice").add_items(turn("first") + turn("second"))
    await store.close()
    before = await stored_rows(location)
    wrong = await open_store(location, encryption_key="not the key")
    try:
        memory = wrong.memory("alice")
        for action in (memory.check_readable, memory.undo, memory.pop_item, memory.get_items, memory.last_turns):
            with pytest.raises(StoreError, match="not the passphrase"):
                await (action(1) if action == memory.last_turns else action())
    finally:
        await wrong.close()
    assert await stored_rows(location) == before


@pytest.mark.anyio
async def test_two_processes_with_different_keys_never_both_write_a_new_memory(location: str) -> None:
    # Both start on an empty memory, so neither start-up check can see the other's key.
    first = await open_store(location, encryption_key=KEY)
    second = await open_store(location, encryption_key="another passphrase")
    try:
        await first.memory("alice").add_items(turn("written first"))
        before = await stored_rows(location)
        with pytest.raises(StoreError, match="not the passphrase"):
            await second.memory("alice").add_items(turn("written second"))
        assert await stored_rows(location) == before
        assert await first.memory("alice").get_items() == turn("written first")  # readable with the first key
    finally:
        await first.close()
        await second.close()


def test_encrypted_history_does_not_expire(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    codec = Codec("alice", KEY)
    month_ago = int(time.time()) - 30 * 24 * 3600
    old = codec._fernet.encrypt_at_time(b'{"role": "user", "content": "said a month ago"}', month_ago).decode()

    async def check() -> None:
        async with opened(str(db)) as store:
            await store.memory("alice").add_items(turn("x"))  # creates the tables
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM agent_messages")
            conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) VALUES ('alice', ?)",
                ('{"memchat_encrypted": 1, "token": "' + old + '"}',),
            )
        store = await open_store(str(db), encryption_key=KEY)
        try:
            assert await store.memory("alice").get_items() == [{"role": "user", "content": "said a month ago"}]
        finally:
            await store.close()

    asyncio.run(check())


def test_an_encrypted_memory_is_remembered_and_unreadable_on_disk(memchat: Memchat) -> None:
    told = memchat(input="my name is Quinn\n", MEMCHAT_ENCRYPTION_KEY=KEY)
    assert told.returncode == 0, told.stderr
    asked = memchat(input="what's my name?\n", MEMCHAT_ENCRYPTION_KEY=KEY)
    assert asked.stdout == "Your name is Quinn.\n"
    raw = asyncio.run(raw_contents(str(memchat.db)))
    assert "Quinn" not in raw
    assert KEY not in raw + told.stdout + told.stderr + asked.stdout + asked.stderr


@pytest.mark.parametrize(
    ("key", "says"),
    [("not the key", "is not the passphrase it was written with"), ("", "is encrypted: set MEMCHAT_ENCRYPTION_KEY")],
)
def test_a_wrong_or_missing_key_is_exit_2_and_changes_nothing(memchat: Memchat, key: str, says: str) -> None:
    memchat(input="my name is Quinn\n", MEMCHAT_ENCRYPTION_KEY=KEY)
    before = memchat.db.read_bytes()
    for args, lines in ((["--clear"], "hi\n"), ([], "/undo\nhello\n/clear\n")):
        run = memchat(*args, input=lines, MEMCHAT_ENCRYPTION_KEY=key)
        assert run.returncode == 2
        assert run.stderr.startswith("error: ") and says in run.stderr and len(run.stderr.splitlines()) == 1
        assert key == "" or key not in run.stderr
    assert memchat.db.read_bytes() == before
    assert memchat(input="what's my name?\n", MEMCHAT_ENCRYPTION_KEY=KEY).stdout == "Your name is Quinn.\n"


def test_copy_with_a_key_encrypts_an_existing_plain_memory(memchat: Memchat) -> None:
    memchat(input="my name is Quinn\n")
    moved = memchat("copy", "--from", "conversion.db", "--to", "sealed.db", MEMCHAT_ENCRYPTION_KEY=KEY)
    assert moved.stdout == "user1: copied 2 messages\n", moved.stderr
    assert "Quinn" not in asyncio.run(raw_contents(str(memchat.cwd / "sealed.db")))
    asked = memchat("--db", "sealed.db", input="what's my name?\n", MEMCHAT_ENCRYPTION_KEY=KEY)
    assert asked.stdout == "Your name is Quinn.\n"
