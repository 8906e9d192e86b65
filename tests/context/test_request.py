"""What a request carries: the budget used whole, recalled matches with their neighbours, dates, the tool's share."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.testing import ScriptedModel, assistant_message

from config import load_settings
from fake_openai import FakeOpenAI
from memchat.context.budget import MESSAGE_TOKENS, TokenEstimator, build_context
from memchat.context.recall import recall
from memchat.context.tools import ToolContext, search
from memchat.items import describe
from memchat.stores.protocol import Memory
from memchat.turn import Request, TurnRunner
from support import exchange, opened

OFFLINE = load_settings(env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "x", "HOME": "/none"})


def runner(budget: int, model: Any = None, **changes: Any) -> TurnRunner:
    made = TurnRunner(replace(OFFLINE, context_tokens=budget, **changes), model)
    made.estimator.chars_per_token = 4.0  # as a server's first reply teaches it for English
    return made


def stored_on(path: Path, days: dict[int, str]) -> None:
    """Date the messages at these positions as if said then (the SDK's table keeps when each was stored)."""
    with sqlite3.connect(path) as db:
        db.executemany("UPDATE agent_messages SET created_at = ? WHERE id = ?", [(d, p) for p, d in days.items()])


def request(path: Path, plant: list[list[dict[str, Any]]], question: str, budget: int, **changes: Any) -> Request:
    async def build() -> Request:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            for items in plant:
                await memory.add_items(items)
            return await runner(budget, **changes).request_for(memory, question)

    return asyncio.run(build())


FILLER = [exchange(f"filler {n}: the weather was grey and the tea was cold again") for n in range(300)]


def test_recall_fills_the_room_the_newest_turns_leave(tmp_path: Path) -> None:
    garden = [exchange(f"in the garden, bed {n} has {n % 7} rows of beans and a sunflower") for n in range(200)]
    built = request(tmp_path / "m.db", garden + FILLER, "how many rows of beans are in the garden beds?", 2000)
    # Once a quarter of the budget went to recall and the rest stayed unused; now recall takes what it can use
    # (of what the tools' schemas, about 250 tokens, leave).
    assert built.recalled.tokens > 2000 // 2
    assert 0.85 * (2000 - 250) <= built.tokens + built.room <= 2000 - 250
    assert built.context.turns, "the newest turns keep their share"


def test_the_first_request_keeps_a_twelfth_of_the_budget_for_the_tool_and_uses_the_rest(tmp_path: Path) -> None:
    garden = [exchange(f"in the garden, bed {n} has {n % 7} rows of beans and a sunflower") for n in range(200)]
    built = request(tmp_path / "m.db", garden + FILLER, "how many rows of beans are in the garden beds?", 2400)
    # Every request pays for the tool's room, used or not: an eighth (300) found less on LoCoMo.
    assert 2400 // 12 - 40 <= built.room <= 2400 // 10, built.room


def test_a_recalled_match_comes_with_the_messages_beside_it(tmp_path: Path) -> None:
    trip = [
        {"role": "user", "content": "Did you go anywhere last weekend?"},
        {"role": "assistant", "content": "Yes, we drove up to Whitby for fish and chips."},
        {"role": "user", "content": "That sounds lovely, I have never been."},
        {"role": "assistant", "content": "You should go in spring."},
    ]
    built = request(tmp_path / "m.db", [trip[:2], trip[2:], *FILLER], "Whitby", 800)
    lines = [line.text for excerpt in built.recalled.excerpts for line in excerpt.lines]
    # The question it answered, the match, and the reply to it, in their order.
    assert lines[:3] == [trip[0]["content"], trip[1]["content"], trip[2]["content"]]


def test_a_reply_of_a_few_sentences_beside_a_match_comes_back_whole(tmp_path: Path) -> None:
    # The answer shares no word with the question: only the message it replies to does.
    reply = (
        "It was wonderful! We slept under the stars by the lake, roasted marshmallows, watched the kids chase "
        "frogs along the shore, and on the last morning hiked up to the ridge before sunrise. The view over the "
        "valley was unreal, mist everywhere, and we had pancakes on the little stove when we got back down. "
        "Already planning the next one for August with my sister's family."
    )
    trip = [exchange("how was your camping trip in June?")[0], {"role": "assistant", "content": reply}]
    built = request(tmp_path / "m.db", [trip, *FILLER], "When did we go camping?", 4000)
    # Cut at 80 tokens, it lost its last sentences, and with them what a later question might ask.
    assert f"assistant: {reply}" in built.recalled.text


def test_a_question_that_joins_two_parts_of_the_past_gets_both(tmp_path: Path) -> None:
    plant = [exchange("my sister Ingrid lives in Bergen"), *FILLER[:150], exchange("my brother Tomas moved to Porto")]
    built = request(tmp_path / "m.db", [*plant, *FILLER[150:]], "Where do Ingrid and Tomas live?", 1000)
    assert "Bergen" in built.recalled.text and "Porto" in built.recalled.text


def test_recalled_parts_far_apart_are_shown_apart_not_as_one_conversation(tmp_path: Path) -> None:
    plant = [exchange("my sister Ingrid lives in Bergen"), *FILLER[:150], exchange("my brother Tomas moved to Porto")]
    built = request(tmp_path / "m.db", [*plant, *FILLER[150:]], "Where do Ingrid and Tomas live?", 1000)
    # The two matches' neighbours came next to each other in one read; 300 messages lie between them.
    assert not any("Bergen" in shown and "Porto" in shown for shown in map(str, built.recalled.excerpts))
    assert re.search(r"Bergen.*\n…\n.*Porto", built.recalled.text, re.DOTALL)


def test_the_newest_turns_and_recalled_messages_carry_the_day_they_were_said(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    plant = [exchange("my sister Ingrid lives in Bergen"), *FILLER[:40], exchange("hello"), exchange("and again")]
    request(path, plant, "warm up", 700)
    total = 2 * len(plant)
    stored_on(path, {p: "2023-05-07 10:00:00" for p in range(1, total - 3)})
    stored_on(path, {total - 3: "2023-05-08 13:56:00", total - 2: "2023-05-08 13:56:00"})
    stored_on(path, {total - 1: "2023-06-09 09:00:00", total: "2023-06-09 09:00:00"})
    built = request(path, [], "where does my sister live?", 700)
    users = [str(item["content"]) for item in built.items if item.get("role") == "user"]
    assert users[-2:] == ["[Monday 8 May 2023]\nhello", "[Friday 9 June 2023]\nand again"]
    assert "[Sunday 7 May 2023]\nuser: my sister Ingrid lives in Bergen" in built.instructions
    assert "Today is " in built.instructions


def test_the_day_lines_sent_with_the_newest_turns_count_against_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    turns = [exchange(f"news of day {n}: nothing much happened") for n in range(3)]
    request(path, turns, "warm up", 700)
    stored_on(path, {p: f"2023-05-0{(p + 1) // 2} 10:00:00" for p in range(1, 7)})
    estimator = TokenEstimator(4.0)
    undated = sum(estimator.item_tokens(items) for items in turns)

    async def build() -> list[Any]:
        async with opened(str(path)) as store:
            return (await build_context(store.memory("ann"), undated, estimator)).turns

    # Three turns fit their messages exactly, but each is sent with its day before it: two fit.
    assert len(asyncio.run(build())) == 2


def test_a_search_turn_leaves_room_for_the_turns_before_it(tmp_path: Path) -> None:
    search_turn = [
        {"role": "user", "content": "what did I say about herons?"},
        {"type": "function_call", "call_id": "c1", "name": "search_memory", "arguments": '{"query": "heron"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "user: my heron is called Pip\n" * 150},
        {"role": "assistant", "content": "Your heron is called Pip."},
    ]

    async def build() -> tuple[list[str], int]:
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            for items in [*FILLER[:20], search_turn]:
                await memory.add_items(items)
            context = await build_context(memory, 600, TokenEstimator(4.0))
            return [describe(item)[0] for item in context.items], len(context.turns)

    speakers, turns = asyncio.run(build())
    # The search's output (a copy of older messages) is not sent again; once it filled the window alone.
    assert "tool" not in speakers
    assert turns > 5


def test_search_memory_returns_only_what_the_request_lacks(tmp_path: Path) -> None:
    plant = [exchange(f"the code for locker {n} is {n * 7919 % 10000}") for n in range(120)]

    async def run() -> tuple[Request, str, str, str]:
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            for items in plant:
                await memory.add_items(items)
            made = runner(1500)
            built = await made.request_for(memory, "what is the code for my locker?")
            searched = ToolContext(memory, None, made.estimator, built.room, set(built.positions))
            first = await search(searched, "code for locker")
            second = await search(searched, "code for locker")
            return built, first, second, await search(ToolContext(memory, None, made.estimator, 0), "locker")

    built, first, second, none = asyncio.run(run())
    sent = built.instructions + "\n".join(str(item["content"]) for item in built.items)
    found = [line for line in first.splitlines()[1:] if line.startswith("user: ")]
    assert found and not any(line.removeprefix("user: ") in sent for line in found)
    said = lambda text: {line for line in text.splitlines() if line.startswith(("user: ", "assistant: "))}  # noqa: E731
    assert not said(first) & said(second)  # a second call brings the next ones, or nothing
    assert none.startswith("No room is left")


def test_a_turn_that_searches_memory_learns_the_same_token_ratio_as_one_that_does_not(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    settings = load_settings(env={"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "x", "HOME": "/none"})

    async def ratio(message: str) -> float:
        async with opened(str(tmp_path / "m.db")) as store:
            memory: Memory = store.memory("ann")
            await memory.add_items(exchange("my heron is called Pip " + "and she fishes all day " * 20))
            made = TurnRunner(settings)
            await made.run(memory, message)
            await made.aclose()
            return made.estimator.chars_per_token

    plain = asyncio.run(ratio("who is my heron?"))
    searching = asyncio.run(ratio("who is [[lookup:heron]]?"))
    # The SDK adds up the turn's two requests; learnt from that, the budget used was halved.
    assert searching > 0.8 * plain


def summarized(tmp_path: Path, reply: str) -> tuple[str, str]:
    """What a fold saved with a model that replies ``reply``, and what the model was asked."""
    path = tmp_path / "m.db"
    request(path, [exchange(f"on day {n} I walked to the harbour and counted the boats") for n in range(30)], "x", 100)
    stored_on(path, {p: "2023-05-08 13:56:00" for p in range(1, 61)})
    model = ScriptedModel([[assistant_message(reply)]])

    async def fold() -> str:
        async with opened(str(path)) as store:
            memory = store.memory("ann")
            made = runner(400, model)
            assert await made.summarizer.fold(memory)
            summary = await memory.summary()
            assert summary is not None
            return summary.text

    text = asyncio.run(fold())
    return text, str(model.last_call.input)  # type: ignore[union-attr]


def test_a_long_summary_is_cut_after_its_last_whole_sentence(tmp_path: Path) -> None:
    sentences = [f"The user walked to the harbour on day {n} and counted every boat there." for n in range(40)]
    text, _ = summarized(tmp_path, " ".join(sentences))
    assert text.endswith("there.") and "…" not in text
    assert text in " ".join(sentences) and len(text) < len(" ".join(sentences))


def test_the_summary_is_told_the_day_of_what_it_folds(tmp_path: Path) -> None:
    _, asked = summarized(tmp_path, "The user walks to the harbour.")
    assert "[Monday 8 May 2023]" in asked


def test_recalled_excerpts_count_their_day_and_gap_lines_within_the_budget(tmp_path: Path) -> None:
    # Many matches far apart: many excerpts, each with a line above it. Those lines once went
    # uncounted while packing, and with the tool off nothing else took up the difference.
    plant = [item for n in range(150) for item in (exchange(f"the code for locker {n} is {n * 7919}"), *FILLER[:3])]
    built = request(tmp_path / "m.db", plant, "what is the code for the locker?", 1000, tools=False)
    assert len(built.recalled.excerpts) > 10
    assert built.room >= 0, f"{-built.room} tokens over the budget"


def test_the_answer_to_a_matching_question_comes_before_what_led_to_it(tmp_path: Path) -> None:
    said = [
        {"role": "user", "content": "The rain kept on all afternoon, so I stayed in and read."},
        {"role": "assistant", "content": "What did you cook for the potluck on Saturday?"},
        {"role": "user", "content": "A big pot of chili with cornbread, and it was gone in an hour."},
        {"role": "assistant", "content": "Chili always goes first."},
    ]
    estimator = TokenEstimator(chars_per_token=4.0)
    line = lambda item: estimator.tokens(f"{item['role']}: {item['content']}")  # noqa: E731 - as recall counts it
    # Room for the match and one message beside it, not two.
    room = MESSAGE_TOKENS + line(said[1]) + max(line(said[0]), line(said[2]))

    async def recalled() -> list[str]:
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            await memory.add_items(said)
            found = await recall(memory, "potluck", room, estimator)
            return [line.text for excerpt in found.excerpts for line in excerpt.lines]

    # A question's answer follows it; what came before was about something else.
    assert asyncio.run(recalled()) == [said[1]["content"], said[2]["content"]]


def test_matches_as_good_as_the_best_come_before_the_messages_beside_it(tmp_path: Path) -> None:
    said = [{"role": "user", "content": "I brought chili to the potluck."}]
    filler = [{"role": "assistant", "content": "Sounds like a fine evening with friends."}]
    estimator = TokenEstimator(chars_per_token=4.0)
    match = estimator.tokens(f"user: {said[0]['content']}")
    # Room for three matches, each under its own day line, and nothing beside them.
    room = 3 * (match + MESSAGE_TOKENS)

    async def recalled() -> list[str]:
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            for _ in range(3):
                await memory.add_items([*filler, *said, *filler])
            found = await recall(memory, "potluck chili", room, estimator)
            return [line.text for excerpt in found.excerpts for line in excerpt.lines]

    # Ranked by place alone, the third match was worth a third of the first, less than the
    # message before the first, which took its room.
    assert asyncio.run(recalled()) == [said[0]["content"]] * 3
