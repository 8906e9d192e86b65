"""Shared fixtures: a local OpenAI-compatible server and a way to run memchat as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fake_openai import FakeOpenAI
from memchat.items import Item
from memchat.stores import open_store
from memchat.stores.protocol import Store

ROOT = Path(__file__).resolve().parent.parent
# The chat page's fixtures (web, browser, page), for every module that drives it.
pytest_plugins = ["web_page"]
AGENT = ROOT / "agent.py"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: none of the developer's keys or memchat settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "MEMCHAT_")) and key not in ("NO_COLOR", "FORCE_COLOR")
    }
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), MEMCHAT_RETRIES="0", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Memchat:
    """Runs ``python agent.py`` in a folder of its own, against the test server."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, input: str | bytes = "", timeout: float = 60, **env: str) -> Run:  # noqa: A002
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [sys.executable, str(AGENT), *args],
            input=data,
            capture_output=True,
            cwd=self.cwd,
            env={**self.env, **env},
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    @property
    def db(self) -> Path:
        return self.cwd / "conversion.db"

    def stored(self, user: str) -> list[tuple[str, str]]:
        """(role, text) of every stored item of ``user``, read straight from the file."""
        import json

        from memchat.items import describe

        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id", (user,)
            ).fetchall()
        return [describe(json.loads(data)) for (data,) in rows]


@pytest.fixture
def memchat(tmp_path: Path, server: FakeOpenAI) -> Memchat:
    work = tmp_path / "work"
    work.mkdir()
    return Memchat(work, clean_env(tmp_path, OPENAI_BASE_URL=server.url))


