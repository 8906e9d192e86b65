"""Search by meaning at scale: one user's long history with 1,536-number vectors, on SQLite and PostgreSQL.

Run from the repository root, after ``pip install -e '.[test]'``::

    .venv/bin/python bench/vectors.py [--messages 100000] [--stores sqlite,postgres] [--code PATH]

Each store gets one user's history of MESSAGES generated messages (nothing is downloaded), with the
vectors the test server's ``fake-dense-1536`` model gives them (each word a fixed random direction, a
message the sum of its words'), written through memchat's own store code. Then, in a fresh process,
as a one-shot run would (started as a run starts, the question asked at once): the first search by
meaning and the later ones (the question's embedding timed apart, from the test server on 127.0.0.1),
that process's peak memory, and recall of the true nearest 10 (by an exact scan done here) among the
10 found; ``--starts`` such processes (3), the first search their median. Last, whole one-shot piped turns
(``python agent.py`` with a question on stdin) with search by meaning and with it off, run alternately.

``--code PATH`` measures the memchat checked out at PATH instead of this one (the benchmark, the
test server and the texts stay this checkout's), to put the code before a change beside the code after.
PostgreSQL runs in a database of this run's own (``MEMCHAT_BENCH_POSTGRES``), dropped after it.
``--keep DIR`` plants each store once and keeps it (SQLite in DIR, PostgreSQL in a database named
by the count), so a change to how a store is searched is measured again without an hour of planting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from scratch import postgres_database  # noqa: E402

from fake_openai import FakeOpenAI, direction  # noqa: E402

USER = "bench"
MODEL = "fake-dense-1536"
SIZE = 1536
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "si", "tu", "va", "zo") for b in range(200)]
QUESTIONS = 20
BATCH = 2000


def texts(count: int, seed: int) -> list[str]:
    """Messages of 4 to 12 words from a vocabulary of 2,000, the same for every run of a seed."""
    chance = random.Random(seed)
    return [" ".join(chance.choices(WORDS, k=chance.randint(4, 12))) for _ in range(count)]


def vectors(batch: list[str], table: Any) -> Any:
    """What the test server answers for each text, computed here at once: the sum of its words' directions."""
    import numpy as np

    index = {word: n for n, word in enumerate(WORDS)}
    counts = np.zeros((len(batch), len(WORDS)), dtype=np.float32)
    for row, text in enumerate(batch):
        for word in text.split():
            counts[row, index[word]] += 1
    made = counts @ table
    return made / np.linalg.norm(made, axis=1, keepdims=True)


def plant(location: str, count: int, questions: list[str], graph_from: int | None) -> list[list[int]]:
    """The history, written through the measured code's store; the true nearest 10 of each question (by position).

    ``graph_from`` lowers the count of vectors from which SQLite makes a graph (the smoke run's).
    """
    import numpy as np

    from memchat.stores import open_store

    if graph_from is not None:
        from memchat.stores import graph

        graph.TAIL_MOST = graph_from

    table = np.array([direction(word, SIZE) for word in WORDS], dtype=np.float32)
    asked = vectors(questions, table)
    best: list[list[tuple[float, int]]] = [[] for _ in questions]

    async def write() -> None:
        store = await open_store(location)
        memory = store.memory(USER)
        planted = texts(count, seed=1)
        # PostgreSQL's HNSW index is made after the rows, as for any bulk load: pgvector adds about 250
        # vectors a second to an index here, so a million written through it would take over an hour.
        bulk = getattr(store, "pgvector", False) and hasattr(store, "_indexed_sizes")
        if bulk:
            store._indexed_sizes.add(SIZE)
        for start in range(0, count, BATCH):
            batch = planted[start : start + BATCH]
            await memory.add_items([{"role": "user", "content": text} for text in batch])
            rows = sorted(await memory.unembedded(MODEL, len(batch)))
            made = vectors([text for _, text in rows], table)
            await memory.save_vectors(MODEL, [(at, text, made[n].tobytes()) for n, (at, text) in enumerate(rows)])
            scores = asked @ made.T
            for q in range(len(questions)):
                top = np.argsort(-scores[q])[:10]
                merged = best[q] + [(float(scores[q][n]), rows[n][0]) for n in top]
                best[q] = sorted(merged, reverse=True)[:10]
        # As memchat index ends: nothing is left without a vector, and what a store indexes on its own
        # (SQLite's graph, pgvector's copy) is brought up to date.
        await memory.unembedded(MODEL, 1)
        if hasattr(memory, "index_vectors"):  # code from before it had none
            await memory.index_vectors(MODEL)
        await store.close()
        if bulk:
            from sqlalchemy import text as sql

            # memchat's own index, made by a store that waits as long as it takes (minutes at a million).
            patient = type(store).connect(location, timeout=24 * 3600)
            async with patient.connection() as conn:
                await conn.execute(sql("SET LOCAL maintenance_work_mem = '2GB'"))
                await patient.index_size(conn, SIZE)
            await patient.close()

    asyncio.run(write())
    return [[position for _, position in found] for found in best]


