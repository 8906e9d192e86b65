"""Crash safety: memchat killed with SIGKILL at random moments loses no finished turn and shows no half one.

The default test command runs a reduced number of trials; the full count is
one command away (see docs/reliability.md):

    MEMCHAT_CRASH_TRIALS=50 MEMCHAT_STORE_CRASH_TRIALS=500 .venv/bin/pytest tests/test_crash.py

The seed is printed with the figures, and ``MEMCHAT_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from fake_openai import FakeOpenAI
from support import AGENT, ROOT, clean_env, prompt

TRIALS = int(os.environ.get("MEMCHAT_CRASH_TRIALS", "10"))
STORE_TRIALS = int(os.environ.get("MEMCHAT_STORE_CRASH_TRIALS", "60"))
SEED = int(os.environ.get("MEMCHAT_CRASH_SEED", str(int(time.time()))))


def check_file(db: Path, user: str) -> list[tuple[str, str]]:
    """The database is intact and ``user``'s history is whole turns; return (role, text) pairs."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'agent_messages'").fetchone():
            return []  # killed while the file was being created: nothing was acknowledged yet
        rows = conn.execute(
            "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id", (user,)
        ).fetchall()
    items = [json.loads(data) for (data,) in rows]
    pairs = [(item["role"], _text(item)) for item in items]
    assert [role for role, _ in pairs] == ["user", "assistant"] * (len(pairs) // 2), pairs[-4:]
    for (_, question), (_, answer) in zip(pairs[::2], pairs[1::2], strict=True):
        assert answer in (f"You said: {question}", f"re: {question}"), (question, answer)  # never half a reply
    return pairs


def _text(item: dict[str, object]) -> str:
    content = item["content"]
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content)  # type: ignore[union-attr]


@pytest.fixture
def slow_server() -> Iterator[FakeOpenAI]:
    # Replies stream a word every 30 ms, so a random kill often lands mid-stream.
    with FakeOpenAI(word_delay=0.03) as running:
        yield running


# The full count runs far longer than the suite's default limit per test.
@pytest.mark.timeout(120 + 10 * TRIALS)
def test_sigkill_at_random_moments_never_loses_a_finished_turn(
    tmp_path: Path, slow_server: FakeOpenAI, report: list[str]
) -> None:
    rng = random.Random(SEED)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **clean_env(tmp_path, OPENAI_BASE_URL=slow_server.url),
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    done: list[str] = []
    phases: Counter[str] = Counter()
    for trial in range(TRIALS):
        child = pexpect.spawn(
            sys.executable, [str(AGENT), "--user", "crash"], cwd=str(work), env=env, encoding="utf-8", timeout=30
        )
        # The next start works: the prompt comes, whatever the last kill left behind.
        prompt(child, "crash")
        killer = threading.Timer(rng.uniform(1.0, 5.0), child.kill, (signal.SIGKILL,))
        killer.start()
        phase = ""
        try:
            for turn in range(100):
                text = f"trial {trial} turn {turn} alpha beta gamma delta epsilon"
                phase = "before the reply"
                child.sendline(text)
                child.expect_exact(f"You said: {text}")
                phase = "reply shown, being stored"
                prompt(child, "crash")  # the reply is stored before the prompt returns
                done.append(text)
        except (pexpect.EOF, pexpect.TIMEOUT):
            if phase == "before the reply" and "You said:" in str(child.before or ""):
                phase = "mid-stream"
            phases[phase] += 1
        finally:
            killer.cancel()
            child.close(force=True)
        stored = [text for role, text in check_file(work / "conversion.db", "crash") if role == "user"]
        # Every turn reported done is there; at most the one in flight was stored without being shown.
        assert stored[: len(done)] == done
        assert len(stored) - len(done) <= 1
        done = stored

    final = subprocess.run(
        [sys.executable, str(AGENT), "--user", "crash"], input=b"one more\n", capture_output=True, cwd=work, env=env
    )
    assert final.stdout == b"You said: one more\n", final.stderr
    report.append(
        f"crash trials (memchat, SIGKILL, seed {SEED}): {TRIALS} kills "
        f"({', '.join(f'{count} {phase}' for phase, count in sorted(phases.items()))}), "
        f"{len(done)} finished turns kept, 0 lost, integrity_check ok {TRIALS}/{TRIALS}"
    )


WRITER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from memchat.stores.sqlite import SQLiteStore

async def main():
    memory = SQLiteStore({db!r}).memory("crash")
    n = await memory.count() // 2
    while True:
        text = f"write {{n}} " + "x" * (n % 500)
        await memory.add_items([{{"role": "user", "content": text}}, {{"role": "assistant", "content": "re: " + text}}])
        print(n, flush=True)
        n += 1

asyncio.run(main())
"""


@pytest.mark.timeout(120 + STORE_TRIALS)
def test_sigkill_while_writing_never_leaves_half_a_turn(tmp_path: Path, report: list[str]) -> None:
    """The store alone, writing turns as fast as it can, killed at random: the moment of writing, thousands of times over."""
    rng = random.Random(SEED)
    total = 0
    for trial in range(STORE_TRIALS):
        # A new file every 10 kills keeps each check quick; within a file, each start follows a kill.
        db = tmp_path / f"store-{trial // 10}.db"
        script = WRITER.format(root=str(ROOT), db=str(db))
        before = len(check_file(db, "crash")) // 2 if db.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acknowledged = max([before, *(int(line) + 1 for line in out.split())])
        turns = len(check_file(db, "crash")) // 2
        assert turns >= acknowledged  # every write reported done survived the kill
        assert turns - acknowledged <= 1  # and at most the one in flight besides
        total += acknowledged - before
    report.append(
        f"crash trials (store writing flat out, SIGKILL, seed {SEED}): {STORE_TRIALS} kills, "
        f"{total} turns acknowledged, 0 lost, 0 half turns, integrity_check ok {STORE_TRIALS}/{STORE_TRIALS}"
    )
