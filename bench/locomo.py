"""Recall on LoCoMo: how often the evidence for a question about a real, long conversation reaches the model.

Run from the repository root, after ``pip install -e '.[test,bench]'``::

    .venv/bin/python bench/locomo.py PATH [PATH...]

PATH is a LoCoMo conversation in its published format: a file of one conversation
(``speaker_a``, ``session_N``, ``qa``...), the published ``locomo10.json`` (a list of
samples, each with ``conversation`` and ``qa``), or a folder of such files. The data is
not part of this repository (its licence is research only); nothing is downloaded.

Each conversation is planted as one user's memory in a new SQLite file: the first
speaker as the user, the second as the assistant, every message stored at its
session's date and time. Then every question is asked through memchat's own request
building (``TurnRunner.request_for``: the summary, the newest turns, what recall
brings back), and ``search_memory`` is called with the question, as a model would.
A question counts when the text of every turn its evidence names is in the request.

It reports, by category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop; 5,
adversarial, apart) and by how far back the evidence lies: every evidence turn in the
request, at least one, the mean tokens of the request against the budget, and the time to
build a request (p50 / p95, the embedding call included). Beside memchat, two baselines it
computes itself on the same messages and budget: BM25 over single messages, and the
nearest messages by the same embedding model, each filling a quarter of the budget with
its best hits and the rest with the newest messages.

Tokens are counted as 4 characters a token (English text on OpenAI's tokenizers; memchat
learns its server's ratio from the first reply) plus 4 a message, the same for every row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from embedder import KINDS, started  # noqa: E402

from config import load_settings  # noqa: E402
from memchat.stores import open_store  # noqa: E402
from memchat.stores.base import END  # noqa: E402
from memchat.stores.search import STOPWORDS, words  # noqa: E402

USER = "locomo"
CHARS_PER_TOKEN = 4.0
MESSAGE_TOKENS = 4
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
DEPTHS = ((0, 100), (100, 300), (300, 500), (500, 10**9))


@dataclass(frozen=True)
class Message:
    dia_id: str
    user: bool
    text: str
    when: datetime


@dataclass(frozen=True)
class Question:
    text: str
    category: int
    # Indexes into the conversation's messages.
    evidence: tuple[int, ...]


@dataclass
class Conversation:
    name: str
    messages: list[Message]
    questions: list[Question]

    def back(self, question: Question) -> int:
        """How many messages back from the newest its oldest evidence lies."""
        return len(self.messages) - min(question.evidence)


# -- reading LoCoMo ---------------------------------------------------------------------------------


def session_time(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' as a datetime."""
    return datetime.strptime(" ".join(text.replace(",", "").split()), "%I:%M %p on %d %B %Y")


def message_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text") or "").strip()
    caption = turn.get("blip_caption")
    # The photo itself is not stored; what it shows is, as a person would say it.
    return f"{text} [shares a photo: {caption}]" if caption else text


def conversation_of(name: str, data: dict[str, Any], qa: list[dict[str, Any]]) -> Conversation:
    speaker = data["speaker_a"]
    messages: list[Message] = []
    index: dict[str, int] = {}
    numbers = sorted(int(key.split("_")[1]) for key in data if re.fullmatch(r"session_\d+", key))
    for number in numbers:
        when = session_time(data[f"session_{number}_date_time"])
        for offset, turn in enumerate(data[f"session_{number}"]):
            index[str(turn["dia_id"]).strip()] = len(messages)
            # A minute a turn keeps the order and the day; the session's own time is its first turn's.
            moment = when + timedelta(minutes=offset)
            messages.append(Message(turn["dia_id"], turn["speaker"] == speaker, message_text(turn), moment))
    questions = []
    for item in qa:
        ids = [part.strip() for ref in item.get("evidence") or [] for part in str(ref).split(";")]
        evidence = tuple(sorted({index[ref] for ref in ids if ref in index}))
        # A few questions name no turn that exists: they cannot be scored.
        if evidence and item.get("category") in CATEGORIES:
            questions.append(Question(str(item["question"]), int(item["category"]), evidence))
    return Conversation(name, messages, questions)