def child(location: str, url: str, questions: list[str]) -> None:
    """In a process of its own, as a one-shot run: search each question, print times, hits and peak memory."""
    import resource

    from config import load_settings
    from memchat.conversation import Conversation
    from memchat.stores import open_store

    async def search() -> dict[str, Any]:
        settings = load_settings(
            env={"OPENAI_BASE_URL": url, "MEMCHAT_EMBEDDING_MODEL": MODEL, "OPENAI_API_KEY": "x"}, user=USER
        )
        store = await open_store(location)
        # As a run starts: what the word index lacks is indexed, what the search needs (SQLite's graph)
        # opens, the background fill begins (``Conversation.catch_up``); then the memory is read (its size,
        # for the banner), and the question comes at once.
        conversation = Conversation(settings, store)
        await conversation.catch_up()
        memory, semantic = conversation.memory, conversation.runners.semantic
        assert semantic is not None
        filling = semantic.fill(memory)
        await memory.count()
        seconds, embedding, found = [], [], []
        for question in questions:
            started = time.perf_counter()
            # As semantic.hits does: what the search needs is made ready while the question is embedded.
            prepared = (
                asyncio.ensure_future(memory.prepare_search(MODEL)) if hasattr(memory, "prepare_search") else None
            )
            (vector,) = await semantic._embed([question], quick=True)
            embedded = time.perf_counter()
            if prepared is not None:
                await prepared
            # The search itself, as semantic.hits does it: in the store where it can, else on vectors held.
            hits = await memory.nearest(MODEL, vector, 10) if hasattr(memory, "nearest") else None  # code from before
            if hits is None:
                hits = (await semantic._held_for(memory)).nearest(vector, 10)
            seconds.append(time.perf_counter() - embedded)
            embedding.append(embedded - started)
            found.append([hit.position for hit in hits])
        # Of what the process holds, the pages of files it maps (SQLite's graph), read while they are
        # mapped: the system's file cache, shared by every process that maps them.
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        mapped = int(status.get("RssFile", "0 kB").split()[0]) / 1024
        await filling
        await semantic.aclose()
        await store.close()
        return {"seconds": seconds, "embedding": embedding, "found": found, "mapped_mb": mapped}

    result = asyncio.run(search())
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def one_shot(code: Path, location: str, url: str, meaning: bool) -> tuple[float, float]:
    """Seconds and peak MB of ``python agent.py`` answering one question on a pipe."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": url,
        "OPENAI_API_KEY": "x",
        # Unset, not "off", which code before that setting would take for a model's name.
        "MEMCHAT_EMBEDDING_MODEL": MODEL if meaning else "",
        "HOME": tempfile.mkdtemp(),
    }
    env.pop("MEMCHAT_ENCRYPTION_KEY", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(code / "agent.py"), "--db", location, "--user", USER],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(b"which of my kalo notes mention pe12?\n")
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status:
        raise SystemExit(f"agent.py failed: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


def measure(
    store: str,
    location: str,
    code: Path,
    count: int,
    url: str,
    turns: int,
    graph_from: int | None = None,
    kept: Path | None = None,
    starts: int = 3,
) -> dict[str, Any]:
    """One store's row; with ``kept`` (a file for the true nearest), a store planted by an earlier run is reused."""
    questions = texts(QUESTIONS, seed=2)
    if kept is not None and kept.exists():
        truth, planted = json.loads(kept.read_text())
    else:
        started = time.perf_counter()
        truth = run_in(code, "plant", location, count, questions, graph_from)
        planted = time.perf_counter() - started
        if kept is not None:
            kept.write_text(json.dumps([truth, planted]))
    # A first search is one sample a process: several processes, so one busy moment does not make the figure.
    results = [run_in(code, "child", location, url, questions) for _ in range(starts)]
    result = results[0]
    found = sum(len(set(t) & set(f)) for t, f in zip(truth, result["found"], strict=True))
    later = [seconds for each in results for seconds in each["seconds"][1:]]
    size = Path(location).stat().st_size if store == "sqlite" else None
    graphs = Path(location + "-graphs")
    graph_size = sum(file.stat().st_size for file in graphs.iterdir()) if graphs.is_dir() else 0
    with_meaning, by_words = [], []
    for _ in range(turns):  # alternately, so a busy moment of the machine falls on both
        with_meaning.append(one_shot(code, location, url, True))
        by_words.append(one_shot(code, location, url, False))
    return {
        # PostgreSQL's search is as quick as its shared buffers hold the index (pgvector's own advice).
        "store": f"{store} (shared_buffers {server_setting(location, 'shared_buffers')})"
        if store == "postgres"
        else store,
        "messages": count,
        "planted_s": planted,
        "first_ms": statistics.median(each["seconds"][0] for each in results) * 1000,
        "later_p50_ms": statistics.median(later) * 1000,
        "later_p95_ms": sorted(later)[max(0, round(0.95 * len(later)) - 1)] * 1000,
        "embedding_ms": statistics.median(seconds for each in results for seconds in each["embedding"]) * 1000,
        "recall_at_10": found / (10 * len(questions)),
        "search_peak_mb": max(each["peak_mb"] for each in results),
        "search_mapped_mb": result.get("mapped_mb", 0.0),
        "file_mb": None if size is None else size / 1e6,
        "graph_mb": graph_size / 1e6,
        "turn_meaning_s": statistics.median(s for s, _ in with_meaning),
        "turn_words_s": statistics.median(s for s, _ in by_words),
        "turn_meaning_peak_mb": max(mb for _, mb in with_meaning),
    }


