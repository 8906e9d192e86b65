"""memchat's memories are the Agents SDK's sessions in fact, and stay right when the SDK's own classes share them.

Each test runs on every store. This file is type-checked with the package
(``mypy``), so handing a memory to ``Runner.run(session=...)`` is checked too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from agents.memory import Session
from agents.testing import ScriptedModel

from memchat.context.budget import TokenEstimator, build_context
from memchat.errors import StoreError
from memchat.stores.base import END
from memchat.stores.protocol import Summary
from memchat.stores.redis import split_url
from support import close_sdk_session, fresh_store, opened, sdk_session_for


def turn(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


def assistant_message(text: str) -> Any:
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    return ResponseOutputMessage(
        id="msg_1",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])],
    )


@pytest.mark.anyio
async def test_a_memory_is_an_sdk_session_and_runs_an_agent(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        assert isinstance(memory, Session)
        agent: Agent[None] = Agent(name="t", model=ScriptedModel([[assistant_message("Hello Alice")]]))
        result = await Runner.run(agent, "hi, I'm Alice", session=memory)
        assert result.final_output == "Hello Alice"
        stored = [dict(item) for item in await memory.get_items()]
        assert [(item.get("role"), item.get("content")) for item in stored][:1] == [("user", "hi, I'm Alice")]


@pytest.mark.anyio
async def test_session_settings_limit_applies_when_no_limit_is_given(location: str) -> None:
    from agents import SessionSettings

    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("one") + turn("two"))
        memory.session_settings = SessionSettings(limit=3)
        assert await memory.get_items() == turn("one")[1:] + turn("two")
        assert await memory.get_items(limit=1) == turn("two")[1:]


@pytest.mark.anyio
async def test_the_sdks_clear_session_takes_memchats_summary_with_it(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("my name is Alice") + turn("I like tea"))
        ends = [t.end async for t in memory.turns_forward(0, END)]
        await memory.save_summary(Summary("The user is Alice.", ends[0]))
    session = sdk_session_for(location, "alice")
    try:
        await session.clear_session()
        await session.add_items(turn("a new start"))
    finally:
        await close_sdk_session(session)
    async with opened(location) as store:
        memory = store.memory("alice")
        assert await memory.summary() is None
        context = await build_context(memory, 8000, TokenEstimator())
        assert context.summary is None
        assert context.items == turn("a new start")


@pytest.mark.anyio
async def test_turns_added_after_the_sdks_pop_item_reach_the_model(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("one") + turn("two"))
        ends = [t.end async for t in memory.turns_forward(0, END)]
        await memory.save_summary(Summary("one and two", ends[1]))
    session = sdk_session_for(location, "alice")
    try:
        await session.pop_item()
        await session.pop_item()
        await session.add_items(turn("three"))
    finally:
        await close_sdk_session(session)
    async with opened(location) as store:
        context = await build_context(store.memory("alice"), 8000, TokenEstimator())
        assert turn("three")[0] in context.items


@pytest.mark.anyio
async def test_a_row_that_is_not_json_is_skipped_not_fatal(location: str) -> None:
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.add_items(turn("one"))
    await write_raw(location, "alice", "not json {{{")
    async with opened(location) as store:
        memory = store.memory("alice")
        await memory.check_readable()
        assert await memory.get_items() == turn("one")
        assert await memory.get_items(limit=1) == turn("one")[1:]
        assert [t.items async for t in memory.turns_backward(0)] == [turn("one")]
        assert await memory.pop_item() == turn("one")[1]  # the bad row on top is dropped on the way
        assert await memory.get_items() == turn("one")[:1]


def test_a_row_that_is_not_json_does_not_stop_memchat(memchat: Any) -> None:
    memchat("--user", "alice", input="my name is Alice\n")
    asyncio.run(write_raw(str(memchat.db), "alice", "not json {{{"))
    run = memchat("--user", "alice", input="what's my name?\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Your name is Alice."


@pytest.mark.anyio
async def test_redis_keys_of_another_type_fail_the_write_and_keep_nothing(tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    location = fresh_store("redis", tmp_path)
    url, prefix = split_url(location)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    await client.set(f"{prefix}:alice", "a string, not the session hash")
    try:
        async with opened(location) as store:
            with pytest.raises(StoreError, match="another kind of value"):
                await store.memory("alice").add_items(turn("lost?"))
        assert await client.exists(f"{prefix}:alice:messages") == 0
    finally:
        await client.aclose()


async def write_raw(location: str, user: str, data: str) -> None:
    """Append a row as another program might, bypassing memchat."""
    if location.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(location)
        await conn.execute("INSERT INTO agent_messages (session_id, message_data) VALUES ($1, $2)", user, data)
        await conn.close()
    elif location.startswith("redis"):
        import redis.asyncio as aioredis

        url, prefix = split_url(location)
        client = aioredis.Redis.from_url(url)
        await client.rpush(f"{prefix}:{user}:messages", data)
        await client.aclose()
    else:
        import sqlite3

        with sqlite3.connect(location) as conn:
            conn.execute("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", (user, data))