def load(paths: Sequence[str]) -> list[Conversation]:
    files = [file for path in map(Path, paths) for file in (sorted(path.glob("*.json")) if path.is_dir() else [path])]
    found = []
    for file in files:
        data = json.loads(file.read_text())
        samples = data if isinstance(data, list) else [data]
        for number, sample in enumerate(samples):
            conversation = sample.get("conversation", sample)
            name = str(sample.get("sample_id") or (file.stem if len(samples) == 1 else f"{file.stem}-{number}"))
            found.append(conversation_of(name, conversation, sample.get("qa", [])))
    return found


# -- counting ---------------------------------------------------------------------------------------


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_tokens(text: str) -> int:
    return tokens(text) + MESSAGE_TOKENS


def present(evidence: Iterable[int], messages: list[Message], sent: str) -> list[bool]:
    return [messages[index].text in sent for index in evidence]


# -- the baselines ----------------------------------------------------------------------------------


def plain_words(text: str) -> list[str]:
    return [word for word in words(text) if word not in STOPWORDS]


class BM25:
    """Okapi BM25 over single messages (k1 1.2, b 0.75): what a plain search would do."""

    def __init__(self, texts: list[str]) -> None:
        self.docs = [Counter(plain_words(text)) for text in texts]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.mean = statistics.mean(self.lengths) or 1
        frequency: Counter[str] = Counter(word for doc in self.docs for word in doc)
        n = len(self.docs)
        self.idf = {word: math.log(1 + (n - df + 0.5) / (df + 0.5)) for word, df in frequency.items()}

    def ranked(self, query: str) -> list[int]:
        terms = set(plain_words(query))
        scores = {}
        for index, (doc, length) in enumerate(zip(self.docs, self.lengths, strict=True)):
            score = 0.0
            for term in terms & doc.keys():
                tf = doc[term]
                score += self.idf[term] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / self.mean))
            if score > 0:
                scores[index] = score
        return sorted(scores, key=lambda index: -scores[index])


def baseline_request(ranked: list[int], messages: list[Message], question: str, budget: int) -> tuple[str, int]:
    """The best hits filling a quarter of the budget, the newest messages the rest; the text sent and its tokens."""
    used = message_tokens(question)
    chosen: set[int] = set()
    for index in ranked:
        cost = message_tokens(messages[index].text)
        if used + cost > budget // 4:
            break
        chosen.add(index)
        used += cost
    for index in range(len(messages) - 1, -1, -1):
        if index in chosen:
            continue
        cost = message_tokens(messages[index].text)
        if used + cost > budget:
            break
        chosen.add(index)
        used += cost
    return "\n".join(messages[index].text for index in sorted(chosen)), used


# -- embeddings -------------------------------------------------------------------------------------


def embed(url: str, model: str, texts: list[str]) -> Any:
    import numpy as np

    vectors = []
    for start in range(0, len(texts), 256):
        body = json.dumps({"model": model, "input": texts[start : start + 256]}).encode()
        request = urllib.request.Request(f"{url}/embeddings", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            data = json.loads(answer.read())["data"]
        vectors += [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]
    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)


# -- memchat ----------------------------------------------------------------------------------------


async def plant(location: str, conversation: Conversation) -> Any:
    """The conversation as one user's memory, every message stored at its session's time."""
    store = await open_store(location)
    memory = store.memory(USER)
    items = [{"role": "user" if m.user else "assistant", "content": m.text} for m in conversation.messages]
    await memory.add_items(items)
    positions = [position async for position, _ in memory.rows_forward(0, END)]  # type: ignore[attr-defined]
    assert len(positions) == len(items)
    # The SDK's table keeps when each message was stored; here, when it was said.
    with sqlite3.connect(location) as db:
        db.executemany(
            "UPDATE agent_messages SET created_at = ? WHERE id = ?",
            [(m.when.strftime("%Y-%m-%d %H:%M:%S"), p) for m, p in zip(conversation.messages, positions, strict=True)],
        )
    return store, memory