def server_setting(location: str, name: str) -> str:
    import asyncpg

    async def read() -> str:
        conn = await asyncpg.connect(location)
        try:
            return str(await conn.fetchval(f"SHOW {name}"))
        finally:
            await conn.close()

    return asyncio.run(read())


def run_in(code: Path, role: str, *args: Any) -> Any:
    """This file, run as ``role`` with the memchat at ``code`` first on the path; its JSON answer."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, __file__, f"--{role}", json.dumps(args)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{role} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def row(result: dict[str, Any]) -> str:
    file_mb = "-" if result["file_mb"] is None else f"{result['file_mb']:,.0f}"
    return (
        f"| {result['store']} | {result['messages']:,} | {result['first_ms']:.1f} | "
        f"{result['later_p50_ms']:.1f} / {result['later_p95_ms']:.1f} | "
        f"{result['first_ms'] / result['later_p50_ms']:.2f} | {result['embedding_ms']:.1f} | {result['recall_at_10']:.1%} | "
        f"{result['search_peak_mb']:,.0f} ({result['search_mapped_mb']:,.0f}) | {result['turn_meaning_s']:.2f} / {result['turn_words_s']:.2f} | "
        f"{result['turn_meaning_s'] / result['turn_words_s']:.2f} | {result['turn_meaning_peak_mb']:,.0f} | "
        f"{file_mb} | {result['graph_mb']:,.1f} | {result['planted_s']:,.0f} |"
    )


HEADER = (
    "| store | messages | first search ms | later p50 / p95 ms | first / later | question embedding p50 ms | "
    "recall of the true 10 | "
    "search process peak MB (of it mapped files) | one-shot turn s, meaning / words | ratio | turn peak MB | file MB | "
    "graph MB | planting s |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--code", type=Path, default=ROOT, help="the memchat checkout to measure")
    parser.add_argument("--turns", type=int, default=3, help="one-shot turns of each kind")
    parser.add_argument("--starts", type=int, default=3, help="fresh search processes (the first search: their median)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="plant each store once and keep it (SQLite files in this folder, a PostgreSQL database named by the "
        "count), for later runs that change only how it is searched",
    )
    parser.add_argument("--smoke", action="store_true", help="a small, quick run (the test suite's)")
    parser.add_argument("--plant", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plant:
        print(json.dumps(plant(*json.loads(args.plant))))
        return
    if args.child:
        child(*json.loads(args.child))
        return
    count, turns, starts = (3000, 1, 2) if args.smoke else (args.messages, args.turns, args.starts)
    # The smoke run is far below the count from which SQLite makes a graph: it makes one all the same.
    graph_from = 1000 if args.smoke else None
    server = FakeOpenAI().start()
    print(f"{count:,} messages of one user, {SIZE}-number vectors ({MODEL}), code: {args.code}\n")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as work:
        folder = args.keep or Path(work)
        folder.mkdir(parents=True, exist_ok=True)
        for store in args.stores.split(","):
            kept = folder / f"{store}-{count}.truth.json" if args.keep else None
            # A kept store without its truth was not planted whole: it is planted again from nothing.
            again = kept is not None and not kept.exists()
            if store == "sqlite":
                location = str(folder / f"sqlite-{count}.db")
                if again:
                    for part in folder.glob(f"sqlite-{count}.db*"):
                        if part.is_dir():
                            shutil.rmtree(part)
                        else:
                            part.unlink()
                result = measure(store, location, args.code, count, server.url, turns, graph_from, kept, starts)
                print(row(result), flush=True)
            else:

                async def database(kind: str, kept: Path | None, again: bool) -> None:
                    name = f"memchat_vectors_kept_{count}" if kept is not None else None
                    async with postgres_database("vectors", name, again) as location:
                        result = await asyncio.to_thread(
                            measure, kind, location, args.code, count, server.url, turns, None, kept, starts
                        )
                        print(row(result), flush=True)

                asyncio.run(database(store, kept, again))
    server.stop()


if __name__ == "__main__":
    main()
