"""Recall: every message is indexed with its turn, searched per user, and brought back into the request."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI, request_tokens
from memchat.stores.sqlite import MIGRATIONS, SQLiteStore
from support import Memchat, exchange, fresh_store, opened


def found(location: str, user: str, query: str) -> list[str]:
    """The user messages of the exchanges a search finds, best first."""

    async def search() -> list[str]:
        async with opened(location) as store:
            memory = store.memory(user)
            texts = []
            for hit in await memory.search(query, 10):
                turn = await memory.turn_at(hit.position)
                if turn is not None and turn.items[0]["content"] not in texts:
                    texts.append(turn.items[0]["content"])
            return texts

    return asyncio.run(search())


def write(location: str, user: str, *texts: str) -> None:
    async def add() -> None:
        async with opened(location) as store:
            for text in texts:
                await store.memory(user).add_items(exchange(text))

    asyncio.run(add())


def test_every_message_is_indexed_with_its_turn_and_found_by_its_words(location: str) -> None:
    write(location, "ann", "my sister Ingrid lives in Bergen", "I repaired the bicycle", "Émile plays the cello")
    assert found(location, "ann", "where does my sister live?") == ["my sister Ingrid lives in Bergen"]
    # Folding everywhere: "emile" finds "Émile", "BICYCLE" finds "bicycle".
    assert found(location, "ann", "emile") == ["Émile plays the cello"]
    assert found(location, "ann", "BICYCLE") == ["I repaired the bicycle"]
    # Stems: "repairing" finds "repaired" (Redis's own index stems too, since 2026-12-03).
    assert found(location, "ann", "repairing bicycles") == ["I repaired the bicycle"]
    assert found(location, "ann", "what is it") == []  # nothing but stopwords


def test_search_never_crosses_users(location: str) -> None:
    write(location, "ann", "the password of the shed is tulip")
    write(location, "bob", "my shed is blue")
    assert found(location, "bob", "shed password tulip") == ["my shed is blue"]


def test_undo_clear_pop_and_replace_take_their_index_entries_with_them(location: str) -> None:

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            await memory.add_items(exchange("the kayak is red"))
            await memory.add_items(exchange("the canoe is green"))
            assert len(await memory.search("canoe", 5)) == 2
            await memory.undo()
            assert await memory.search("canoe", 5) == []
            await memory.add_items(exchange("the raft is yellow"))
            newest = await anext(aiter(memory.turns_backward(0)))
            await memory.replace_turn(newest.start, exchange("the barge is grey"))
            assert await memory.search("raft", 5) == [] and len(await memory.search("barge", 5)) == 2
            await memory.pop_item()
            assert len(await memory.search("barge", 5)) == 1
            await memory.clear_session()
            assert await memory.search("kayak", 5) == []

    asyncio.run(run())


OLD_LAYOUT = """
CREATE TABLE agent_sessions (session_id TEXT PRIMARY KEY, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE agent_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    message_data TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE);
CREATE INDEX idx_agent_messages_session_id ON agent_messages (session_id, id);
CREATE TABLE memchat_passwords (user_id TEXT PRIMARY KEY, hash TEXT NOT NULL,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE memchat_summaries (session_id TEXT PRIMARY KEY, summary TEXT NOT NULL, through_id INTEGER NOT NULL,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
"""


def old_file(path: Path, messages: int) -> None:
    """A file as memchat wrote it before versions were kept (and as a plain SDK loop fills it)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_LAYOUT)
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('ann')")
        rows = []
        for n in range(messages // 2):
            rows += [json.dumps(item) for item in exchange(f"fact number {n} is the word w{n}")]
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES ('ann', ?)", [(r,) for r in rows]
        )


def test_todays_layout_is_upgraded_by_the_migrations_in_order(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_file(path, 4)
    asyncio.run(SQLiteStore(path).close())
    with sqlite3.connect(path) as conn:
        applied = conn.execute("SELECT version, name FROM memchat_migrations ORDER BY version").fetchall()
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert applied == [(n + 1, name) for n, (name, _) in enumerate(MIGRATIONS)]
    assert {"memchat_instructions", "memchat_search", "memchat_indexed"} <= tables
    assert found(str(path), "ann", "w1") == []  # not indexed until first use


def test_an_old_file_is_indexed_on_first_use_and_an_interrupted_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memchat.stores.sqlite

    path = tmp_path / "old.db"
    old_file(path, 600)
    monkeypatch.setattr(memchat.stores.sqlite, "INDEX_BATCH", 100)

    class StoppedError(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise StoppedError

    async def index(progress: object) -> int:
        async with opened(str(path)) as store:
            return await store.memory("ann").index_missing(progress)  # type: ignore[arg-type]

    with pytest.raises(StoppedError):
        asyncio.run(index(stop))
    assert found(str(path), "ann", "w3") == ["fact number 3 is the word w3"]  # the first batch stayed
    assert found(str(path), "ann", "w250") == []
    seen: list[tuple[int, int]] = []
    assert asyncio.run(index(lambda done, total: seen.append((done, total)))) == 500
    assert seen[-1] == (500, 500)
    assert found(str(path), "ann", "w250") == ["fact number 250 is the word w250"]
    assert asyncio.run(index(None)) == 0  # nothing left: the next start looks at nothing


def test_memchat_indexes_an_older_file_at_start(memchat: Memchat) -> None:
    old_file(memchat.db, 40)
    run = memchat("--user", "ann", input="/search w17\n")
    assert run.returncode == 0, run.stderr
    assert "you: fact number 17 is the word w17" in run.stdout


def test_a_fact_far_out_of_the_window_is_recalled_into_the_request(memchat: Memchat, server: FakeOpenAI) -> None:
    lines = ["my sister Ingrid lives in Bergen"] + [f"filler turn {n} about the weather" for n in range(60)]
    memchat("--context-tokens", "600", input="\n".join(lines) + "\n", timeout=120)
    memchat("--context-tokens", "600", input="where does my sister live?\n")
    request = next(r.body for r in reversed(server.requests) if "Update the memory summary" not in str(r.body))
    system = request["messages"][0]["content"]
    assert "recalled from your memory" in system and "my sister Ingrid lives in Bergen" in system
    assert re.search(r"\[\w+day \d{1,2} \w+ \d{4}\]\nuser: my sister Ingrid lives in Bergen", system)
    history = json.dumps(request["messages"][1:-1])
    assert "Ingrid" not in history  # it came by recall, not in the window
    # The whole request, instructions, recalled exchanges and history, stays within the budget.
    assert len(json.dumps(request["messages"])) / 4 <= 600


def test_every_request_stays_within_the_budget_with_recall_and_the_tools_offered(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    lines = [f"note {n}: the code for locker {n} is {n * 7919 % 10000}" for n in range(80)]
    lines += [f"what is the code for locker {n}?" for n in (3, 40, 77)]
    run = memchat("--context-tokens", "800", input="\n".join(lines) + "\n", timeout=120)
    assert run.returncode == 0, run.stderr
    chats = [r for r in server.requests if "Update the memory summary" not in str(r.body["messages"][0])]
    # Counted as the server counts them: the tools' names, descriptions and schemas too (about 250 tokens).
    assert all(request_tokens(r.body) <= 800 for r in chats), str([request_tokens(r.body) for r in chats])
    asked = chats[-3:]
    for request, n in zip(asked, (3, 40, 77), strict=True):
        assert f"the code for locker {n} is {n * 7919 % 10000}" in json.dumps(request.body["messages"])


def test_search_prints_the_matching_exchanges_with_their_dates(memchat: Memchat) -> None:
    memchat("--user", "ann", input="my cat is called Miso\nthe weather is mild\n")
    run = memchat("--user", "ann", input="/search cat\n/search zebra\n")
    assert re.match(
        r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\]\nyou: my cat is called Miso\nassistant: You said: my cat", run.stdout
    )
    assert "weather" not in run.stdout
    assert "nothing in the memory of ann matches 'zebra'" in run.stderr
    assert "\x1b" not in run.stdout  # plain on a pipe


def test_a_memory_written_by_the_sdks_own_session_is_indexed_on_first_use(location: str) -> None:
    from support import close_sdk_session, sdk_session_for

    async def sdk_writes() -> None:
        async with opened(location):
            pass  # the tables, as a first memchat start makes them
        session = sdk_session_for(location, "ann")
        try:
            await session.add_items(exchange("the heron nests by the mill"))
        finally:
            await close_sdk_session(session)

    asyncio.run(sdk_writes())

    async def catch_up() -> int:
        async with opened(location) as store:
            return await store.memory("ann").index_missing()

    assert asyncio.run(catch_up()) >= 2
    assert found(location, "ann", "heron") == ["the heron nests by the mill"]
    write(location, "ann", "the otter swims at dawn")  # and memchat's own turns go on being indexed
    assert found(location, "ann", "otter") == ["the otter swims at dawn"]


def test_a_redis_memory_indexed_without_stems_is_indexed_again_by_stems_and_the_old_keys_go(tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    from memchat.stores.redis import OLD_INDEX_PREFIX, split_url

    location = fresh_store("redis", tmp_path)
    write(location, "ann", "I repaired the bicycle", "my sister Ingrid lives in Bergen")
    url, prefix = split_url(location)

    async def as_an_older_memchat_left_it() -> list[str]:
        # Today's index removed, and the one an older memchat kept put in its place: words as they are.
        client = aioredis.Redis.from_url(url, decode_responses=True)
        async with opened(location) as store:
            memory = store.memory("ann")
            vocabulary, session = memory._vocabulary_key, memory._session_key  # type: ignore[attr-defined]
        stemmed = [key async for key in client.scan_iter(match=f"{vocabulary}*")]
        await client.delete(*stemmed)
        await client.hdel(session, "memchat_stems_indexed")
        old = vocabulary.replace("memchat:stems", OLD_INDEX_PREFIX)
        await client.sadd(old, "repaired", "bicycle")
        await client.zadd(f"{old}:repaired", {"1": 1})
        await client.zadd(f"{old}:bicycle", {"1": 1})
        await client.hset(session, "memchat_indexed", 4)
        await client.aclose()
        return stemmed

    async def first_use() -> tuple[int, list[str], bool]:
        async with opened(location) as store:
            indexed = await store.memory("ann").index_missing()
        client = aioredis.Redis.from_url(url, decode_responses=True)
        left = [key async for key in client.scan_iter(match=f"{OLD_INDEX_PREFIX}:{prefix}:*")]
        marked = bool(await client.hexists(f"{prefix}:ann", "memchat_indexed"))
        await client.aclose()
        return indexed, left, marked

    assert asyncio.run(as_an_older_memchat_left_it())  # there was a stemmed index to remove
    assert found(location, "ann", "repairing") == []  # not yet indexed by stems
    assert asyncio.run(first_use()) == (4, [], False)
    assert found(location, "ann", "repairing bicycles") == ["I repaired the bicycle"]
    assert found(location, "ann", "where does my sister live?") == ["my sister Ingrid lives in Bergen"]


def test_forget_deletes_whole_exchanges_with_their_index_entries_on_every_store(location: str) -> None:
    from memchat.errors import StoreError
    from memchat.stores.protocol import Summary, Turn

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            for text in ("the kayak is red", "my bank pin is 4321", "the canoe is green", "the raft is yellow"):
                await memory.add_items(exchange(text))
            turns = [turn async for turn in memory.turns_forward(0, 2**62)]
            await memory.save_summary(Summary("Boats and a pin.", turns[1].end))
            # A turn not covered by the summary: the summary stays.
            assert await memory.forget([turns[3]]) is False
            assert (await memory.summary()) is not None
            # A turn the summary covered: it goes too, since it may mention what was forgotten.
            assert await memory.forget([turns[1]]) is True
            assert await memory.summary() is None
            assert await memory.get_items() == [*exchange("the kayak is red"), *exchange("the canoe is green")]
            assert await memory.search("bank pin 4321", 5) == []
            assert len(await memory.search("canoe", 5)) == 2  # what stayed is still found
            stale = Turn(turns[0].start, turns[0].end, exchange("something else"))
            with pytest.raises(StoreError, match="nothing was forgotten"):
                await memory.forget([stale])
            assert len(await memory.get_items()) == 4

    asyncio.run(run())


def test_forget_on_a_pipe_deletes_what_search_shows(memchat: Memchat) -> None:
    memchat(input="my cat is called Miso\nthe weather is mild\n")
    run = memchat(input="/forget cat\n/search cat\n")
    assert run.returncode == 0, run.stderr
    assert "forgot 1 exchange matching 'cat'" in run.stderr
    assert "nothing in the memory of user1 matches 'cat'" in run.stderr
    assert [text for _, text in memchat.stored("user1")] == ["the weather is mild", "You said: the weather is mild"]


def test_the_model_can_search_memory_with_a_tool_and_its_steps_are_stored_paired(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    # Recall off and a small budget: only the tool can bring the fact back.
    lines = ["my heron is called Pip"] + [f"filler turn {n} about the weather" for n in range(40)]
    memchat("--context-tokens", "900", input="\n".join(lines) + "\n", MEMCHAT_RECALL="off", timeout=120)
    run = memchat("--context-tokens", "900", input="who is [[lookup:heron]]?\n", MEMCHAT_RECALL="off")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("From memory: Earlier messages") and "user: my heron is called Pip" in run.stdout
    answering = next(r.body for r in reversed(server.requests) if "tools" in r.body)
    assert [tool["function"]["name"] for tool in answering["tools"]] == ["search_memory", "remember", "forget_memory"]
    speakers = [speaker for speaker, _ in memchat.stored("user1")]
    assert speakers[-4:] == ["you", "tool", "tool", "assistant"]  # call and output, in the turn
    # The request that answered stayed within the budget, the tools and the tool's findings included.
    assert request_tokens(answering) <= 900


def test_a_server_that_refuses_tools_is_told_once_and_the_chat_goes_on(memchat: Memchat, server: FakeOpenAI) -> None:
    server.no_tools = True
    run = memchat(input="hello\nhello again\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "You said: hello\nYou said: hello again\n"
    assert run.stderr.count("does not take tools: carrying on without the search_memory tool") == 1
    assert "tools" not in server.requests[-1].body


def test_memchat_tools_off_offers_no_tool(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="hello\n", MEMCHAT_TOOLS="off")
    assert "tools" not in server.requests[-1].body
    bad = memchat(input="hello\n", MEMCHAT_TOOLS="maybe")
    assert bad.returncode == 2 and bad.stderr == "error: MEMCHAT_TOOLS is 'maybe': use on or off\n"


def built_requests(location: str, concurrently: int) -> tuple[list[str], int]:
    """Requests for one question built at once on one memory, as several pages of one user may, and
    how many transactions a request took on PostgreSQL (0 elsewhere)."""
    from dataclasses import replace

    from config import load_settings
    from memchat.turn import TurnRunner

    async def build() -> tuple[list[str], int]:
        async with opened(location) as store:
            memory = store.memory("ann")
            await memory.add_items(exchange("my sister Ingrid lives in Bergen"))
            for n in range(40):
                await memory.add_items(exchange(f"filler {n} " + "w" * 200))
            settings = load_settings(env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
            runner = TurnRunner(replace(settings, context_tokens=1500, recall=True))
            question = "where does my sister live?"
            transactions = 0
            if location.startswith("postgresql"):
                from sqlalchemy import event

                def began(*_: object) -> None:
                    nonlocal transactions
                    transactions += 1

                event.listen(store._engine.sync_engine, "begin", began)  # type: ignore[attr-defined]
                await runner.request_for(memory, question)
                event.remove(store._engine.sync_engine, "begin", began)  # type: ignore[attr-defined]
            built = await asyncio.gather(*(runner.request_for(memory, question) for _ in range(concurrently)))
            await runner.aclose()
            return [json.dumps(request.items) + request.instructions for request in built], transactions

    return asyncio.run(build())


def test_requests_built_at_once_on_one_memory_each_read_it_whole(location: str) -> None:
    requests, _ = built_requests(location, concurrently=6)
    assert "Ingrid lives in Bergen" in requests[0]  # recalled from beyond the window
    assert len(set(requests)) == 1


def test_a_request_on_postgresql_is_read_in_a_few_transactions_not_one_a_read(tmp_path: Path) -> None:
    # Each on its own costs a connection check, BEGIN and COMMIT: most of the time of a dozen reads.
    _, transactions = built_requests(fresh_store("postgres", tmp_path), concurrently=1)
    assert 0 < transactions <= 4


def test_what_a_tool_returned_is_recalled_like_a_message(tmp_path: Path) -> None:
    from memchat.context.budget import TokenEstimator
    from memchat.context.recall import recall

    async def run() -> str:
        async with opened(str(tmp_path / "tools.db")) as store:
            memory = store.memory("ann")
            await memory.add_items(
                [
                    {"role": "user", "content": "what does the forecast say for the trip?"},
                    {"type": "function_call", "call_id": "c1", "name": "forecast", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "hailstorm over Tromsø on Thursday"},
                    {"role": "assistant", "content": "Pack a good coat."},
                ]
            )
            for n in range(30):
                await memory.add_items(exchange(f"unrelated chat number {n}"))
            found = await recall(memory, "when is the hailstorm?", 1_000, TokenEstimator())
            return found.text

    text = asyncio.run(run())
    assert "tool: hailstorm over Tromsø on Thursday" in text
    assert "assistant: Pack a good coat." in text
