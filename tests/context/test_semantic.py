"""Semantic search: with an embedding model set, what was said is found by its meaning, on every store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import numpy as np
import pytest

from fake_openai import FakeOpenAI, meaning
from memchat.context.recall import MEANING_WEIGHT, WORDS_WEIGHT, matching, ranked
from memchat.context.semantic import HeldVectors, normalized
from memchat.items import describe
from memchat.stores.base import END
from memchat.stores.protocol import VectorMemory, Vectors
from memchat.stores.search import Hit, fuse
from support import EMBEDDER, Memchat, close_sdk_session, exchange, opened, sdk_session_for, semantic_for


def test_a_paraphrase_sharing_no_word_is_found_by_meaning_on_every_store(location: str, server: FakeOpenAI) -> None:
    async def run() -> None:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")
            for text in ("my Volvo is red", "the weather is mild", "I like jazz"):
                await memory.add_items(exchange(text))
            assert await semantic.fill(memory) == 6
            assert await matching(memory, "what car do I own?", 3) == []  # no word in common
            found = await matching(memory, "what car do I own?", 1, semantic)
            assert [turn.items[0]["content"] for _, turn in found] == ["my Volvo is red"]
            # Another user's vectors are never searched.
            assert await matching(store.memory("bob"), "what car do I own?", 3, semantic) == []
        await semantic.aclose()

    asyncio.run(run())


def test_meaning_is_looked_for_near_the_best_match_by_words_too(location: str, server: FakeOpenAI) -> None:
    said = [
        "I brought chili with cornbread",
        "my Volvo is red",
        "the weather is mild",
        "I like jazz",
        "the train was late again",
        "she plays tennis on Sundays",
        "we painted the fence blue",
        "chili with cornbread went first at the potluck",
    ]

    async def run() -> list[str]:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")
            # Said one after another, with no reply between: each message's vector leans to the one before.
            await memory.add_items([{"role": "user", "content": text} for text in said])
            await semantic.fill(memory)
            hits = await ranked(memory, "what did I bring to the potluck?", 3, END, semantic)
            async with memory.reading():
                texts = {at: describe(item)[1] for at, _, item in await memory.around([hit.position for hit in hits])}
        await semantic.aclose()
        return [texts[hit.position] for hit in hits]

    # "I brought chili with cornbread" shares no word that is looked for with the question, and most
    # of its words with the one message that mentions the potluck.
    assert "I brought chili with cornbread" in asyncio.run(run())


CELLO = "The cello, twice a week."


async def plant_a_short_reply(memory: Any) -> None:
    """A reply that means something only beside the question it answers, among unrelated exchanges."""
    await memory.add_items(exchange("the weather is mild"))
    await memory.add_items(
        [
            {"role": "assistant", "content": "Which music instrument did your daughter take up?"},
            {"role": "user", "content": CELLO},
        ]
    )
    for text in ("the train was late again", "the kids play outside after school until dinner every day"):
        await memory.add_items(exchange(text))


async def nearest_texts(semantic: Any, memory: Any, query: str, limit: int) -> list[str]:
    hits = await semantic.hits(memory, query, limit, END)
    async with memory.reading():
        texts = {at: describe(item)[1] for at, _, item in await memory.around([hit.position for hit in hits])}
    return [texts[hit.position] for hit in hits]


def test_a_short_reply_is_found_by_meaning_through_the_message_it_answers(location: str, server: FakeOpenAI) -> None:
    async def run() -> list[str]:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")
            await plant_a_short_reply(memory)
            await semantic.fill(memory)
            found = await nearest_texts(semantic, memory, "what music does my child play?", 2)
        await semantic.aclose()
        return found

    # The reply shares no meaning with the question, the message it answers two; the kids playing, one.
    assert CELLO in asyncio.run(run())


def test_memchat_index_again_gives_an_older_history_vectors_that_lean_to_the_message_before(
    location: str, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memchat.context import semantic as module

    question = "what music does my child play?"

    async def run() -> tuple[list[str], list[str], int, int]:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")
            await plant_a_short_reply(memory)
            # Embedded as an older memchat did: each message's vector its own alone.
            monkeypatch.setattr(module, "CONTEXT_WEIGHT", 0.0)
            await semantic.fill(memory)
            monkeypatch.undo()
            before = await nearest_texts(semantic, memory, question, 2)
            again = await semantic.embed_all(memory, again=True)
            after = await nearest_texts(semantic, memory, question, 2)
            held = await memory.vectors(EMBEDDER)
        await semantic.aclose()
        return before, after, again, len(held.rows)

    before, after, again, vectors = asyncio.run(run())
    assert CELLO not in before
    assert CELLO in after
    assert again == vectors == 8  # every message once, each with one vector still


def test_memchat_index_again_counts_what_it_fills_after_against_that_alone(tmp_path: Any, server: FakeOpenAI) -> None:
    async def run() -> tuple[int, list[tuple[int, int]]]:
        semantic = semantic_for(server)
        shown: list[tuple[int, int]] = []
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            await plant_a_short_reply(memory)
            await semantic.fill(memory)
            looks = memory.unembedded

            async def one_written_meanwhile(model: str, limit: int) -> list[tuple[int, str]]:
                # A message another memchat stored while the history was embedded again.
                return [(1, "the weather is mild")] if limit > 1 else await looks(model, limit)

            memory.unembedded = one_written_meanwhile  # type: ignore[method-assign]
            done = await semantic.embed_all(memory, lambda done, total: shown.append((done, total)), again=True)
        await semantic.aclose()
        return done, shown

    done, shown = asyncio.run(run())
    assert done == 9  # the 8 messages again, then the one that had none
    assert shown and all(step <= total for step, total in shown), shown


class WordsOnly:
    """A memory of a store that keeps no vectors: everything but ``VectorMemory``'s part."""

    def __init__(self, memory: object) -> None:
        self._memory = memory

    def __getattr__(self, name: str) -> Any:
        if name in ("unembedded", "save_vectors", "vectors", "nearest", "index_vectors", "vector_search_note"):
            raise AttributeError(name)
        return getattr(self._memory, name)


