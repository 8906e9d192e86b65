"""Long memory at flat cost: a token budget on whole turns, and a running summary."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI, conversation
from memchat.context.budget import TokenEstimator, build_context, day_tokens
from memchat.stores.base import PAGE_ROWS, RawRow
from memchat.stores.protocol import Summary
from memchat.stores.sqlite import SQLiteStore
from support import Memchat, assert_alternates


def turn(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {n} " + "x" * 40}, {"role": "assistant", "content": f"answer {n}"}]


def filled(tmp_path: Path, turns: int) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "m.db")
    memory = store.memory("alice")
    for n in range(turns):
        asyncio.run(memory.add_items(turn(n)))
    return store


def test_the_budget_keeps_the_newest_whole_turns(tmp_path: Path) -> None:
    memory = filled(tmp_path, 50).memory("alice")
    estimator = TokenEstimator()
    context = asyncio.run(build_context(memory, 200, estimator))
    assert context.overflow
    assert estimator.item_tokens(context.items) <= 200
    assert context.items[0]["role"] == "user"
    assert context.items[-1] == turn(49)[1]
    assert len(context.items) % 2 == 0


def test_a_tool_call_is_never_split_from_its_output(tmp_path: Path) -> None:
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    tool_turn = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny " * 30},
        {"role": "assistant", "content": "sunny"},
    ]
    asyncio.run(memory.add_items(tool_turn))
    asyncio.run(memory.add_items(turn(1)))
    estimator = TokenEstimator()
    whole = asyncio.run(build_context(memory, 10_000, estimator))
    dated = day_tokens(whole.turns, whole.days, estimator)  # today's line, before the first message
    tight = estimator.item_tokens(turn(1)) + estimator.item_tokens(tool_turn) + dated - 1
    context = asyncio.run(build_context(memory, tight, estimator))
    assert context.items == turn(1)  # the whole tool turn is left out, not its tail
    roomy = asyncio.run(build_context(memory, tight + 1, estimator))
    assert roomy.items == tool_turn + turn(1)


def test_the_summary_takes_its_share_and_only_later_turns_are_read(tmp_path: Path) -> None:
    memory = filled(tmp_path, 10).memory("alice")
    asyncio.run(memory.save_summary(Summary("The user is Alice.", through=10)))  # turns 0-4 folded
    context = asyncio.run(build_context(memory, 10_000, TokenEstimator()))
    assert context.summary == Summary("The user is Alice.", 10)
    assert context.items == [item for n in range(5, 10) for item in turn(n)]
    assert not context.overflow


def test_building_a_request_reads_only_the_rows_it_needs_from_100000_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    rows = [("alice", json.dumps(item)) for n in range(50_000) for item in turn(n)]

    def fill(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('alice')")
        conn.executemany("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", rows)

    asyncio.run(store.write(fill))
    memory = store.memory("alice")
    read = 0
    original = memory.raw_page

    async def counting(*args: Any, **kwargs: Any) -> list[RawRow]:
        nonlocal read
        rows = await original(*args, **kwargs)
        read += len(rows)
        return rows

    monkeypatch.setattr(memory, "raw_page", counting)
    context = asyncio.run(build_context(memory, 8000, TokenEstimator()))
    assert asyncio.run(memory.count()) == 100_000
    assert 0 < len(context.items) < 1000
    assert read <= len(context.items) + PAGE_ROWS  # the window, and at most one page more


def test_a_fact_from_the_first_turn_survives_500_later_turns_within_budget(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    budget = 800  # of which the tools' schemas take about 250
    lines = ["my name is Sara"] + [f"turn {n}: tell me something about the number {n}" for n in range(500)]
    run = memchat("--context-tokens", str(budget), input="\n".join([*lines, "what's my name?"]) + "\n", timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "Your name is Sara."
    chats = [r for r in server.requests if "Update the memory summary" not in str(r.body["messages"][0])]
    assert len(chats) == 502
    for request in chats:
        history = request.body["messages"][1:-1]  # after the instructions, before the new message
        assert len(json.dumps(history)) / 4 <= budget
    summaries = len(server.requests) - len(chats)
    assert 0 < summaries <= len(chats) // 4  # folded in batches, not on every turn
    assert len(memchat.stored("user1")) == 1004  # the full raw history stays in the database
    print(f"\n500-turn run: {len(chats)} chat requests, {summaries} summary requests, budget {budget} tokens")


def test_the_summary_is_stored_shown_and_wiped(memchat: Memchat) -> None:
    lines = ["my name is Omar"] + [f"filler message number {n} " + "y" * 60 for n in range(30)]
    memchat("--context-tokens", "200", input="\n".join(lines) + "\n")
    shown = memchat(input="/summary\n/history 1\n").stdout.splitlines()
    assert shown[0] == "summary: The user said: my name is Omar."
    assert shown[1] == "summary: The user said: my name is Omar."
    assert shown[2].startswith("you: filler message number 29")
    cleared = memchat("--clear", input="/summary\nwhat's my name?\n")
    assert "(no summary yet" in cleared.stderr
    assert cleared.stdout == "I don't know your name yet.\n"


def test_a_summary_failure_loses_no_turn_and_is_retried_later(memchat: Memchat, server: FakeOpenAI) -> None:
    server.fail_summaries = True
    lines = ["my name is Lea"] + [f"filler message number {n} " + "z" * 60 for n in range(20)]
    run = memchat("--context-tokens", "200", input="\n".join(lines) + "\n")
    assert run.returncode == 0
    assert "the summary of older turns was not updated" in run.stderr
    assert "error:" not in run.stderr
    assert len(memchat.stored("user1")) == 42
    assert_alternates(memchat.stored("user1"))

    server.fail_summaries = False
    again = memchat("--context-tokens", "200", input="one more\nwhat's my name?\n")
    assert again.stdout.splitlines() == ["You said: one more", "Your name is Lea."]


def test_the_summary_reaches_the_model_in_the_instructions(memchat: Memchat, server: FakeOpenAI) -> None:
    lines = ["my name is Ines"] + [f"filler {n} " + "w" * 80 for n in range(20)]
    memchat("--context-tokens", "200", input="\n".join(lines) + "\n")
    memchat("--context-tokens", "200", input="hello\n")
    [hello] = [r for r in server.requests if conversation(r.body)[-1] == ("user", "hello")]
    system = conversation(hello.body)[0]
    assert system[0] == "system" and "my name is Ines" in system[1]


def test_a_too_small_budget_is_refused(memchat: Memchat) -> None:
    run = memchat("--context-tokens", "10", input="hi\n")
    assert run.returncode == 2
    assert run.stderr.startswith("error: the context budget of 10 tokens is too small")
