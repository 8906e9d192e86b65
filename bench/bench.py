"""Cost of one turn as memory grows: memchat next to the plain SQLiteSession loop.

Run from the repository root: ``.venv/bin/python bench/bench.py`` (after installing
``.[test]``); ``--smoke`` is the small run the test suite does so the benchmark
cannot break unnoticed. It starts the local OpenAI-compatible test server (no
delay, TCP_NODELAY, so a turn's time is mostly memchat's own), fills one user's
memory with 10, 1,000, 10,000 and 100,000 messages, and measures:

- memchat's own work, timed alone: building the request (reading the newest
  turns that fit the 8,000-token budget, and the summary) and storing a turn;
- a whole memchat turn (``TurnRunner.run``): request, test server, store;
- the plain loop the project grew from, ``Runner.run(agent, text,
  session=SQLiteSession(...))`` with no limit (at 100,000 messages: one turn).

memchat's turns are interleaved across the sizes (one turn at each size, then
the next round), so the ratio to the 10-message turn compares like with like
on a noisy machine. It prints p50 and p95, request size and tokens, peak Python
memory of a turn, and time to prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agents import Runner, SQLiteSession  # noqa: E402

from config import load_settings  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402
from memchat.context.budget import build_context  # noqa: E402
from memchat.stores.sqlite import SQLiteMemory, SQLiteStore  # noqa: E402
from memchat.turn import TurnRunner  # noqa: E402

USER = "bench"


async def fill(db: Path, messages: int) -> None:
    """``messages`` stored items, alternating user and assistant, as the SDK writes them."""
    await SQLiteStore(db).close()  # memchat's tables, as a first start makes them
    rows = []
    for n in range(messages // 2):
        user = {"role": "user", "content": f"Message {n}: tell me one more thing about the history of tea."}
        reply = {
            "id": "__fake_id__",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": f"Fact {n}: tea reached Europe in the 1600s.", "annotations": []}
            ],
        }
        rows += [(USER, json.dumps(user)), (USER, json.dumps(reply))]
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES (?)", (USER,))
        conn.executemany("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", rows)
    with sqlite3.connect(db) as conn:
        # Into the main file, so a copy of it holds everything.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


async def peak_mib(action: Callable[[], Awaitable[object]]) -> float:
    tracemalloc.start()
    await action()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def time_to_prompt(env: dict[str, str], cwd: Path, argv: list[str], ready: str, samples: int) -> float:
    """Median seconds from launch until ``ready`` shows on a pseudo-terminal."""
    import pexpect

    found = []
    for _ in range(samples):
        start = time.perf_counter()
        child = pexpect.spawn(sys.executable, argv, env=env, cwd=str(cwd), encoding="utf-8", timeout=60)
        child.expect(ready)
        found.append(time.perf_counter() - start)
        child.close(force=True)
    return statistics.median(found)


PLAIN_LOOP = """
from agents import Agent, Runner, SQLiteSession
session = SQLiteSession("bench", "plain.db")
input("bench> ")
"""


async def main(sizes: tuple[int, ...], rounds: int, prompt_samples: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="memchat-bench-"))
    with FakeOpenAI() as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.url,
            "TERM": "xterm-256color",
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "MEMCHAT_HISTORY_FILE": str(work / "history"),
        }
        settings = load_settings(user=USER, env=env)
        runner = TurnRunner(settings)
        stores: dict[int, SQLiteStore] = {}
        for size in sizes:
            print(f"filling {size:,} messages…", file=sys.stderr, flush=True)
            await fill(work / f"memchat-{size}.db", size)
            shutil.copy(work / f"memchat-{size}.db", work / f"plain-{size}.db")
            stores[size] = SQLiteStore(work / f"memchat-{size}.db")
        memories: dict[int, SQLiteMemory] = {size: store.memory(USER) for size, store in stores.items()}
        build: dict[int, list[float]] = {size: [] for size in sizes}
        store_turn: dict[int, list[float]] = {size: [] for size in sizes}
        turn: dict[int, list[float]] = {size: [] for size in sizes}
        reply = [{"role": "user", "content": "stored turn"}, {"role": "assistant", "content": "stored reply"}]

        async def one_turn(memory: SQLiteMemory, text: str) -> None:
            await runner.run(memory, text)
            await memory.undo()  # keep the size constant across rounds

        print(f"memchat: {rounds} rounds over {len(sizes)} sizes, interleaved…", file=sys.stderr, flush=True)
        for memory in memories.values():  # warm up: first calls load code and fill caches
            await one_turn(memory, "warm-up turn")
        for n in range(rounds):
            for size, memory in memories.items():
                build[size].append(
                    await timed(lambda m=memory: build_context(m, settings.context_tokens, runner.estimator))
                )
                store_turn[size].append(await timed(lambda m=memory: m.add_items(reply)))
                await memory.undo()
                turn[size].append(await timed(lambda m=memory, n=n: one_turn(m, f"benchmark turn {n}")))
        rows = []
        for size, memory in memories.items():
            await one_turn(memory, "measured request")
            body = server.requests[-1].body
            request_bytes = len(json.dumps(body))
            tokens = len(json.dumps(body.get("messages", ""))) // 4  # how the test server counts prompt tokens
            mib = await peak_mib(lambda m=memory: one_turn(m, "traced turn"))
            print(f"{size:>7,} messages: plain loop…", file=sys.stderr, flush=True)
            session = SQLiteSession(USER, work / f"plain-{size}.db")

            async def plain_turn(session: SQLiteSession = session) -> None:
                await Runner.run(runner.agent, "plain turn", session=session)
                for _ in range(2):
                    await session.pop_item()

            plain_rounds = 1 if size >= 100_000 else max(1, rounds // 4)
            plain = [await timed(plain_turn) for _ in range(plain_rounds)]
            plain_body = server.requests[-1].body
            plain_tokens = len(json.dumps(plain_body.get("messages", ""))) // 4
            # Tracing a turn that loads 100,000 items takes minutes: not traced there.
            plain_mib = f"{await peak_mib(plain_turn):.1f}" if size < 100_000 else "(not traced)"
            session.close()
            rows.append((size, request_bytes, tokens, mib, plain, len(json.dumps(plain_body)), plain_tokens, plain_mib))
        for store in stores.values():
            await store.close()

        (work / "plain.py").write_text(PLAIN_LOOP)
        ours_ttp = time_to_prompt(
            env, work, [str(ROOT / "agent.py"), "--user", USER, "--db", str(work / "ttp.db")], USER, prompt_samples
        )
        plain_ttp = time_to_prompt(env, work, [str(work / "plain.py")], "bench>", prompt_samples)

    base = statistics.median(turn[sizes[0]])
    print(f"\nbudget {settings.context_tokens} tokens; {rounds} interleaved rounds; times in ms (p50 / p95)\n")
    print(
        "| stored messages | build request | store turn | whole turn | x vs 10 (p50) | plain loop turn "
        "| memchat request | plain request | memchat tokens | plain tokens | memchat peak MiB | plain peak MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, request_bytes, tokens, mib, plain, plain_bytes, plain_tokens, plain_mib in rows:
        b50, b95 = percentiles(build[size])
        s50, s95 = percentiles(store_turn[size])
        t50, t95 = percentiles(turn[size])
        print(
            f"| {size:,} | {b50:.1f} / {b95:.1f} | {s50:.1f} / {s95:.1f} | {t50:.1f} / {t95:.1f} "
            f"| {statistics.median(turn[size]) / base:.2f} | {statistics.median(plain) * 1000:,.0f} "
            f"| {request_bytes / 1024:,.1f} KiB | {plain_bytes / 1024:,.1f} KiB | {tokens:,} | {plain_tokens:,} "
            f"| {mib:.1f} | {plain_mib} |"
        )
    full, largest = sizes[1], sizes[-1]  # the second size already fills the budget
    ratios = ", ".join(
        f"{name} {statistics.median(samples[largest]) / statistics.median(samples[full]):.2f}x"
        for name, samples in (("build request", build), ("store turn", store_turn), ("whole turn", turn))
    )
    print(f"\n{largest:,} messages against {full:,} (p50): {ratios}")
    print(f"\ntime to prompt: memchat {ours_ttp:.3f} s, plain loop {plain_ttp:.3f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run (the test suite's)")
    args = parser.parse_args()
    if args.smoke:
        asyncio.run(main((10, 200), rounds=2, prompt_samples=1))
    else:
        asyncio.run(main((10, 1_000, 10_000, 100_000), rounds=40, prompt_samples=5))