def test_every_store_keeps_vectors_for_search_by_meaning(location: str) -> None:
    async def run() -> bool:
        async with opened(location) as store:
            return isinstance(store.memory("ann"), VectorMemory)

    assert asyncio.run(run())


def test_a_store_that_keeps_no_vectors_is_searched_by_words_alone_and_nothing_is_embedded(
    server: FakeOpenAI, tmp_path: Any
) -> None:
    async def run() -> None:
        semantic = semantic_for(server)
        async with opened(str(tmp_path / "m.db")) as store:
            memory = WordsOnly(store.memory("ann"))
            for text in ("my Volvo is red", "the weather is mild"):
                await store.memory("ann").add_items(exchange(text))
            assert await semantic.fill(memory) == 0  # type: ignore[arg-type]
            assert await matching(memory, "what car do I own?", 3, semantic) == []  # type: ignore[arg-type]
            found = await matching(memory, "is my Volvo red?", 1, semantic)  # type: ignore[arg-type]
            assert [turn.items[0]["content"] for _, turn in found] == ["my Volvo is red"]
        await semantic.aclose()

    asyncio.run(run())
    assert [request.path for request in server.requests if request.path.endswith("/embeddings")] == []


def test_vectors_go_with_their_messages_whoever_deletes_them(location: str) -> None:
    vector = normalized([1.0, 2.0, 3.0])

    async def vectors_of(memory: object) -> int:
        return len((await memory.vectors(EMBEDDER)).rows)  # type: ignore[attr-defined]

    async def embed_all(memory: object) -> None:
        missing = await memory.unembedded(EMBEDDER, 100)  # type: ignore[attr-defined]
        await memory.save_vectors(EMBEDDER, [(at, text, vector) for at, text in missing])  # type: ignore[attr-defined]

    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            for text in ("the kayak is red", "the canoe is green", "the raft is blue"):
                await memory.add_items(exchange(text))
            await embed_all(memory)
            assert await vectors_of(memory) == 6 and await memory.unembedded(EMBEDDER, 100) == []
            assert len(await memory.unembedded("another-model", 100)) == 6  # each model has its own
            await memory.undo()
            assert await vectors_of(memory) == 4
            turns = [turn async for turn in memory.turns_backward(0)]
            await memory.forget([turns[-1]])  # the kayak
            await embed_all(memory)  # Redis moved the canoe up: it is embedded again where it now is
            assert await vectors_of(memory) == 2
            sdk = sdk_session_for(location, "ann")
            await sdk.pop_item()  # the SDK's own delete, on the same data
            await close_sdk_session(sdk)
            assert await vectors_of(memory) == 1
            await memory.clear_session()
            assert await vectors_of(memory) == 0

    asyncio.run(run())


def test_no_vector_keeps_the_meaning_of_a_forgotten_exchange(location: str, server: FakeOpenAI) -> None:
    async def run() -> list[float]:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")
            for text in ("the kayak is red", "my sister plays the violin", "the canoe is green"):
                await memory.add_items(exchange(text))
            await semantic.fill(memory)
            turns = [turn async for turn in memory.turns_backward(0)]
            await memory.forget([turns[1]])  # the violin
            await semantic.fill(memory)
            kept = await memory.vectors(EMBEDDER)  # type: ignore[attr-defined]
        await semantic.aclose()
        violin = np.frombuffer(normalized(meaning("violin")), dtype=np.float32)
        return [float(np.frombuffer(vector, dtype=np.float32) @ violin) for _, _, vector in kept.rows]

    # "the canoe is green" followed the violin's reply, and its vector leaned to it; it is made again.
    leanings = asyncio.run(run())
    assert len(leanings) == 4 and max(leanings) == 0.0


