"""Cost of one turn as memory grows: memchat next to the plain SQLiteSession loop.

Run from the repository root: ``.venv/bin/python bench/bench.py`` (after installing
``.[test]``). It starts the local OpenAI-compatible test server (zero latency, so
a turn's time is memchat's own overhead), fills one user's memory with 10, 1,000,
10,000 and 100,000 messages, and for each size runs turns two ways in this one
process:

- memchat: ``TurnRunner`` with the default 8,000-token budget and summary;
- plain: ``Runner.run(agent, text, session=SQLiteSession(...))`` with no limit,
  the pattern the project grew from.

It prints wall time per turn (median), request bytes and tokens (as the server
counts them), peak Python memory during a turn, and time to prompt.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
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
from memchat.sqlite_store import SQLiteMemory, SQLiteStore  # noqa: E402
from memchat.turn import TurnRunner  # noqa: E402

SIZES = (10, 1_000, 10_000, 100_000)
TURNS = 5
USER = "bench"


def fill(db: Path, messages: int) -> None:
    """``messages`` stored items, alternating user and assistant, as the SDK writes them."""
    store = SQLiteStore(db)
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
    with store.transaction() as conn:
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES (?)", (USER,))
        conn.executemany("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", rows)
    asyncio.run(store.close())


async def measure(turn: Callable[[str], Awaitable[object]], server: FakeOpenAI, turns: int) -> dict[str, float]:
    """Median seconds a turn, bytes and tokens of the last request, peak MiB of a traced turn."""
    times = []
    for n in range(turns):
        start = time.perf_counter()
        await turn(f"benchmark turn {n}")
        times.append(time.perf_counter() - start)
    body = server.requests[-1].body
    sent = json.dumps(body)
    tokens = len(json.dumps(body.get("messages", ""))) // 4  # how the test server counts prompt tokens
    tracemalloc.start()
    await turn("traced turn")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": statistics.median(times), "bytes": len(sent), "tokens": tokens, "mib": peak / 2**20}


def time_to_prompt(env: dict[str, str], cwd: Path, argv: list[str], ready: str) -> float:
    """Median seconds from launch until ``ready`` shows on a pseudo-terminal."""
    import pexpect

    samples = []
    for _ in range(5):
        start = time.perf_counter()
        child = pexpect.spawn(sys.executable, argv, env=env, cwd=str(cwd), encoding="utf-8", timeout=60)
        child.expect(ready)
        samples.append(time.perf_counter() - start)
        child.close(force=True)
    return statistics.median(samples)


PLAIN_LOOP = """
from agents import Agent, Runner, SQLiteSession
session = SQLiteSession("bench", "plain.db")
input("bench> ")
"""


async def main() -> None:
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
        rows = []
        for size in SIZES:
            ours, theirs = work / f"memchat-{size}.db", work / f"plain-{size}.db"
            fill(ours, size)
            shutil.copy(ours, theirs)
            store = SQLiteStore(ours)
            memory = store.memory(USER)

            async def memchat_turn(text: str, memory: SQLiteMemory = memory) -> object:
                reply = await runner.run(memory, text)
                await memory.undo()  # keep the size constant across repeats
                return reply

            session = SQLiteSession(USER, theirs)

            async def plain_turn(text: str, session: SQLiteSession = session) -> object:
                result = await Runner.run(runner.agent, text, session=session)
                for _ in range(2):
                    await session.pop_item()
                return result

            print(f"{size:>7} messages: memchat…", file=sys.stderr, flush=True)
            mine = await measure(memchat_turn, server, TURNS)
            print(f"{size:>7} messages: plain loop…", file=sys.stderr, flush=True)
            plain = await measure(plain_turn, server, 1 if size >= 100_000 else TURNS)
            rows.append((size, mine, plain))
            await store.close()
            session.close()

        (work / "plain.py").write_text(PLAIN_LOOP)
        ours_ttp = time_to_prompt(
            env, work, [str(ROOT / "agent.py"), "--user", USER, "--db", str(work / "ttp.db")], USER
        )
        plain_ttp = time_to_prompt(env, work, [str(work / "plain.py")], "bench>")

    base = rows[0][1]["seconds"]
    print(f"\nbudget {settings.context_tokens} tokens; medians of {TURNS} turns (plain at 100,000: 1 turn)\n")
    print(
        "| stored messages | memchat s/turn | x vs 10 | plain s/turn | memchat request | plain request | memchat tokens | plain tokens | memchat peak MiB | plain peak MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, mine, plain in rows:
        print(
            f"| {size:,} | {mine['seconds']:.3f} | {mine['seconds'] / base:.2f} | {plain['seconds']:.3f} "
            f"| {mine['bytes'] / 1024:,.1f} KiB | {plain['bytes'] / 1024:,.1f} KiB "
            f"| {mine['tokens']:,} | {plain['tokens']:,} | {mine['mib']:.1f} | {plain['mib']:.1f} |"
        )
    print(f"\ntime to prompt: memchat {ours_ttp:.3f} s, plain loop {plain_ttp:.3f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
