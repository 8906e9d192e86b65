"""Search by meaning where the vectors are kept: SQLite scans sign bits in place, PostgreSQL asks pgvector."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from fake_openai import FakeOpenAI, meaning
from memchat.context import semantic as semantic_module
from memchat.context.semantic import HeldVectors, normalized
from memchat.conversation import Conversation
from memchat.stores import graph, postgres, vector_index
from memchat.stores.protocol import Memory, Vectors
from memchat.stores.sqlite import MIGRATIONS, SQLiteMemory
from support import Memchat, fresh_store, opened, semantic_for

WORDS = [f"w{n}" for n in range(400)]
# Vectors of every number used, as a real model's: the index must choose among them by angle.
EMBEDDER = "fake-dense-384"


def vector(text: str) -> bytes:
    return normalized(meaning(text, EMBEDDER))


def texts(count: int, seed: int = 7) -> list[str]:
    """Messages of a few words each out of a vocabulary of 400, the same every run."""
    chance = random.Random(seed)
    return [" ".join(chance.sample(WORDS, chance.randint(3, 9))) for _ in range(count)]


async def planted(memory: Memory, messages: list[str]) -> list[int]:
    """The messages stored with their vectors (the test server's model), and their positions."""
    await memory.add_items([{"role": "user", "content": text} for text in messages])
    rows = await memory.unembedded(EMBEDDER, len(messages))
    await memory.save_vectors(EMBEDDER, [(at, text, vector(text)) for at, text in rows])
    # As memchat index does after a bulk load: SQLite's graph, PostgreSQL's copies, where they are due.
    await memory.index_vectors(EMBEDDER)
    return sorted(at for at, _ in rows)


def exact(vectors: Vectors, query: str, limit: int) -> dict[int, float]:
    """The ``limit`` nearest by an exact scan, with their cosine."""
    held = HeldVectors()
    held.add(vectors)
    return {hit.position: -hit.rank for hit in held.nearest(vector(query), limit)}


@pytest.fixture(params=["sqlite", "sqlite-graph", "postgres", "postgres-hnsw"])
def in_place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store that searches vectors where they are: SQLite by a scan and through its graph, PostgreSQL
    with pgvector exactly and by its index."""
    if request.param == "postgres-hnsw":
        monkeypatch.setattr(postgres, "EXACT_UP_TO", 100)  # past it, the HNSW index answers
    if request.param == "sqlite-graph":
        monkeypatch.setattr(graph, "TAIL_MOST", 100)  # past it, memchat index makes a graph
    location = fresh_store(request.param.split("-")[0], tmp_path)
    if location.startswith("postgresql"):
        require_pgvector(location)
    return location


def require_pgvector(location: str) -> None:
    async def check() -> bool:
        async with opened(location) as store:
            return bool(getattr(store, "pgvector", False))

    if not asyncio.run(check()):
        message = "this PostgreSQL has no pgvector (.ci/run builds it from ../shared/vendor)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_vectors_are_searched_in_the_store_without_reading_them_all(in_place: str, server: FakeOpenAI) -> None:
    async def run() -> None:
        async with opened(in_place) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(200)])

            async def refused(*_: Any) -> Vectors:
                raise AssertionError("every vector read into the process")

            memory.vectors = refused  # type: ignore[method-assign]
            semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
            hits = await semantic.hits(memory, "which automobile do I own?", 3)
            await semantic.aclose()
            assert hits and hits[0].position == 1

    asyncio.run(run())


def test_the_search_in_the_store_finds_the_true_nearest_among_thousands(in_place: str) -> None:
    async def run() -> None:
        async with opened(in_place) as store:
            # Another user's vectors are as near, and are never answered (the index walk filters as it goes).
            count = 2000 if in_place.startswith("postgresql") else 5000
            await planted(store.memory("bob"), texts(count, seed=9))
            memory = store.memory("ann")
            mine = set(await planted(memory, texts(count)))
            everything = await memory.vectors(EMBEDDER)
            found = total = 0
            for query in texts(30, seed=8):
                truth = exact(everything, query, 10)
                hits = await memory.nearest(EMBEDDER, vector(query), 10)
                assert hits is not None and {hit.position for hit in hits} <= mine
                # A hit as near as the tenth true one is as right as it (many messages tie; PostgreSQL
                # ranks by its half-precision copies, exact to about three digits).
                found += sum(-hit.rank >= min(truth.values()) - 2e-3 for hit in hits)
                total += len(truth)
            # Far more messages than SQLite re-ranks exactly (400), and than PostgreSQL scans exactly here.
            assert found / total >= 0.95

    asyncio.run(run())


def test_the_search_in_the_store_keeps_to_messages_before_the_mark(in_place: str) -> None:
    async def run() -> None:
        async with opened(in_place) as store:
            memory = store.memory("ann")
            positions = await planted(memory, ["my Volvo is red", *texts(150), "my Volvo is blue"])
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 5, before=positions[-1])
            assert hits and hits[0].position == positions[0]
            assert all(hit.position < positions[-1] for hit in hits)

    asyncio.run(run())


def test_a_hit_by_meaning_carries_the_date_its_message_was_stored(in_place: str) -> None:
    async def run() -> None:
        async with opened(in_place) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(150)])
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 5)
            assert hits is not None and len(hits) == 5
            stored = await memory.days([hit.position for hit in hits])
            assert all(hit.stored_at[:10] == stored[hit.position][:10] != "" for hit in hits)

    asyncio.run(run())


def codes(path: Path, user: str) -> int:
    """How many vectors of ``user`` have bits in the file."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT size, entries FROM memchat_codes WHERE session_id = ?", (user,)).fetchall()
    return sum(vector_index.count(entries, size) for size, entries in rows)