@dataclass
class Tally:
    """One row's counts."""

    every: list[bool] = field(default_factory=list)
    some: list[bool] = field(default_factory=list)
    by_category: dict[int, list[bool]] = field(default_factory=dict)
    by_depth: dict[int, list[bool]] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    # Each question's outcome, for --per-question.
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, question: Question, found: list[bool], depth: int, used: int, seconds: float = 0.0) -> None:
        self.outcomes.append({"question": question.text, "category": question.category, "found": found})
        self.by_category.setdefault(question.category, []).append(all(found))
        self.tokens.append(used)
        if seconds:
            self.seconds.append(seconds)
        if question.category == 5:
            return
        self.every.append(all(found))
        self.some.append(any(found))
        band = next(n for n, (low, high) in enumerate(DEPTHS) if low <= depth < high)
        self.by_depth.setdefault(band, []).append(all(found))


def share(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.1f}%" if values else "-"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


HEADER = (
    "| budget | recall | every evidence turn | at least one | multi-hop | temporal | open-domain | single-hop "
    "| adversarial | <100 back | 100-299 | 300-499 | 500+ | tokens mean | build p50 / p95 ms |"
)


def row(budget: int, label: str, tally: Tally) -> str:
    cells = [
        f"{budget:,}",
        label,
        f"**{share(tally.every)}**",
        share(tally.some),
        *(share(tally.by_category.get(category, [])) for category in (1, 2, 3, 4, 5)),
        *(share(tally.by_depth.get(band, [])) for band in range(len(DEPTHS))),
        f"{statistics.mean(tally.tokens):,.0f}" if tally.tokens else "-",
        f"{1000 * statistics.median(tally.seconds):.1f} / {1000 * percentile(tally.seconds, 0.95):.1f}"
        if tally.seconds
        else "-",
    ]
    return "| " + " | ".join(cells) + " |"


async def ask_memchat(runner: Any, memory: Any, question: str) -> tuple[str, str, int, int, float]:
    """The first request's text, what search_memory adds, both requests' tokens, and the build time."""
    from memchat.context.tools import ToolContext, search
    from memchat.items import describe
    from memchat.turn import tools_chars

    started = time.perf_counter()
    request = await runner.request_for(memory, question)
    seconds = time.perf_counter() - started
    texts = [describe(item)[1] for item in request.items]
    # The tools offered are sent with every request, their schemas counted as the server counts them.
    schemas = math.ceil(tools_chars(runner.offered(memory)) / CHARS_PER_TOKEN)
    first = schemas + message_tokens(request.instructions) + sum(map(message_tokens, texts)) + message_tokens(question)
    # The tool called with the question, as a model would, in the room the request left for it.
    searched = ToolContext(memory, runner.semantic, runner.estimator, request.room, set(request.positions))
    found = await search(searched, question)
    answering = first + message_tokens(found) + message_tokens(json.dumps({"query": question}))
    return "\n".join([request.instructions, *texts]), found, first, answering, seconds


@dataclass
class Rows:
    tallies: dict[tuple[int, str], Tally] = field(default_factory=dict)

    def tally(self, budget: int, label: str) -> Tally:
        return self.tallies.setdefault((budget, label), Tally())