def test_a_vector_made_for_a_message_replaced_meanwhile_is_not_kept(location: str) -> None:
    async def run() -> None:
        async with opened(location) as store:
            memory = store.memory("ann")
            await memory.add_items(exchange("the kayak is red"))
            missing = await memory.unembedded(EMBEDDER, 100)
            await memory.undo()
            await memory.add_items(exchange("the barge is grey"))
            await memory.save_vectors(EMBEDDER, [(at, text, normalized([1.0])) for at, text in missing])
            assert (await memory.vectors(EMBEDDER)).rows == []
            assert len(await memory.unembedded(EMBEDDER, 100)) == 2

    asyncio.run(run())


def test_fusion_puts_a_message_found_both_ways_first() -> None:
    by_words = [Hit(5, "2026-01-02", -3.0), Hit(9, "2026-01-03", -2.0), Hit(1, "2026-01-01", -1.0)]
    by_meaning = [Hit(7, "", -0.9), Hit(9, "", -0.8), Hit(2, "", -0.1)]
    assert [hit.position for hit in fuse([by_words, by_meaning], 3)] == [9, 7, 5]
    assert fuse([by_words, by_meaning], 3)[0].stored_at == "2026-01-03"  # a store's date is kept


def test_fusion_keeps_how_far_ahead_of_the_rest_a_hit_is() -> None:
    # Message 1 matches far better than anything else by words; 2 is second by meaning and barely
    # above the last by words. Fusing ranks alone put 2 first, as found both ways.
    by_words = [Hit(1, "", -10.0), Hit(2, "", -1.1), Hit(3, "", -1.0)]
    by_meaning = [Hit(4, "", -0.52), Hit(2, "", -0.51), Hit(5, "", -0.50)]
    assert [hit.position for hit in fuse([by_words, by_meaning], 3, (WORDS_WEIGHT, MEANING_WEIGHT))] == [1, 4, 2]
    assert [hit.position for hit in fuse([[Hit(8, "", -2.0)], []], 3)] == [8]  # one hit, and an empty ranking


def test_nearest_ranks_by_cosine_and_skips_vectors_of_another_size() -> None:
    held = HeldVectors()
    rows = [(1, "", normalized([1.0, 0.0])), (2, "", normalized([1.0, 1.0])), (3, "", normalized([1.0, 0, 0]))]
    held.add(Vectors(rows, 3, 3))
    assert [hit.position for hit in held.nearest(normalized([0.0, 1.0]), 5)] == [2, 1]
    assert [hit.position for hit in held.nearest(normalized([0.0, 1.0]), 1)] == [2]
    assert [hit.position for hit in held.nearest(normalized([0.0, 1.0]), 5, before=2)] == [1]
    assert held.nearest(normalized([0.0, 1.0, 0.0]), 5) == []  # a query of another size matches nothing


def test_held_vectors_follow_what_is_written_and_deleted_between_searches(location: str, server: FakeOpenAI) -> None:
    async def run() -> None:
        semantic = semantic_for(server)
        async with opened(location) as store:
            memory = store.memory("ann")

            async def best(query: str) -> str:
                found = await matching(memory, query, 1, semantic)
                return str(found[0][1].items[0]["content"]) if found else ""

            await memory.add_items(exchange("my Volvo is red"))
            await semantic.fill(memory)
            assert await best("which automobile?") == "my Volvo is red"
            await memory.undo()
            assert await best("which automobile?") == ""  # gone, though the vectors were held
            await memory.add_items(exchange("our greyhound sleeps all day"))
            await semantic.fill(memory)
            assert await best("tell me about the dog") == "our greyhound sleeps all day"
        await semantic.aclose()

    asyncio.run(run())


def last_chat(server: FakeOpenAI) -> dict[str, Any]:
    """The newest request for a reply (not for a summary, not for embeddings)."""
    return next(
        r.body
        for r in reversed(server.requests)
        if r.path.endswith("/chat/completions") and "Update the memory summary" not in str(r.body["messages"][0])
    )