def test_bits_go_with_their_vectors_whoever_deletes_them(tmp_path: Path) -> None:
    path = tmp_path / "m.db"

    async def run() -> None:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", "the weather is mild", "my Volvo is blue"])
            await store.memory("bob").add_items([{"role": "user", "content": "bob's own"}])
            assert codes(path, "ann") == 3
            # The SDK's own pop_item knows nothing of bits; the next search leaves them out and drops them.
            await memory.pop_item()
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 5)
            assert [hit.position for hit in hits or []] == [1, 2]
            assert codes(path, "ann") == 2
            await memory.clear_session()
            assert codes(path, "ann") == 0
            assert await memory.nearest(EMBEDDER, vector("volvo"), 5) == []

    asyncio.run(run())


def test_a_file_with_vectors_from_before_the_bits_is_searched_after_catching_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.db"

    async def plant() -> None:
        async with opened(str(path)) as store:
            await planted(store.memory("ann"), ["my Volvo is red", *texts(1500)])

    asyncio.run(plant())
    # The file as the version before the bits left it: vectors, no bits (nor anything after them).
    bits = next(n for n, migration in enumerate(MIGRATIONS, start=1) if "sign bits" in migration.name)
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            DROP TRIGGER memchat_codes_follow; DROP TABLE memchat_codes; DROP TABLE memchat_coded;
            DROP TABLE memchat_codes_gone; DROP TABLE memchat_saved; DROP TABLE memchat_graphs;
            """
        )
        db.execute("DELETE FROM memchat_migrations WHERE version >= ?", (bits,))

    async def search() -> None:
        async with opened(str(path)) as store:
            hits = await store.memory("ann").nearest(EMBEDDER, vector("automobile"), 3)
            assert hits and hits[0].position == 1
            # memchat index then makes the graph of a long history, as in a file made by this version.
            await store.memory("ann").index_vectors(EMBEDDER)
            hits = await store.memory("ann").nearest(EMBEDDER, vector("automobile"), 3)
            assert hits and hits[0].position == 1

    monkeypatch.setattr(graph, "TAIL_MOST", 1000)
    asyncio.run(search())
    assert codes(path, "ann") == 1501
    assert len(graph_files(path)) == 1


def graph_files(path: Path) -> list[str]:
    folder = graph.folder(path)
    return sorted(file.name for file in folder.iterdir()) if folder.exists() else []


def test_a_long_sqlite_history_is_searched_through_a_graph_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 300)
    monkeypatch.setattr(vector_index, "BLOCK_ENTRIES", 50)
    scanned: list[int] = []
    scan = vector_index.closest

    def counted(blocks: Any, *args: Any) -> Any:
        blocks = list(blocks)
        scanned.append(len(blocks))
        return scan(blocks, *args)

    monkeypatch.setattr(vector_index, "closest", counted)
    path = tmp_path / "m.db"

    async def run() -> None:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(199)])
            assert graph_files(path) == []  # too few for a graph: scanned
            await planted(memory, texts(400, seed=3))
            (made,) = graph_files(path)
            assert not made.startswith("ann")  # no user id in a file name
            # Readable by its owner only, as the database is.
            assert graph.folder(path).stat().st_mode & 0o777 == 0o700
            assert (graph.folder(path) / made).stat().st_mode & 0o777 == 0o600
            # Written after the graph: found by a scan of the newest blocks only.
            latest = await planted(memory, ["my Porsche is green"])
            scanned.clear()
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 3)
            assert hits and hits[0].position == 1
            hits = await memory.nearest(EMBEDDER, vector("porsche"), 3)
            assert hits and hits[0].position == latest[0]
            assert scanned and max(scanned) <= 2  # of 17 blocks
            # Deleted: still in the graph, never answered.
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM agent_messages WHERE id = 1")
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 3)
            assert hits and 1 not in {hit.position for hit in hits}

    asyncio.run(run())


def test_a_graph_deleted_under_a_running_process_costs_a_scan_and_memchat_index_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 300)
    path = tmp_path / "m.db"

    async def run() -> None:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(599)])
            (made,) = graph_files(path)
            (graph.folder(path) / made).unlink()
            async with opened(str(path)) as other:
                hits = await other.memory("ann").nearest(EMBEDDER, vector("volvo"), 3)
                assert hits and hits[0].position == 1
                await other.memory("ann").index_vectors(EMBEDDER)
                (again,) = graph_files(path)
                assert again != made
            # The first process, which had the old graph open, goes on with the new one.
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 3)
            assert hits and hits[0].position == 1

    asyncio.run(run())


def test_a_graph_whose_vectors_were_mostly_replaced_is_made_again_not_extended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 300)
    path = tmp_path / "m.db"

    async def run() -> tuple[int, int]:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(399)])
            (made,) = graph_files(path)
            before = graph.Graphs(path).size(made)
            # Every vector replaced, as memchat index --again does: new rows, the old ones deleted.
            with sqlite3.connect(path) as db:
                stored = db.execute("SELECT message_id, vector FROM memchat_vectors").fetchall()
            await memory.save_vectors(EMBEDDER, [(at, "", bytes(kept)) for at, kept in stored])
            await memory.index_vectors(EMBEDDER)
            (again,) = graph_files(path)
            hits = await memory.nearest(EMBEDDER, vector("volvo"), 3)
            assert hits and hits[0].position == 1
            return before, graph.Graphs(path).size(again)

    before, after = asyncio.run(run())
    assert before == 400
    assert after == 400  # extended, it would hold 800: 400 of them deleted


def test_a_search_that_reads_a_long_history_says_once_that_memchat_index_makes_it_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeOpenAI
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 100)
    monkeypatch.setattr(vector_index, "BLOCK_ENTRIES", 50)
    monkeypatch.setattr(SQLiteMemory, "index_vectors", lambda *args: asyncio.sleep(0, 0))  # written as by a fill

    async def run() -> list[list[str]]:
        notices = []
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(299)])
            for _ in range(2):
                semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
                for _ in range(2):
                    hits = await semantic.hits(memory, "which automobile do I own?", 3)
                    assert hits and hits[0].position == 1
                notices.append(semantic.notices())
                await semantic.aclose()
                monkeypatch.undo()  # memchat index, as the notice says
                monkeypatch.setattr(graph, "TAIL_MOST", 100)
                await memory.index_vectors(EMBEDDER)
                memory = store.memory("ann")
        return notices

    before, after = asyncio.run(run())
    assert len(before) == 1 and "memchat index --user ann makes it quick again" in before[0], before
    assert not after


def test_clear_deletes_the_users_graph_and_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 300)
    path = tmp_path / "m.db"

    async def run() -> None:
        async with opened(str(path)) as store:
            await planted(store.memory("ann"), texts(400))
            await planted(store.memory("bob"), ["my Volvo is red", *texts(399)])
            assert len(graph_files(path)) == 2
            await store.memory("ann").clear_session()
            assert len(graph_files(path)) == 1
            assert await store.memory("ann").nearest(EMBEDDER, vector("volvo"), 3) == []
            hits = await store.memory("bob").nearest(EMBEDDER, vector("volvo"), 3)
            assert hits and hits[0].position == 401

    asyncio.run(run())


def test_postgresql_without_pgvector_searches_in_memory_and_says_so_once(tmp_path: Path, server: FakeOpenAI) -> None:
    location = fresh_store("postgres", tmp_path)

    async def run() -> None:
        async with opened(location) as store:
            store.pgvector = False  # type: ignore[attr-defined]  # as on a server without the extension
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(100)])
            semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
            for _ in range(3):
                hits = await semantic.hits(memory, "which automobile do I own?", 3)
                assert hits and hits[0].position == 1
            notices = semantic.notices()
            await semantic.aclose()
            assert len(notices) == 1 and "has no pgvector" in notices[0] and "docs/recall.md says how" in notices[0]

    asyncio.run(run())


def test_postgresql_vectors_from_before_pgvector_are_searched_in_the_database(tmp_path: Path) -> None:
    location = fresh_store("postgres", tmp_path)
    require_pgvector(location)

    async def plant() -> None:
        async with opened(location) as store:
            store.pgvector = False  # type: ignore[attr-defined]  # written as before pgvector: no copy for it
            await planted(store.memory("ann"), ["my Volvo is red", *texts(1500)])

    async def search() -> None:
        async with opened(location) as store:
            hits = await store.memory("ann").nearest(EMBEDDER, vector("automobile"), 3)
            assert hits and hits[0].position == 1

    asyncio.run(plant())
    asyncio.run(search())


def vectors_of(path: Path, user: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM memchat_vectors WHERE session_id = ?", (user,)).fetchone()[0])


def test_memchat_index_embeds_a_whole_history_at_once_and_goes_on_after_a_failure(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    async def plant() -> None:
        async with opened(str(memchat.db)) as store:  # written with search by meaning off
            await store.memory("ann").add_items([{"role": "user", "content": text} for text in texts(300)])
            await store.memory("bob").add_items([{"role": "user", "content": "my Volvo is red"}])

    asyncio.run(plant())
    env = {"MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    server.embedding_status = 500
    failed = memchat("index", "--user", "ann", **env)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: embedding model") and "run it again" in failed.stderr
    server.embedding_status = None
    done = memchat("index", "--user", "ann", **env)
    assert done.returncode == 0 and "ann: 300 messages embedded" in done.stderr
    assert vectors_of(memchat.db, "ann") == 300 and vectors_of(memchat.db, "bob") == 0
    every = memchat("index", "--all", **env)
    assert "ann: every message has its vector" in every.stderr and "bob: 1 messages embedded" in every.stderr


def test_memchat_index_again_embeds_every_message_anew_and_says_a_failure_starts_over(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    async def plant() -> None:
        async with opened(str(memchat.db)) as store:
            await store.memory("ann").add_items([{"role": "user", "content": text} for text in texts(100)])

    asyncio.run(plant())
    env = {"MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    assert "ann: 100 messages embedded" in memchat("index", "--user", "ann", **env).stderr
    assert "ann: every message has its vector" in memchat("index", "--user", "ann", **env).stderr
    with sqlite3.connect(memchat.db) as db:
        first = db.execute("SELECT MIN(seq) FROM memchat_vectors").fetchone()[0]
    server.embedding_status = 500
    failed = memchat("index", "--user", "ann", "--again", **env)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: embedding model") and "it starts over" in failed.stderr
    server.embedding_status = None
    done = memchat("index", "--user", "ann", "--again", **env)
    assert done.returncode == 0 and "ann: 100 messages embedded" in done.stderr, done.stderr
    with sqlite3.connect(memchat.db) as db:
        # Each message has one vector still, every one of them written again.
        assert db.execute("SELECT COUNT(*), MIN(seq) > ? FROM memchat_vectors", (first + 99,)).fetchone() == (100, 1)


def test_memchat_index_gives_messages_without_text_an_empty_vector_without_asking_the_server(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    async def plant() -> None:
        async with opened(str(memchat.db)) as store:
            await store.memory("ann").add_items([{"role": "assistant", "content": ""}] * 3)

    asyncio.run(plant())
    run = memchat("index", "--user", "ann", MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
    assert run.returncode == 0 and "ann: 3 messages embedded" in run.stderr, run.stderr
    assert vectors_of(memchat.db, "ann") == 3
    assert not [r for r in server.requests if r.path.endswith("/embeddings")]


def test_memchat_index_without_an_embedding_model_says_how_to_name_one(memchat: Memchat) -> None:
    run = memchat("index")
    assert run.returncode == 2
    assert run.stderr.startswith("error: search by meaning is off") and "MEMCHAT_EMBEDDING_MODEL" in run.stderr


def test_a_turn_says_once_that_memchat_index_embeds_a_long_history_at_once(memchat: Memchat) -> None:
    async def plant() -> None:
        async with opened(str(memchat.db)) as store:
            await store.memory("user1").add_items([{"role": "user", "content": text} for text in texts(1200)])

    asyncio.run(plant())
    run = memchat(input="hello\n", MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
    assert run.stderr.count("memchat index") == 1 and "more than 1,000 messages with no vector" in run.stderr


def test_redis_holds_only_the_newest_vectors_of_a_user_in_memory(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semantic_module, "HELD_MOST", 100)
    location = fresh_store("redis", tmp_path)

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            await planted(memory, ["my Volvo is red", *texts(150), "my Volvo is blue"])
            semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
            hits = await semantic.hits(memory, "which automobile do I own?", 200)
            await semantic.aclose()
            # The newest 100 are searched by meaning; the first Volvo, 152 messages back, is past the limit.
            assert len(hits) == 100 and hits[0].position == 152
            assert 1 not in {hit.position for hit in hits}

    asyncio.run(run())


def test_a_long_postgresql_history_is_searched_through_the_index_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "EXACT_UP_TO", 100)
    location = fresh_store("postgres", tmp_path)
    require_pgvector(location)

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            await planted(memory, texts(1500))
            await memory.nearest(EMBEDDER, vector("w1 w2 w3"), 10)

    asyncio.run(run())

    async def scans() -> int:
        import asyncpg

        conn = await asyncpg.connect(location)
        try:
            # The planner, seeing the user's filter, had read every row of the user and sorted them.
            return int(
                await conn.fetchval(
                    "SELECT COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_indexes "
                    "WHERE indexrelname LIKE 'idx_memchat_vectors_bits_%'"
                )
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 5  # a server reports an index's scans within a second or so
    while asyncio.run(scans()) < 1:
        assert time.monotonic() < deadline, "the search never went through the index"
        time.sleep(0.2)


def test_what_has_no_vector_is_found_among_the_newest_and_in_older_gaps(location: str) -> None:
    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            written = texts(20)
            positions = await planted(memory, written)
            assert await memory.unembedded(EMBEDDER, 10) == []
            await memory.add_items([{"role": "user", "content": "new one"}])
            newest = await memory.unembedded(EMBEDDER, 10)
            assert [text for _, text in newest] == ["new one"]
            # A vector written for another model leaves an older message without one of this model.
            await memory.save_vectors("another", [(positions[3], written[3], vector("x"))])
            found = await memory.unembedded(EMBEDDER, 10)
            assert [at for at, _ in found] == [newest[0][0], positions[3]]

    asyncio.run(run())


def test_once_a_history_is_all_embedded_what_lacks_a_vector_is_found_without_counting_it(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    async def run() -> None:
        async with opened(str(tmp_path / "memory.db")) as store:
            memory = store.memory("ann")
            await memory.add_items([{"role": "user", "content": text} for text in texts(30)])
            # memchat index embeds everything, and leaves the mark behind it.
            semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
            assert await semantic.embed_all(memory) == 30
            await semantic.aclose()
            # Nothing new since the mark: the look writes nothing (a write takes the file's lock each start).
            looked: list[str] = []
            await store.run(lambda conn: conn.set_trace_callback(looked.append))  # type: ignore[attr-defined]
            assert await memory.unembedded(EMBEDDER, 10) == []
            await store.run(lambda conn: conn.set_trace_callback(None))  # type: ignore[attr-defined]
            assert looked and not any("INSERT" in statement for statement in looked), looked
            await memory.add_items([{"role": "user", "content": "new one"}])
            statements: list[str] = []
            await store.run(lambda conn: conn.set_trace_callback(statements.append))  # type: ignore[attr-defined]
            assert [text for _, text in await memory.unembedded(EMBEDDER, 10)] == ["new one"]
            await store.run(lambda conn: conn.set_trace_callback(None))  # type: ignore[attr-defined]
            # A run's start looks only past the mark: counting a million messages took 1.2 s on a cold disk.
            assert statements and not any("COUNT(" in statement for statement in statements), statements

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_past_the_embedded_mark_only_what_came_after_it_is_looked_at(
    kind: str, tmp_path: Path, server: FakeOpenAI
) -> None:
    location = fresh_store(kind, tmp_path)

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            await memory.add_items([{"role": "user", "content": text} for text in texts(20)])
            semantic = semantic_for(server, MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
            await semantic.embed_all(memory)
            await semantic.aclose()
            # A vector gone from below the mark (no memchat does this) is not looked for: nothing is counted.
            first = min(row[0] for row in (await memory.vectors(EMBEDDER)).rows)
            delete = f"DELETE FROM memchat_vectors WHERE message_id = {first}"
            if kind == "sqlite":
                with sqlite3.connect(location) as db:
                    db.execute(delete)
            else:
                import asyncpg

                conn = await asyncpg.connect(location)
                await conn.execute(delete)
                await conn.close()
            await memory.add_items([{"role": "user", "content": "new one"}])
            assert [text for _, text in await memory.unembedded(EMBEDDER, 10)] == ["new one"]
            # /clear takes the mark with the memory: a new history is counted afresh.
            await memory.clear_session()
            await memory.add_items([{"role": "user", "content": "after the clear"}])
            assert [text for _, text in await memory.unembedded(EMBEDDER, 10)] == ["after the clear"]

    asyncio.run(run())


def test_a_runs_first_search_is_made_at_its_start_once_not_on_the_first_question(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 100)

    async def run() -> None:
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            await planted(memory, texts(300))
        # A new process: a first search costs more than later ones (numpy's first calls, statements
        # prepared, the top of the tables' trees read, the graph's first walk).
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            statements: list[str] = []
            await store.run(lambda conn: conn.set_trace_callback(statements.append))  # type: ignore[attr-defined]
            await memory.prepare_search(EMBEDDER)
            searched = [statement for statement in statements if "FROM memchat_vectors WHERE seq IN" in statement]
            assert len(searched) == 1, statements
            statements.clear()
            # Each question prepares again (it may be the first): once made, no search for nothing.
            await memory.prepare_search(EMBEDDER)
            assert not any("FROM memchat_vectors WHERE seq IN" in statement for statement in statements)
            assert await memory.nearest(EMBEDDER, vector("w1 w2 w3"), 3)

    asyncio.run(run())


def test_a_run_opens_its_graph_while_the_http_client_loads(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "TAIL_MOST", 100)
    path = tmp_path / "m.db"

    async def plant() -> None:
        async with opened(str(path)) as store:
            await planted(store.memory("ann"), texts(300))

    asyncio.run(plant())
    opened_graph = threading.Event()
    readable = graph.Graphs.readable

    def marked(self: graph.Graphs, name: str) -> bool:
        found = readable(self, name)
        opened_graph.set()
        return found

    client = semantic_module.Semantic.__init__

    def slow_client(self: Any, settings: Any) -> None:
        # The HTTP client's import takes 0.7 s: the graph opens meanwhile, not after it.
        assert opened_graph.wait(10), "the graph waited for the HTTP client"
        client(self, settings)

    monkeypatch.setattr(graph.Graphs, "readable", marked)
    monkeypatch.setattr(semantic_module.Semantic, "__init__", slow_client)
    settings = load_settings(
        user="ann",
        env={"OPENAI_BASE_URL": server.url, "HOME": "/nonexistent", "MEMCHAT_EMBEDDING_MODEL": EMBEDDER},
    )

    async def start() -> None:
        async with opened(str(path)) as store:
            conversation = Conversation(settings, store)
            await asyncio.wait_for(conversation.catch_up(), 20)
            await conversation.runners.aclose()

    asyncio.run(start())


def test_a_postgresql_runs_first_search_is_made_at_its_start_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "EXACT_UP_TO", 100)  # past it, the HNSW index answers
    location = fresh_store("postgres", tmp_path)
    require_pgvector(location)
    made: list[int] = []
    nearest = postgres.PostgresMemory.nearest

    async def counted(self: Any, model: str, query: bytes, limit: int, before: int | None = None) -> Any:
        made.append(limit)
        return await nearest(self, model, query, limit, before)

    async def run() -> None:
        async with opened(location) as store:
            await planted(store.memory("ann"), texts(300))
        monkeypatch.setattr(postgres.PostgresMemory, "nearest", counted)
        # A new process: its first query on pgvector's types and index costs more than later ones.
        async with opened(location) as store:
            memory = store.memory("ann")
            await memory.prepare_search(EMBEDDER)
            await memory.prepare_search(EMBEDDER)
            assert made == [1]  # one search for nothing, once
            assert await memory.nearest(EMBEDDER, vector("w1 w2 w3"), 3)

    asyncio.run(run())


def test_two_sessions_starting_at_once_share_one_search_client(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memchat.conversation import Runners

    made: list[object] = []
    client = semantic_module.Semantic.__init__

    def slow_client(self: Any, settings: Any) -> None:
        made.append(self)
        time.sleep(0.3)  # the HTTP client's import: both starts are inside it at once
        client(self, settings)

    monkeypatch.setattr(semantic_module.Semantic, "__init__", slow_client)
    settings = load_settings(
        user="ann", env={"OPENAI_BASE_URL": server.url, "HOME": "/nonexistent", "MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    )

    async def start() -> None:
        async with opened(str(tmp_path / "m.db")) as store:
            runners = Runners(settings)  # one a process, as the web page's sessions share
            ann = Conversation(settings, store, runners)
            bob = Conversation(replace(settings, user="bob"), store, runners)
            await asyncio.wait_for(asyncio.gather(ann.catch_up(), bob.catch_up()), 20)
            await runners.aclose()

    asyncio.run(start())
    assert len(made) == 1, made


def test_memchat_index_makes_an_older_postgresql_vector_index_again_in_todays_shape(
    tmp_path: Path, memchat: Memchat, server: FakeOpenAI
) -> None:
    location = fresh_store("postgres", tmp_path)
    require_pgvector(location)
    index = "idx_memchat_vectors_bits_384"

    async def sql(statement: str) -> Any:
        import asyncpg

        conn = await asyncpg.connect(location)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    async def plant() -> str | None:
        async with opened(location) as store:
            await planted(store.memory("ann"), ["my Volvo is red", *texts(300)])
        # As an older memchat made it: pgvector's own shape (16 links a node).
        await sql(f"DROP INDEX {index}")
        await sql(
            f"CREATE INDEX {index} ON memchat_vectors USING hnsw ((binary_quantize(embedding)::bit(384)) "
            "bit_hamming_ops) WHERE vector_dims(embedding) = 384"
        )
        # And a spare left by a rebuild cut short, in the old shape: it must not be taken for the new index.
        await sql(
            f"CREATE INDEX {index}_new ON memchat_vectors USING hnsw ((binary_quantize(embedding)::bit(384)) "
            "bit_hamming_ops) WHERE vector_dims(embedding) = 384"
        )
        async with opened(location) as store:
            return store.memory("ann").vector_search_note

    note = asyncio.run(plant())
    assert note is not None and "memchat index makes it again" in note
    run = memchat("index", "--db", location, "--user", "ann", MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
    assert run.returncode == 0, run.stderr
    assert "the vector index was made again, in today's shape" in run.stderr
    options = asyncio.run(sql(f"SELECT reloptions FROM pg_class WHERE relname = '{index}'"))
    assert f"m={postgres.GRAPH_LINKS}" in options
    spares = "SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'idx_memchat_vectors_bits_384_%'"
    assert asyncio.run(sql(spares)) == 0

    async def search() -> tuple[str | None, int]:
        async with opened(location) as store:
            memory = store.memory("ann")
            hits = await memory.nearest(EMBEDDER, vector("automobile"), 3)
            return memory.vector_search_note, hits[0].position if hits else 0

    assert asyncio.run(search()) == (None, 1)
    again = memchat("index", "--db", location, "--user", "ann", MEMCHAT_EMBEDDING_MODEL=EMBEDDER)
    assert "made again" not in again.stderr  # once only
