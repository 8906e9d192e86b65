"""Several ``memchat web`` on one store, as behind a proxy: the same users, the same memory, the same logins.

Also the load test: fifty logged-in pages chatting at once lose and mix no turn
(``bench/web_load.py``, whose figures are in docs/web.md, in a small run).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from memchat.web.logins import FREE_FAILURES
from support import POSTGRES_SERVER, ROOT, clean_env, fresh_store, require_server
from web_page import PageClient, give_passwords, login_cookie, post_login, running_web, status_with

PASSWORD = "two-processes-pw"


@pytest.fixture(scope="module")
def two_webs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two ``memchat web`` on one PostgreSQL database, with alice and bob able to log in."""
    home = tmp_path_factory.mktemp("two-webs")
    db = fresh_store("postgres", home)
    asyncio.run(give_passwords(db, ["alice", "bob"], PASSWORD))
    with FakeOpenAI() as server:
        env = clean_env(home, OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-two-webs")
        with running_web(home, env, "--db", db) as first, running_web(home, env, "--db", db) as second:
            yield first.url, second.url


def turn(url: str, cookie: str, user: str, text: str) -> str:
    async def talk() -> str:
        page = PageClient(url, cookie, user)
        await page.open()
        try:
            return (await page.say(text)).reply
        finally:
            await page.close()

    return asyncio.run(talk())


def test_what_is_said_on_one_process_is_known_on_the_other(two_webs: tuple[str, str]) -> None:
    first, second = two_webs
    cookie = login_cookie(first, "alice", PASSWORD)
    assert turn(first, cookie, "alice", "my name is Alice") == "You said: my name is Alice"
    # The same login works on the other process, and so does the memory.
    assert turn(second, cookie, "alice", "what's my name?") == "Your name is Alice."
    assert turn(second, login_cookie(second, "bob", PASSWORD), "bob", "what's my name?") != "Your name is Alice."


def test_a_logout_on_one_process_ends_the_login_on_the_other(two_webs: tuple[str, str]) -> None:
    first, second = two_webs
    cookie = login_cookie(first, "bob", PASSWORD)
    assert status_with(second, cookie) == 200
    assert status_with(first, cookie, "/logout", "POST") == 200
    assert status_with(second, cookie) == 401


def test_failed_logins_on_one_process_hold_back_the_other(two_webs: tuple[str, str]) -> None:
    first, second = two_webs
    # A user id and a client of their own (as a proxy on this machine reports it): no other test is held up.
    client = {"X-Forwarded-For": "203.0.113.77"}
    for _ in range(FREE_FAILURES):
        assert post_login(first, "mallory", "a guess", **client)[0] == 401
    status, headers = post_login(second, "mallory", "another guess", **client)
    assert (status, headers["retry-after"]) == (429, "1")


def test_fifty_pages_chatting_at_once_on_two_processes_lose_and_mix_no_turn() -> None:
    require_server(POSTGRES_SERVER)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "web_load.py"),
            *("--pages", "50", "--turns", "2", "--delay", "0.2"),
            "--processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        env={**clean_env(Path("/nonexistent")), "MEMCHAT_BENCH_POSTGRES": POSTGRES_SERVER},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every turn kept: 100 of 100 answered and stored in order, each user's own" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 2 | 50 | 100 |"))
    assert row.count(" ms") == 5, row  # CPU a turn, first token p50 and p95, added p50 and p95
