"""Load on the web page: many logged-in pages chatting at once with ``memchat web`` on PostgreSQL.

Run from the repository root, after installing ``.[test]``:

    .venv/bin/python bench/web_load.py [--pages 50] [--turns 5] [--delay 0.5] [--processes 1]

Each page is a user of its own, logged in through ``/login`` and talking over the
page's socket as the page's own script does (``tests/web_page.PageClient``). Every
page sends its turns one after another, all pages at once, to the test server of
``tests/fake_openai.py``, which waits ``--delay`` seconds before each answer, as a
model that thinks. With ``--processes 2`` there are two ``memchat web`` on the one
database, and each user's turns alternate between them.

It prints turns per second, and the time from sending to the first piece of the
reply (p50 / p95), in full and less the server's delay: what memchat itself adds.
Then it checks every turn: each reply answers its own page's message, and each
user's memory holds exactly that user's turns, in the order sent. A lost or mixed
turn is printed and the exit code is 1.

The database is created for the run and dropped after it, on the server of
``MEMCHAT_BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from scratch import postgres_database  # noqa: E402

from fake_openai import FakeOpenAI  # noqa: E402
from memchat.items import describe  # noqa: E402
from memchat.stores import open_store  # noqa: E402
from support import clean_env  # noqa: E402
from web_page import PageClient, Said, give_passwords, login_cookie, running_web  # noqa: E402

PASSWORD = "load-test-password"


@dataclass
class Turn:
    user: str
    text: str
    said: Said


async def page_turns(user: str, clients: list[PageClient], turns: int) -> list[Turn]:
    done = []
    for n in range(turns):
        text = f"{user} says number {n}"
        done.append(Turn(user, text, await clients[n % len(clients)].say(text)))
    return done


async def wrong_turns(db: str, turns: list[Turn], users: list[str], per_user: int) -> list[str]:
    """Every turn that was lost, mixed between users, or stored out of order."""
    wrong = [
        f"{turn.user}: {turn.text!r} got {turn.said.reply!r}"
        for turn in turns
        if turn.said.reply != f"You said: {turn.text}"
    ]
    store = await open_store(db)
    try:
        for user in users:
            stored = [describe(item) for item in await store.memory(user).get_items()]
            expected = []
            for n in range(per_user):
                expected += [("you", f"{user} says number {n}"), ("assistant", f"You said: {user} says number {n}")]
            if stored != expected:
                wrong.append(f"{user}'s memory holds {stored}")
    finally:
        await store.close()
    return wrong


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run(pages: int, turns: int, delay: float, processes: int) -> int:
    users = [f"page{n:03d}" for n in range(pages)]
    async with postgres_database("load") as db:
        await give_passwords(db, [*users, "warmup"], PASSWORD)
        with (
            tempfile.TemporaryDirectory(prefix="memchat-load-") as home,
            FakeOpenAI(first_token_delay=delay) as server,
            contextlib.ExitStack() as stack,
        ):
            env = clean_env(Path(home), OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-load")
            print(f"starting {processes} memchat web on one PostgreSQL database...", file=sys.stderr, flush=True)
            servers = [stack.enter_context(running_web(Path(home), env, "--db", db)) for _ in range(processes)]
            urls = [served.url for served in servers]
            print(f"logging {pages} pages in...", file=sys.stderr, flush=True)
            cookies = await asyncio.gather(*(asyncio.to_thread(login_cookie, urls[0], u, PASSWORD) for u in users))
            clients = {
                user: [PageClient(url, cookie, user) for url in urls]
                for user, cookie in zip(users, cookies, strict=True)
            }
            everyone = [client for group in clients.values() for client in group]
            await asyncio.gather(*(client.open() for client in everyone))
            # A first turn in each process loads the model's code; it is not what a page waits for later.
            warmup = login_cookie(urls[0], "warmup", PASSWORD)
            for url in urls:
                first = PageClient(url, warmup, "warmup")
                await first.open()
                await first.say("warming up")
                await first.close()
            print(f"{pages} pages chatting, {turns} turns each...", file=sys.stderr, flush=True)
            start, cpu = time.monotonic(), sum(served.cpu_seconds() for served in servers)
            done = await asyncio.gather(*(page_turns(user, clients[user], turns) for user in users))
            wall, cpu = time.monotonic() - start, sum(served.cpu_seconds() for served in servers) - cpu
            await asyncio.gather(*(client.close() for client in everyone))
        all_turns = [turn for page in done for turn in page]
        wrong = await wrong_turns(db, all_turns, users, turns)

    first = [turn.said.first_token for turn in all_turns]
    added = [value - delay for value in first]
    print(f"memchat web load: {pages} pages, {turns} turns each, server delay {delay:.2f} s, {processes} process(es)")
    print()
    print(
        "| web processes | pages | turns | turns/s | memchat web CPU a turn "
        "| first token p50 | p95 | added by memchat p50 | p95 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {processes} | {pages} | {len(all_turns)} | {len(all_turns) / wall:.1f} | {cpu / len(all_turns) * 1000:.0f} ms "
        f"| {statistics.median(first) * 1000:.0f} ms | {percentile(first, 0.95) * 1000:.0f} ms "
        f"| {statistics.median(added) * 1000:.0f} ms | {percentile(added, 0.95) * 1000:.0f} ms |"
    )
    print()
    if wrong:
        print(f"LOST OR MIXED: {len(wrong)}")
        for line in wrong[:20]:
            print(f"  {line}")
        return 1
    print(f"every turn kept: {len(all_turns)} of {len(all_turns)} answered and stored in order, each user's own")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=50, help="logged-in pages chatting at once (default 50)")
    parser.add_argument("--turns", type=int, default=5, help="turns each page sends, one after another (default 5)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the model server waits before each answer")
    parser.add_argument("--processes", type=int, default=1, help="memchat web processes on the one database")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.pages, args.turns, args.delay, args.processes)))