def test_a_paraphrased_fact_far_out_of_the_window_reaches_the_model(memchat: Memchat, server: FakeOpenAI) -> None:
    env = {"MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    lines = ["my Volvo is red"] + [f"filler turn {n} about the weather" for n in range(40)]
    memchat("--context-tokens", "600", input="\n".join(lines) + "\n", timeout=120, **env)
    run = memchat("--context-tokens", "600", input="which automobile do I own?\n", **env)
    assert run.returncode == 0, run.stderr
    request = last_chat(server)
    system = request["messages"][0]["content"]
    assert "recalled from your memory" in system and "my Volvo is red" in system
    assert "Volvo" not in json.dumps(request["messages"][1:])  # by recall, not in the window
    # Without the embedding model, words alone do not find it.
    memchat("--context-tokens", "600", input="which automobile do I own?\n")
    assert "Volvo" not in json.dumps(last_chat(server)["messages"])


def test_search_finds_by_meaning_with_an_embedding_model(memchat: Memchat) -> None:
    env = {"MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    memchat("--user", "ann", input="my puppy is called Miso\nthe weather is mild\n", **env)
    run = memchat("--user", "ann", input="/search which pet\n", **env)
    assert run.returncode == 0, run.stderr
    first = next(line for line in run.stdout.splitlines() if line.startswith("you: "))
    assert first == "you: my puppy is called Miso"  # no word of the query in it


def embedded(memchat: Memchat) -> int:
    with sqlite3.connect(memchat.db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM memchat_vectors WHERE length(vector) > 0").fetchone()[0])


def test_a_failing_embedding_server_never_fails_a_turn_and_vectors_come_later(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    env = {"MEMCHAT_EMBEDDING_MODEL": EMBEDDER}
    server.embedding_status = 500
    run = memchat(input="my Volvo is red\nthe weather is mild\n", **env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("You said") == 2
    assert run.stderr.count("embedding model 'fake-embedder'") == 1  # told once
    assert "the server answered 500" in run.stderr and "Traceback" not in run.stderr
    assert embedded(memchat) == 0
    server.embedding_status = None
    run = memchat(input="/usage\n", **env)  # a start fills in what is missing, in the background
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 20
    while embedded(memchat) < 4 and time.monotonic() < deadline:
        memchat(input="/usage\n", **env)
    assert embedded(memchat) == 4


def test_a_slow_embedding_server_delays_no_turn_past_the_timeout(memchat: Memchat, server: FakeOpenAI) -> None:
    server.embedding_delay = 60
    started = time.monotonic()
    run = memchat(
        input="my Volvo is red\n", MEMCHAT_EMBEDDING_MODEL=EMBEDDER, MEMCHAT_EMBEDDING_TIMEOUT="0.5", timeout=50
    )
    assert run.returncode == 0, run.stderr
    assert "You said: my Volvo is red" in run.stdout
    assert "no answer within 0.5 s (MEMCHAT_EMBEDDING_TIMEOUT)" in run.stderr
    # The background embedding still waiting does not hold the exit either.
    assert time.monotonic() - started < 30


def test_embeddings_and_encryption_together_are_refused_in_one_line(memchat: Memchat) -> None:
    run = memchat(input="hi\n", MEMCHAT_EMBEDDING_MODEL=EMBEDDER, MEMCHAT_ENCRYPTION_KEY="secret words")
    assert run.returncode == 2
    assert run.stderr.startswith("error: MEMCHAT_EMBEDDING_MODEL and MEMCHAT_ENCRYPTION_KEY are both set")
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_embedding_timeout_is_one_line(memchat: Memchat, value: str) -> None:
    run = memchat(input="hi\n", MEMCHAT_EMBEDDING_MODEL=EMBEDDER, MEMCHAT_EMBEDDING_TIMEOUT=value)
    assert run.returncode == 2 and run.stderr.startswith("error: MEMCHAT_EMBEDDING_TIMEOUT is")


def test_the_question_is_not_stuck_behind_a_background_batch_on_a_server_that_embeds_one_at_a_time(
    tmp_path: Any, server: FakeOpenAI
) -> None:
    # Each request takes 0.5 s and the server takes one at a time; the question's timeout is 0.7 s.
    # Sent while a batch was at the server, it used to wait for it inside its own timeout (0.4 s, then
    # 0.5 s of its own): recall fell back to words alone while an older history was being embedded.
    server.embedding_serial = True
    server.embedding_delay = 0.5

    async def run() -> list[Hit]:
        semantic = semantic_for(server, MEMCHAT_EMBEDDING_TIMEOUT="0.7")
        async with opened(str(tmp_path / "m.db")) as store:
            memory = store.memory("ann")
            await memory.add_items([item for n in range(200) for item in exchange(f"filler {n} about the weather")])
            await memory.add_items(exchange("my Volvo is red"))
            filling = semantic.fill(memory)
            await asyncio.sleep(0.15)  # the first batch is at the server
            found = await semantic.hits(memory, "which automobile do I drive?", 3)
            assert not filling.done()
            assert semantic.notices() == ()  # no timeout was met
            await semantic.aclose()
            return found

    assert asyncio.run(run()), "the question got no answer in time"
