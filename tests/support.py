"""What the tests share: running memchat as a user would, a store of each kind of this run's own, small builders.

The fixtures that hand these out are in ``conftest.py``; a test imports what it needs from here.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pexpect
import pytest

from config import load_settings
from fake_openai import FakeOpenAI
from memchat.context.semantic import Semantic
from memchat.items import Item
from memchat.stores import open_store
from memchat.stores.protocol import Store

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent.py"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: none of the developer's keys or memchat settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "MEMCHAT_")) and key not in ("NO_COLOR", "FORCE_COLOR")
    }
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CONFIG_HOME=str(home / "config"),
        MEMCHAT_RETRIES="0",
        PYTHONUNBUFFERED="1",
    )
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
            f"memchat:index:{REDIS_PREFIX}:*",  # an older memchat's index (see test_a_redis_memory_indexed_without_stems_...)
            f"memchat:stems:{REDIS_PREFIX}:*",
            f"memchat:vectors:{REDIS_PREFIX}:*",
        ):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


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


def drop_test_database() -> None:
    """Drop this run's PostgreSQL database, if it made one."""
    if not _created_database:
        return
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_SERVER)
        await conn.execute(f'DROP DATABASE IF EXISTS "memchat_test_{RUN_ID}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def exchange(text: str) -> list[dict[str, str]]:
    """One user message and its reply, as stored."""
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"noted: {text}"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait until ``process`` listens on ``port`` of 127.0.0.1; False (and the process killed) if it does not."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                return False
            time.sleep(0.1)


def assert_exits_with_0(child: pexpect.spawn) -> None:
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0


def prompt(child: pexpect.spawn, user: str = "user1") -> None:
    """Wait for the prompt: the user id in colour, then '>'."""
    child.expect(re.escape(user) + r"(\x1b\[[0-9;]*m)*>")


EMBEDDER = "fake-embedder"


def semantic_for(server: FakeOpenAI, **env: str) -> Semantic:
    """Search by meaning through the test server's embedding model."""
    settings = load_settings(
        env={"OPENAI_BASE_URL": server.url, "HOME": "/nonexistent", "MEMCHAT_EMBEDDING_MODEL": EMBEDDER, **env}
    )
    return Semantic(settings)
