"""A turn is stored whole or not at all (driven by the SDK's ScriptedModel)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agents import function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from config import load_settings
from memchat.context.budget import spoken_day
from memchat.items import describe
from memchat.stores.sqlite import SQLiteStore
from memchat.turn import TurnRunner

SETTINGS = load_settings(env={"OPENAI_API_KEY": "sk-test", "HOME": "/nonexistent"})


def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "m.db")


def test_a_turn_stores_the_message_and_the_reply(tmp_path: Path) -> None:
    memory = store(tmp_path).memory("alice")
    runner = TurnRunner(SETTINGS, ScriptedModel([[assistant_message("Hello Alice")]]))
    assert asyncio.run(runner.run(memory, "hi, I'm Alice")).reply == "Hello Alice"
    items = asyncio.run(memory.get_items())
    assert [describe(item) for item in items] == [("you", "hi, I'm Alice"), ("assistant", "Hello Alice")]


def test_the_model_sees_the_stored_history_and_the_new_message(tmp_path: Path) -> None:
    memory = store(tmp_path).memory("alice")
    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    runner = TurnRunner(SETTINGS, model)
    asyncio.run(runner.run(memory, "first"))
    asyncio.run(runner.run(memory, "second"))
    sent = model.last_call.input  # type: ignore[union-attr]
    today = spoken_day(datetime.now(UTC).strftime("%Y-%m-%d"))
    assert [describe(item) for item in sent] == [
        ("you", f"[{today}]\nfirst"),  # the day it was said, as the first message of that day
        ("assistant", "one"),
        ("you", "second"),
    ]


def test_a_failed_model_call_stores_nothing(tmp_path: Path) -> None:
    memory = store(tmp_path).memory("alice")
    runner = TurnRunner(SETTINGS, ScriptedModel([RuntimeError("server down")]))
    with pytest.raises(RuntimeError):
        asyncio.run(runner.run(memory, "hello?"))
    assert asyncio.run(memory.get_items()) == []


def test_a_streamed_turn_passes_pieces_and_stores_the_whole_reply(tmp_path: Path) -> None:
    memory = store(tmp_path).memory("alice")
    runner = TurnRunner(SETTINGS, ScriptedModel([[assistant_message("streamed reply")]]))
    pieces: list[str] = []
    asyncio.run(runner.run(memory, "hi", pieces.append))
    assert "".join(pieces) == "streamed reply"
    assert describe(asyncio.run(memory.get_items())[-1]) == ("assistant", "streamed reply")


def test_a_cancelled_turn_stores_nothing(tmp_path: Path) -> None:
    memory = store(tmp_path).memory("alice")

    async def slow(call: object) -> list[object]:
        await asyncio.sleep(30)
        return [assistant_message("too late")]

    from agents.testing import ModelStep

    runner = TurnRunner(SETTINGS, ScriptedModel([ModelStep.respond(slow)]))

    async def scenario() -> None:
        task = asyncio.ensure_future(runner.run(memory, "hello", lambda piece: None))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert asyncio.run(memory.get_items()) == []


def test_tool_calls_are_stored_paired_with_their_outputs(tmp_path: Path) -> None:
    @function_tool
    def favourite_colour() -> str:
        """The user's favourite colour."""
        return "teal"

    memory = store(tmp_path).memory("alice")
    model = ScriptedModel(
        [
            [function_call("favourite_colour", {}, call_id="call_1")],
            [assistant_message("Your favourite colour is teal.")],
        ]
    )
    runner = TurnRunner(SETTINGS, model)
    runner.agent.tools.append(favourite_colour)
    asyncio.run(runner.run(memory, "what's my favourite colour?"))
    kinds = [item.get("role") or item.get("type") for item in asyncio.run(memory.get_items())]
    assert kinds == ["user", "function_call", "function_call_output", "assistant"]
    assert asyncio.run(memory.undo()) == 4