def assert_alternates(stored: list[tuple[str, str]]) -> None:
    """Stored history is user, assistant, user, assistant... and ends with a reply."""
    speakers = [speaker for speaker, _ in stored]
    assert speakers == ["you", "assistant"] * (len(speakers) // 2), speakers


# The servers of this project's machines; override to test against others. Each test process
# (each xdist worker, each of two runs at once) gets a database and Redis keys of its own, so runs on
# one machine never meet: the database is created on first use and dropped at the end.
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
POSTGRES_SERVER = os.environ.get("MEMCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_URL = f"{POSTGRES_SERVER.rsplit('/', 1)[0]}/memchat_test_{RUN_ID}"
REDIS_SERVER = os.environ.get("MEMCHAT_TEST_REDIS", "redis://127.0.0.1:6379/15")
REDIS_PREFIX = f"memchat-test-{RUN_ID}"
REDIS_URL = f"{REDIS_SERVER}?key_prefix={REDIS_PREFIX}"
STORES = ("sqlite", "postgres", "redis")
_created_database = False


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require_server(url: str) -> None:
    """Skip when the server is down, with the reason; under CI (CI=true) fail instead."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2).close()
    except OSError as exc:
        message = f"{parts.scheme} server at {parts.hostname}:{parts.port} is not reachable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI every store must be tested")
        pytest.skip(message)


def fresh_store(kind: str, tmp_path: Path) -> str:
    """The --db value of an empty store of ``kind``."""
    if kind == "sqlite":
        return str(tmp_path / "memory.db")
    if kind == "postgres":
        require_server(POSTGRES_URL)
        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(POSTGRES_URL)
            # The database is this run's own: everything in it goes, whatever tables a version adds.
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            await conn.close()

        ensure_test_database()
        asyncio.run(drop())
        return POSTGRES_URL
    require_server(REDIS_URL)
    drop_redis_keys()
    return REDIS_URL


def ensure_test_database() -> None:
    """Create this run's PostgreSQL database, once."""
    global _created_database
    if _created_database:
        return
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(POSTGRES_SERVER)
        await conn.execute(f'CREATE DATABASE "memchat_test_{RUN_ID}"')
        await conn.close()

    asyncio.run(create())
    _created_database = True


def drop_redis_keys() -> None:
    """Remove every key this run wrote to Redis (and no other run's)."""
    import redis

    client = redis.Redis.from_url(REDIS_SERVER)
    try:
        for pattern in (
            f"{REDIS_PREFIX}:*",
            f"memchat:passwords:{REDIS_PREFIX}",
            f"memchat:web_sessions:{REDIS_PREFIX}",
            f"memchat:login_failures:{REDIS_PREFIX}:*",
            f"memchat:index:{REDIS_PREFIX}:*",
            f"memchat:vectors:{REDIS_PREFIX}:*",
        ):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave the servers as they were found."""
    if _created_database:
        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(POSTGRES_SERVER)
            await conn.execute(f'DROP DATABASE IF EXISTS "memchat_test_{RUN_ID}" WITH (FORCE)')
            await conn.close()

        with contextlib.suppress(Exception):
            asyncio.run(drop())
    with contextlib.suppress(Exception):
        drop_redis_keys()


@pytest.fixture(params=STORES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn, empty: the conformance suite runs once per store."""
    return fresh_store(request.param, tmp_path)


@asynccontextmanager
async def opened(location: str) -> AsyncIterator[Store]:
    store = await open_store(location)
    try:
        yield store
    finally:
        await store.close()


def stored_items(location: str, user: str) -> list[Item]:
    """Every item of ``user`` in the store at ``location``, oldest first."""

    async def read() -> list[Item]:
        async with opened(location) as store:
            return [dict(item) for item in await store.memory(user).get_items()]

    return asyncio.run(read())


def sdk_session_for(location: str, user: str) -> Any:
    """The Agents SDK's own session class for this kind of store, on the same data."""
    if location.startswith("postgresql"):
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

        return SQLAlchemySession.from_url(user, url=location.replace("postgresql://", "postgresql+asyncpg://", 1))
    if location.startswith("redis"):
        from agents.extensions.memory.redis_session import RedisSession

        from memchat.stores.redis import split_url

        url, prefix = split_url(location)
        return RedisSession.from_url(user, url=url, key_prefix=prefix)
    from agents import SQLiteSession

    return SQLiteSession(user, location)


async def close_sdk_session(session: Any) -> None:
    if hasattr(session, "engine"):
        await session.engine.dispose()
        return
    result = session.close()
    if asyncio.iscoroutine(result):
        await result


# The longest tests (tens of seconds each, mostly processes loading the SDK) start first, so the
# parallel run does not end with one worker busy on them while the others are idle.
LONGEST_FIRST = (
    "test_eight_processes_taking_turns_on_one_memory_lose_nothing",
    "test_sigkill_at_random_moments_never_loses_a_finished_turn",
    "test_the_sdks_own_session_tests_pass_on_each_store",
    "test_sigkill_while_writing_never_leaves_half_a_turn",
    "test_a_fact_told_in_one_run_is_known_in_the_next_and_clear_forgets_it",
    "test_random_lines_on_a_pipe_are_handled_or_refused_in_one_line",
    "test_the_api_key_never_appears_in_any_output_or_file",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: everything else keeps its order


# Figures tests report (concurrency, crash trials...), printed at the end of the run. Each test process
# (each xdist worker) appends to a file of its own in a folder the main process made and reads back.
FIGURES_DIR = "MEMCHAT_TEST_FIGURES"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the main process; workers inherit the folder
        import tempfile

        os.environ[FIGURES_DIR] = tempfile.mkdtemp(prefix="memchat-figures-")


@pytest.fixture
def report() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    if lines:
        with (Path(os.environ[FIGURES_DIR]) / f"{os.getpid()}.txt").open("a") as out:
            out.writelines(line + "\n" for line in lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    folder = Path(os.environ.get(FIGURES_DIR, ""))
    lines = sorted(line for path in folder.glob("*.txt") for line in path.read_text().splitlines())
    if lines:
        terminalreporter.section("memchat figures")
        for line in lines:
            terminalreporter.write_line(line)
