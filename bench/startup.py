"""Start-up: memchat next to the plain Agents SDK loop the project grew from, in one run.

Run from the repository root: ``.venv/bin/python bench/startup.py`` (after
installing ``.[test]``); ``--smoke`` is the small run the test suite does. Against
the local test server, each sample launches both programs, in alternating order,
and measures:

- time to prompt: from launch until the prompt is drawn in a pseudo-terminal;
- first reply: from launch until the reply to a message typed at once (before
  the prompt appears) is on screen;
- one-shot CPU: user + system CPU seconds of ``echo hello | program``, one turn
  on a pipe, start to exit.

It prints the median and p95 of each, and memchat's ratio to the plain loop.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from fake_openai import FakeOpenAI  # noqa: E402

# The loop the project grew from: the SDK's SQLiteSession, Runner.run, input() and print().
PLAIN_LOOP = """
import asyncio
from agents import Agent, OpenAIChatCompletionsModel, Runner, SQLiteSession, set_tracing_disabled
from openai import AsyncOpenAI

async def main():
    set_tracing_disabled(True)
    model = OpenAIChatCompletionsModel(model="gpt-5.4-mini", openai_client=AsyncOpenAI())
    agent = Agent(name="Assistant", instructions="You are a helpful assistant.", model=model)
    session = SQLiteSession("user1", "plain.db")
    while True:
        try:
            text = input("user1> ")
        except EOFError:
            break
        result = await Runner.run(agent, text, session=session)
        print(result.final_output)

asyncio.run(main())
"""

Program = tuple[str, list[str]]


def until_seen(env: dict[str, str], cwd: Path, argv: list[str], wanted: str, typed: str | None = None) -> float:
    """Seconds from launch until ``wanted`` shows on a pseudo-terminal; ``typed`` is sent at once."""
    import pexpect

    start = time.perf_counter()
    child = pexpect.spawn(sys.executable, argv, env=env, cwd=str(cwd), encoding="utf-8", timeout=60)
    if typed is not None:
        child.send(typed + "\r")
    child.expect_exact(wanted)
    seconds = time.perf_counter() - start
    child.close(force=True)
    return seconds


def one_shot_cpu(env: dict[str, str], cwd: Path, argv: list[str]) -> float:
    """CPU seconds (user + system) of one piped turn, from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, *argv], input=b"hello\n", env=env, cwd=cwd, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if b"You said: hello" not in done.stdout:
        raise RuntimeError(f"{argv[0]} did not answer: {done.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(samples):.3f} / {p95:.3f}"


def main(samples: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="memchat-startup-"))
    (work / "plain.py").write_text(PLAIN_LOOP)
    with FakeOpenAI() as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.url,
            "OPENAI_API_KEY": "bench",
            "TERM": "xterm-256color",
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "MEMCHAT_HISTORY_FILE": str(work / "history"),
        }
        programs: dict[str, list[str]] = {
            "memchat": [str(ROOT / "agent.py"), "--db", str(work / "memchat.db")],
            "plain SDK loop": [str(work / "plain.py")],
        }
        measures: dict[str, Callable[[list[str], int], float]] = {
            "time to prompt (s)": lambda argv, n: until_seen(env, work, argv, "user1"),
            "first reply, typed at once (s)": lambda argv, n: until_seen(
                env, work, argv, f"You said: question {n}", f"question {n}"
            ),
            "one-shot piped turn, CPU (s)": lambda argv, n: one_shot_cpu(env, work, argv),
        }
        found: dict[tuple[str, str], list[float]] = {(m, p): [] for m in measures for p in programs}
        for n in range(samples):
            print(f"sample {n + 1} of {samples}…", file=sys.stderr, flush=True)
            order = list(programs.items()) if n % 2 == 0 else list(reversed(programs.items()))
            for measure, run in measures.items():
                for name, argv in order:
                    found[measure, name].append(run(argv, n))
    print(f"\n{samples} samples each, interleaved; median / p95\n")
    print("| | memchat | plain SDK loop | memchat / plain (median) |")
    print("|---|---:|---:|---:|")
    for measure in measures:
        ours, plain = found[measure, "memchat"], found[measure, "plain SDK loop"]
        ratio = statistics.median(ours) / statistics.median(plain)
        print(f"| {measure} | {summary(ours)} | {summary(plain)} | {ratio:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run (the test suite's)")
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    main(1 if args.smoke else args.samples)