async def measure(
    conversation: Conversation,
    work: Path,
    budgets: Sequence[int],
    embeddings: tuple[str, str] | None,
    rows: Rows,
    progress: Callable[[str], None],
) -> None:
    from memchat.context.semantic import Semantic
    from memchat.turn import TurnRunner

    messages = conversation.messages
    texts = [m.text for m in messages]
    searches: list[tuple[str, tuple[str, str] | None]] = [("words", None)]
    if embeddings:
        searches.append(("words + meaning", embeddings))
    for label, embedder in searches:
        location = str(work / f"{conversation.name}-{len(label)}.db")
        store, memory = await plant(location, conversation)
        url, model = embedder or ("http://127.0.0.1:9/v1", "")
        semantic = None
        for budget in budgets:
            settings = replace(
                load_settings(env={"OPENAI_BASE_URL": url, "MEMCHAT_EMBEDDING_MODEL": model, "OPENAI_API_KEY": "x"}),
                context_tokens=budget,
                embedding_timeout=30.0,
            )
            if model and semantic is None:
                semantic = Semantic(settings)
                await semantic.fill(memory)
            runner = TurnRunner(settings, semantic=semantic)
            runner.estimator.chars_per_token = CHARS_PER_TOKEN
            for number, question in enumerate(conversation.questions):
                if number % 25 == 0:
                    progress(f"{conversation.name}: {label} at {budget:,}, question {number + 1}")
                sent, found, first, answering, seconds = await ask_memchat(runner, memory, question.text)
                depth = conversation.back(question)
                rows.tally(budget, f"memchat, {label}").add(
                    question, present(question.evidence, messages, sent), depth, first, seconds
                )
                rows.tally(budget, f"memchat, {label}, search_memory called").add(
                    question, present(question.evidence, messages, sent + "\n" + found), depth, answering
                )
            await runner.aclose()
        if semantic is not None:
            await semantic.aclose()
        await store.close()
    # The baselines rank each question once, then fill each budget from the same ranking.
    questions = conversation.questions
    baselines = [("baseline: BM25", [BM25(texts).ranked(question.text) for question in questions])]
    if embeddings:
        vectors = embed(*embeddings, texts)
        queries = embed(*embeddings, [question.text for question in questions])
        nearest = [[int(i) for i in (-(vectors @ query)).argsort()] for query in queries]
        baselines.append(("baseline: nearest by meaning", nearest))
    for budget in budgets:
        for label, rankings in baselines:
            for question, ranked in zip(questions, rankings, strict=True):
                sent, used = baseline_request(ranked, messages, question.text, budget)
                found = present(question.evidence, messages, sent)
                rows.tally(budget, label).add(question, found, conversation.back(question), used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="LoCoMo files (one conversation each, or locomo10.json) or folders")
    parser.add_argument("--budgets", default="2000,8000", help="comma-separated token budgets")
    parser.add_argument(
        "--embeddings",
        choices=KINDS,
        default="minilm",
        help="search by meaning with all-MiniLM-L6-v2 (extra: bench), the test server's toy model, or not at all",
    )
    parser.add_argument("--smoke", action="store_true", help="at most 20 questions a conversation (the test suite's)")
    parser.add_argument(
        "--per-question",
        metavar="FILE",
        help="also write each question's outcome in each row, one JSON object a line (to compare two runs)",
    )
    args = parser.parse_args()
    conversations = load(args.paths)
    if args.smoke:
        for conversation in conversations:
            conversation.questions = conversation.questions[:20]
    budgets = [int(budget) for budget in args.budgets.split(",")]
    embeddings = started(args.embeddings)
    rows = Rows()
    work = Path(tempfile.mkdtemp(prefix="memchat-locomo-"))
    for conversation in conversations:
        asyncio.run(
            measure(
                conversation, work, budgets, embeddings, rows, lambda line: print(line, file=sys.stderr, flush=True)
            )
        )
    counts = Counter(q.category for c in conversations for q in c.questions)
    print(
        f"{len(conversations)} conversations, {sum(len(c.messages) for c in conversations):,} messages, "
        + ", ".join(f"{counts[c]} {CATEGORIES[c]}" for c in sorted(counts))
        + f" questions; embeddings: {embeddings[1] if embeddings else 'none'}\n"
    )
    print(HEADER)
    print("|---:|---|" + "---:|" * 13)
    for (budget, label), tally in sorted(rows.tallies.items(), key=lambda entry: entry[0][0]):
        print(row(budget, label, tally), flush=True)
    if args.per_question:
        with open(args.per_question, "w") as out:
            for (budget, label), tally in rows.tallies.items():
                for outcome in tally.outcomes:
                    out.write(json.dumps({"budget": budget, "recall": label, **outcome}) + "\n")


if __name__ == "__main__":
    main()
