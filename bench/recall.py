"""Recall: how often the evidence for a question reaches the model, in a long generated conversation.

Run from the repository root: ``.venv/bin/python bench/recall.py`` (after
installing ``.[test]``); ``--smoke`` is the small run the test suite does.
From a seed (nothing is downloaded) it writes one user's conversation in the
style of LongMemEval: filler exchanges about many topics, with personal facts
planted at every depth, some of them updated later (only the newest value is
right). Then, for each question, it builds the request memchat would send
(``TurnRunner.request_for``: the summary, the newest turns that fit, and the
recalled older messages) and checks whether the fact that answers the
question is in it. It reports, by kind of question and by depth, the share of
questions whose evidence reached the model, the tokens of the request against
the budget, and the time to build a request (search included), p50 / p95, whole and
less the wait for the question's embedding (the embedding server's share), on
SQLite, PostgreSQL and Redis, beside the summary-only baseline (``MEMCHAT_RECALL=off``
with an ideal summary that keeps the oldest facts word for word until its
quarter of the budget is full).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from embedder import KINDS, started  # noqa: E402
from scratch import postgres_database, redis_keys  # noqa: E402

from config import load_settings  # noqa: E402
from memchat.context.semantic import Semantic  # noqa: E402
from memchat.stores import open_store  # noqa: E402
from memchat.stores.protocol import Memory, Store, Summary  # noqa: E402
from memchat.turn import TurnRunner  # noqa: E402

USER = "bench"
BUDGET = 2000
TOPICS = (
    "tea gardens",
    "railway timetables",
    "sourdough starters",
    "tide tables",
    "chess openings",
    "cloud types",
    "violin strings",
    "bicycle gears",
    "moss gardens",
    "paper lanterns",
    "salt marshes",
    "beekeeping",
)
RELATIONS = ("sister", "brother", "neighbour", "dentist", "landlord", "cousin", "mentor", "colleague", "aunt", "uncle")
NAMES = ("Ingrid", "Tomasz", "Keiko", "Amara", "Lucien", "Priya", "Mateo", "Sanna", "Oskar", "Yusuf", "Dalia", "Ravi")
THINGS = ("spare key", "passport", "winter boots", "old letters", "fishing rod", "tax papers", "toolbox", "camera")
PLACES = ("blue cupboard", "attic trunk", "garden shed", "piano bench", "hall closet", "cellar shelf", "car boot")
CITIES = ("Bergen", "Porto", "Osaka", "Tallinn", "Cusco", "Hobart", "Tromso", "Ghent", "Split", "Quebec")
# Facts asked about in other words entirely: no word of the question (nor its stem) is in the fact,
# so only search by meaning can find them. (fact, question, the words of the answer)
PARAPHRASES = (
    ("Our daughter takes violin lessons from Mrs Okafor on Thursdays.", "Who teaches music to my child?", "Okafor"),
    ("I am allergic to shellfish; prawns make my throat swell.", "Which seafood should I avoid?", "shellfish"),
    ("We adopted a greyhound called Biscuit last spring.", "What did we name our dog?", "Biscuit"),
    ("I drive a green Skoda estate these days.", "Which automobile do I own?", "Skoda"),
    ("I work as a night nurse at the Royal Infirmary.", "What is my occupation?", "night nurse"),
    ("Our wedding anniversary falls on the ninth of October.", "When did I get married?", "ninth of October"),
    ("I am learning Portuguese before the trip to Lisbon.", "Which language am I studying?", "Portuguese"),
    ("I broke my left wrist skiing in 2019.", "Have I ever fractured a bone?", "wrist"),
    ("The wifi password at home is lanternfish42.", "What is the key for our internet network?", "lanternfish42"),
    ("My grandmother grew up in a village near Krakow.", "Where was my granny raised?", "Krakow"),
    ("Since the coeliac diagnosis I cannot eat gluten.", "Which dietary restriction do I have?", "gluten"),
    ("Our flat is on the fourth floor and the building has no lift.", "How high up is my apartment?", "fourth floor"),
    ("My favourite author is Ursula Le Guin.", "Which writer do I admire most?", "Le Guin"),
    ("I sold my motorbike to pay for the new roof.", "What did I part with to fund repairs on the house?", "motorbike"),
    (
        "My son plays goalkeeper for the under-twelves on Saturdays.",
        "What position does my boy have in his football team?",
        "goalkeeper",
    ),
)


@dataclass(frozen=True)
class Question:
    # "same words": the question reuses the fact's words; "reworded": other words around the same key
    # nouns; "paraphrase": no word in common at all (see PARAPHRASES); "updated": the fact changed
    # later, and only the newest value is right.
    kind: str
    text: str
    # Words only the answering exchange holds: it reached the model if the request holds them.
    evidence: str
    depth: float  # 0 = the oldest message, 1 = the newest


def conversation(pairs: int, facts: int, seed: int) -> tuple[list[str], list[Question]]:
    """User messages (each gets a reply when stored) and the questions about the facts among them."""
    rng = random.Random(seed)
    messages = [
        f"Tell me something about {rng.choice(TOPICS)}, point {n}: I am curious about {rng.choice(TOPICS)}."
        for n in range(pairs)
    ]
    questions: list[Question] = []
    paraphrases = PARAPHRASES[: max(3, facts // 7)]
    chosen = sorted(rng.sample(range(pairs - 10), facts + len(paraphrases)))
    # The paraphrased facts spread evenly over every depth, the others in the slots between.
    spread = {chosen[n * len(chosen) // len(paraphrases)] for n in range(len(paraphrases))}
    for slot, (fact, question, evidence) in zip(sorted(spread), paraphrases, strict=True):
        messages[slot] = fact
        questions.append(Question("paraphrase", question, evidence, slot / pairs))
    slots = [slot for slot in chosen if slot not in spread]
    taken = set(chosen)
    for number, slot in enumerate(slots):
        depth = slot / pairs
        kind = number % 3
        if kind == 0:
            relation, name = RELATIONS[number % len(RELATIONS)], f"{NAMES[number % len(NAMES)]}{number}"
            messages[slot] = f"My {relation} number {number} is called {name}."
            questions.append(Question("same words", f"What is my {relation} number {number} called?", name, depth))
        elif kind == 1:
            thing, place = THINGS[number % len(THINGS)], f"{PLACES[number % len(PLACES)]} {number}"
            messages[slot] = f"I keep the {thing} number {number} in the {place}."
            questions.append(Question("reworded", f"Where did I put {thing} number {number}?", place, depth))
        else:
            old, new = CITIES[number % len(CITIES)], CITIES[(number + 3) % len(CITIES)]
            messages[slot] = f"My friend number {number} lives in {old}{number}."
            later = rng.randrange(slot + 1, pairs - 5)
            while later in taken:  # an update never overwrites another fact, nor is overwritten
                later = rng.randrange(slot + 1, pairs - 5)
            taken.add(later)
            messages[later] = f"Update: my friend number {number} moved, and now lives in {new}{number}."
            questions.append(
                Question("updated", f"Where does my friend number {number} live now?", f"{new}{number}", depth)
            )
    return messages, questions


async def fill(store: Store, messages: list[str]) -> Memory:
    memory = store.memory(USER)
    batch: list[dict[str, str]] = []
    for text in messages:
        batch += [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted, thank you."}]
        if len(batch) >= 2000:
            await memory.add_items(batch)
            batch = []
    if batch:
        await memory.add_items(batch)
    return memory


async def ideal_summary(memory: Memory, messages: list[str], runner: TurnRunner) -> None:
    """The baseline's summary: the oldest facts word for word, until a quarter of the budget is full."""
    facts = [text for text in messages if not text.startswith("Tell me")]
    kept: list[str] = []
    for fact in facts:
        if runner.estimator.tokens(" ".join([*kept, fact])) > BUDGET // 4:
            break
        kept.append(fact)
    # It covers everything older than the newest turns that fill the rest of the budget, as a real fold would.
    from memchat.context.budget import build_context

    window = await build_context(memory, BUDGET * 3 // 4, runner.estimator)
    await memory.save_summary(Summary(" ".join(kept), window.turns[0].start - 1))


def depth_band(depth: float) -> str:
    return "oldest third" if depth < 1 / 3 else "middle third" if depth < 2 / 3 else "newest third"


async def measure(
    location: str, pairs: int, facts: int, seed: int, recall: bool, embeddings: tuple[str, str] | None
) -> dict[str, object]:
    """One row: ``embeddings``, if given, is the (URL, model) of an embeddings server to search by meaning too."""
    messages, questions = conversation(pairs, facts, seed)
    store = await open_store(location)
    try:
        memory = await fill(store, messages)
        if location.startswith("postgresql"):
            # What autovacuum does within a minute of a bulk load: without statistics the planner reads
            # every row of the user for each page of turns.
            from sqlalchemy import text

            async with store.connection(write=True) as conn:  # type: ignore[attr-defined]
                await conn.execute(text("ANALYZE"))
        url, model = embeddings or ("http://127.0.0.1:9/v1", "")
        settings = replace(
            load_settings(env={"OPENAI_BASE_URL": url, "MEMCHAT_EMBEDDING_MODEL": model}),
            context_tokens=BUDGET,
            recall=recall,
        )
        semantic = Semantic(settings) if model else None
        if semantic is not None:
            started = time.perf_counter()
            embedded = await semantic.fill(memory)
            print(f"  embedded {embedded:,} messages in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        runner = TurnRunner(settings, semantic=semantic)
        if not recall:
            await ideal_summary(memory, messages, runner)
        hits: dict[str, list[bool]] = {}
        seconds: list[float] = []
        embedding: list[float] = []
        building: list[float] = []
        tokens: list[int] = []
        embedded_for = timed_embedding(semantic)
        for question in questions:
            embedded_for.clear()
            started = time.perf_counter()
            request = await runner.request_for(memory, question.text)
            context, instructions = request.context, request.instructions
            seconds.append(time.perf_counter() - started)
            # The build without the wait for the question's embedding: the server's share, not memchat's.
            building.append(seconds[-1] - sum(embedded_for))
            if semantic is not None:
                # The embedding server's own share, timed alone right after, so the two are compared fairly.
                started = time.perf_counter()
                await semantic.hits(memory, question.text, 1)
                embedding.append(time.perf_counter() - started)
            sent = instructions + json.dumps(context.items, ensure_ascii=False) + question.text
            tokens.append(runner.estimator.tokens(instructions) + runner.estimator.item_tokens(context.items))
            found = question.evidence in sent
            hits.setdefault(question.kind, []).append(found)
            hits.setdefault(depth_band(question.depth), []).append(found)
        await runner.aclose()
        if semantic is not None:
            await semantic.aclose()
        return {"hits": hits, "seconds": seconds, "tokens": tokens, "embedding": embedding, "building": building}
    finally:
        await store.close()


def timed_embedding(semantic: Semantic | None) -> list[float]:
    """The seconds each question's embedding call takes, appended as ``semantic`` makes them."""
    spent: list[float] = []
    if semantic is None:
        return spent
    embed = semantic._embed

    async def timed(texts: list[str], *, quick: bool) -> list[bytes]:
        started = time.perf_counter()
        try:
            return await embed(texts, quick=quick)
        finally:
            if quick:
                spent.append(time.perf_counter() - started)

    semantic._embed = timed  # type: ignore[method-assign]
    return spent


def share(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.0f}% ({sum(values)}/{len(values)})" if values else "-"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(
    sizes: tuple[int, ...], facts: int, stores: tuple[str, ...], seed: int, embeddings: tuple[str, str] | None
) -> None:
    work = Path(tempfile.mkdtemp(prefix="memchat-recall-"))
    columns = ("same words", "reworded", "paraphrase", "updated", "oldest third", "middle third", "newest third")
    searches = [("summary only", False, None), ("words", True, None)]
    if embeddings is not None:
        searches.append((f"words + meaning ({embeddings[1]})", True, embeddings))
    print(f"budget {BUDGET} tokens, {facts} planted facts and their paraphrases, seed {seed}\n")
    print(
        "| store | messages | recall | "
        + " | ".join(columns)
        + " | tokens max | build p50 / p95 ms | less the embedding |"
    )
    print("|---|---:|---|" + "---:|" * len(columns) + "---:|---:|---:|")
    for kind in stores:
        for size in sizes:
            for label, recall, embedder in searches:
                print(f"{kind} {size:,} messages, {label}…", file=sys.stderr, flush=True)
                path = work / f"recall-{size}-{len(label)}.db"
                found = asyncio.run(measure_afresh(kind, path, size // 2, facts, seed, recall, embedder))
                hits: dict[str, list[bool]] = found["hits"]  # type: ignore[assignment]
                seconds: list[float] = found["seconds"]  # type: ignore[assignment]
                tokens: list[int] = found["tokens"]  # type: ignore[assignment]
                embedding: list[float] = found["embedding"]  # type: ignore[assignment]
                building: list[float] = found["building"]  # type: ignore[assignment]
                if embedding:
                    print(
                        f"  embedding the question and comparing it alone: p50 {1000 * statistics.median(embedding):.1f} "
                        f"/ p95 {1000 * percentile(embedding, 0.95):.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                print(
                    f"| {kind} | {size:,} | {label} | "
                    + " | ".join(share(hits.get(column, [])) for column in columns)
                    + f" | {max(tokens):,} of {BUDGET:,} | {1000 * statistics.median(seconds):.1f} / "
                    f"{1000 * percentile(seconds, 0.95):.1f} | {1000 * statistics.median(building):.1f} / "
                    f"{1000 * percentile(building, 0.95):.1f} |",
                    flush=True,
                )


@contextlib.asynccontextmanager
async def scratch_store(kind: str, path: Path) -> AsyncIterator[str]:
    """An empty store of ``kind`` for one measurement: a new SQLite file, or a database or keys of this run's own."""
    if kind == "sqlite":
        yield str(path)
    elif kind == "redis":
        with redis_keys("recall") as location:
            yield location
    else:
        async with postgres_database("recall") as location:
            yield location


async def measure_afresh(kind: str, path: Path, *args: Any) -> dict[str, object]:
    async with scratch_store(kind, path) as location:
        return await measure(location, *args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run (the test suite's)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores", default="sqlite,postgres,redis", help="comma-separated: sqlite, postgres, redis")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of messages")
    parser.add_argument(
        "--embeddings",
        choices=KINDS,
        default="none",
        help="add rows searching by meaning too: all-MiniLM-L6-v2 (extra: bench), or the test server's toy model",
    )
    args = parser.parse_args()
    embedder = started(args.embeddings)
    if args.smoke:
        main((600,), facts=12, stores=("sqlite",), seed=args.seed, embeddings=embedder)
    else:
        sizes = tuple(int(size) for size in args.sizes.split(","))
        main(sizes, facts=100, stores=tuple(args.stores.split(",")), seed=args.seed, embeddings=embedder)
