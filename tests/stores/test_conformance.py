"""The promises every store keeps: each test runs on SQLite, PostgreSQL and Redis.

A store joins memchat by passing this file. The PostgreSQL and Redis cases
need the servers (see ``conftest.POSTGRES_URL`` and ``REDIS_URL``): outside CI
a case whose server is down is skipped with the reason, under CI it fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memchat.items import Item, describe
from memchat.stores.base import END, PAGE_ROWS
from memchat.stores.protocol import Summary
from support import AGENT, Memchat, assert_alternates, close_sdk_session, opened, sdk_session_for, stored_items

ODD_IDS = [
    "x'); DROP TABLE agent_messages;--",
    "Zoë 👋 مرحبا",
    "../../etc/passwd",
    "a*b?[c]",
    "name with spaces",
]
ODD_TEXT = 'héllo 👋 مرحبا \x00 \t \'; DELETE FROM agent_sessions; -- \\u0000 %s {} "quoted"'


def turn(text: str) -> list[Item]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


@pytest.mark.anyio
async def test_memory_survives_reopening_the_store(location: str) -> None:
    async with opened(location) as store:
        await store.memory("alice").add_items(turn("my name is Alice"))
    async with opened(location) as store:
        assert await store.memory("alice").get_items() == turn("my name is Alice")


@pytest.mark.anyio
async def test_users_do_not_see_each_other(location: str) -> None:
    async with opened(location) as store:
        await store.memory("alice").add_items(turn("a"))
        await store.memory("bob").add_items(turn("b"))
        assert await store.memory("alice").get_items() == turn("a")
        assert await store.memory("bob").get_items() == turn("b")
        assert await store.memory("carol").get_items() == []


@pytest.mark.anyio
async def test_clear_wipes_only_that_user_and_their_summary(location: str) -> None:
    async with opened(location) as store:
        alice, bob = store.memory("alice"), store.memory("bob")
        await alice.add_items(turn("a"))
        await alice.save_summary(Summary("Alice likes tea.", (await alice.summary() or Summary("", 0)).through + 1))
        await bob.add_items(turn("b"))
        await alice.clear_session()
        assert await alice.get_items() == []
        assert await alice.summary() is None
        assert await bob.get_items() == turn("b")
        assert [user.user for user in await store.users()] == ["bob"]


@pytest.mark.anyio
async def test_users_lists_everyone_with_counts_most_recent_first(location: str) -> None:
    async with opened(location) as store:
        await store.memory("old").add_items(turn("1"))
        await store.memory("busy").add_items(turn("1") + turn("2"))
        if location.startswith("redis"):
            await asyncio.sleep(1.1)  # Redis keeps the SDK's whole-second timestamps
        await store.memory("new").add_items(turn("1"))
        users = await store.users()
    assert users[0].user == "new"
    assert {user.user: user.messages for user in users} == {"old": 2, "busy": 4, "new": 2}


@pytest.mark.anyio
async def test_undo_removes_the_last_exchange_with_its_tool_calls(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("first"))
        tool_turn: list[Item] = [
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "assistant", "content": "sunny"},
        ]
        await memory.add_items(tool_turn)
        assert await memory.undo() == 4
        assert await memory.get_items() == turn("first")
        assert await memory.undo() == 2
        assert await memory.undo() == 0
        assert await memory.count() == 0


@pytest.mark.anyio
async def test_pop_item_removes_the_newest_item(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("one"))
        assert await memory.pop_item() == turn("one")[1]
        assert await memory.get_items() == turn("one")[:1]
        assert await memory.pop_item() == turn("one")[0]
        assert await memory.pop_item() is None


@pytest.mark.anyio
async def test_turns_read_whole_and_in_order_across_many_pages(location: str) -> None:
    count = PAGE_ROWS * 3 + 5  # turns, so items span several pages
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items([item for n in range(count) for item in turn(str(n))])
        backward = [t async for t in memory.turns_backward(0)]
        forward = [t async for t in memory.turns_forward(0, END)]
        assert [t.items for t in backward] == [turn(str(n)) for n in reversed(range(count))]
        assert [t.items for t in forward] == [turn(str(n)) for n in range(count)]
        assert [(t.start, t.end) for t in forward] == [(t.start, t.end) for t in reversed(backward)]
        assert all(t.start < t.end for t in forward)
        # Positions are bookmarks: reading after one picks up exactly the turns after it.
        middle = forward[count // 2]
        after = [t async for t in memory.turns_backward(middle.end)]
        assert [t.items for t in after] == [turn(str(n)) for n in reversed(range(count // 2 + 1, count))]
        assert await memory.last_turns(2) == turn(str(count - 2)) + turn(str(count - 1))
        assert await memory.get_items(limit=3) == turn(str(count - 2))[1:] + turn(str(count - 1))
        assert await memory.count() == count * 2


@pytest.mark.anyio
async def test_summary_never_moves_backward_and_never_outlives_its_turns(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        for n in range(4):
            await memory.add_items(turn(str(n)))
        ends = [t.end async for t in memory.turns_forward(0, END)]
        await memory.save_summary(Summary("through turn 2", ends[2]))
        await memory.save_summary(Summary("through turn 1, late", ends[1]))  # a slower process
        assert await memory.summary() == Summary("through turn 2", ends[2])
        await memory.clear_session()
        await memory.save_summary(Summary("a fold that finished after the clear", ends[3]))
        assert await memory.summary() is None


@pytest.mark.anyio
@pytest.mark.parametrize("user", ODD_IDS)
async def test_unicode_and_sql_looking_ids_and_messages_round_trip(location: str, user: str) -> None:
    async with opened(location) as store:
        await store.memory("bystander").add_items(turn("untouched"))
        memory = store.memory(user)
        await memory.add_items(turn(ODD_TEXT))
        assert await memory.get_items() == turn(ODD_TEXT)
        assert {stats.user for stats in await store.users()} == {user, "bystander"}
        assert await memory.undo() == 2
        assert await store.memory("bystander").get_items() == turn("untouched")


@pytest.mark.anyio
async def test_a_cancelled_write_stores_the_whole_turn_or_nothing(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        outcomes = set()
        for attempt in range(30):
            task = asyncio.ensure_future(memory.add_items(turn(f"turn {attempt}")))
            for _ in range(attempt % 6):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                outcomes.add("stored")
            except asyncio.CancelledError:
                outcomes.add("cancelled")
        items = await memory.get_items()
        assert [describe(item)[0] for item in items] == ["you", "assistant"] * (len(items) // 2)
        for question, answer in zip(items[::2], items[1::2], strict=True):
            assert answer["content"] == f"re: {question['content']}"
        # The store is still usable after all those interruptions.
        await memory.add_items(turn("after"))
        assert (await memory.get_items())[-2:] == turn("after")
    assert "cancelled" in outcomes


@pytest.mark.anyio
async def test_writers_racing_on_one_memory_never_interleave_turns(location: str) -> None:
    writers, turns_each = 8, 40

    async def writer(w: int) -> None:
        async with opened(location) as store:  # a connection of its own, as another process would have
            memory = store.memory("shared")
            for t in range(turns_each):
                text = f"w{w} t{t}"
                await memory.add_items([*turn(text)[:1], {"role": "assistant", "content": "thinking"}, turn(text)[1]])

    await asyncio.gather(*(writer(w) for w in range(writers)))
    async with opened(location) as store:
        items = await store.memory("shared").get_items()
    assert len(items) == writers * turns_each * 3
    for n in range(0, len(items), 3):
        question, thinking, answer = items[n : n + 3]
        assert (thinking["content"], answer["content"]) == ("thinking", f"re: {question['content']}")


@pytest.mark.anyio
async def test_the_agents_sdk_session_reads_what_memchat_wrote(location: str) -> None:
    async with opened(location) as store:
        await store.memory("alice").add_items(turn("my name is Alice") + turn(ODD_TEXT))
    session = sdk_session_for(location, "alice")
    try:
        assert await session.get_items() == turn("my name is Alice") + turn(ODD_TEXT)
        await session.add_items(turn("written by the SDK"))
    finally:
        await close_sdk_session(session)
    async with opened(location) as store:
        assert (await store.memory("alice").get_items())[-2:] == turn("written by the SDK")


# Through the program, as people use it.


def test_a_fact_told_in_one_run_is_known_in_the_next_and_clear_forgets_it(memchat: Memchat, location: str) -> None:
    told = memchat("--db", location, "--user", "alice", input="my name is Alice\n")
    assert told.returncode == 0, told.stderr
    asked = memchat("--db", location, "--user", "alice", input="what's my name?\n/users\n/history\n")
    assert asked.returncode == 0, asked.stderr
    assert "Your name is Alice." in asked.stdout
    assert "alice" in asked.stdout
    other = memchat("--db", location, "--user", "bob", input="what's my name?\n")
    assert "I don't know your name yet." in other.stdout
    undone = memchat("--db", location, "--user", "alice", input="/undo\n")
    assert undone.returncode == 0, undone.stderr
    assert_alternates([describe(item) for item in stored_items(location, "alice")])
    assert len(stored_items(location, "alice")) == 2
    cleared = memchat("--db", location, "--user", "alice", "--clear", input="what's my name?\n")
    assert cleared.returncode == 0, cleared.stderr
    assert "I don't know your name yet." in cleared.stdout


def test_a_failed_turn_leaves_nothing_behind(memchat: Memchat, location: str) -> None:
    run = memchat("--db", location, "--user", "alice", input="hello\nboom [[status:500]]\nagain\n")
    assert run.returncode == 1
    assert [text for _, text in map(describe, stored_items(location, "alice"))] == [
        "hello",
        "You said: hello",
        "again",
        "You said: again",
    ]


PROCESSES = 8
# The default run keeps the suite quick (most of the time is eight processes loading the SDK);
# the full count is MEMCHAT_CONCURRENCY_TURNS=25 .venv/bin/pytest tests/stores/test_conformance.py -k eight.
TURNS_EACH = int(os.environ.get("MEMCHAT_CONCURRENCY_TURNS", "10"))


def test_eight_processes_taking_turns_on_one_memory_lose_nothing(
    memchat: Memchat, location: str, report: list[str], tmp_path: Path
) -> None:
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, str(AGENT), "--db", location, "--user", "shared"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=memchat.cwd,
            env=memchat.env,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [
        proc.communicate("".join(f"p{p} turn {t}\n" for t in range(TURNS_EACH)).encode(), timeout=300)
        for p, proc in enumerate(procs)
    ]
    seconds = time.monotonic() - started
    done = sum(out.decode().count("You said: ") for out, _ in outputs)
    errors = [line for _, err in outputs for line in err.decode().splitlines() if line.startswith("error:")]
    items = stored_items(location, "shared")
    pairs = list(zip(items[::2], items[1::2], strict=False))
    whole = [q for q, a in pairs if q.get("role") == "user" and describe(a)[1] == f"You said: {q['content']}"]
    kind = location.split(":")[0] if "://" in location else "sqlite"
    report.append(
        f"concurrency on {kind}: {PROCESSES} processes x {TURNS_EACH} turns, {done} reported done, "
        f"{len(whole)} stored whole, {len(errors)} errors, {seconds:.1f} s"
    )
    assert errors == []
    assert [proc.returncode for proc in procs] == [0] * PROCESSES
    assert done == PROCESSES * TURNS_EACH
    assert len(items) == 2 * done
    assert len(whole) == done  # every turn is its question directly followed by its own answer
    for p in range(PROCESSES):
        mine = [q["content"] for q in whole if q["content"].startswith(f"p{p} ")]
        assert mine == [f"p{p} turn {t}" for t in range(TURNS_EACH)]
