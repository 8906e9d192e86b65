"""Stores of one benchmark run's own, removed after it, so two runs on one machine never meet.

PostgreSQL: a new database on the server of ``MEMCHAT_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, the database it connects to in
order to create and drop one). Redis: keys under a new prefix in the database of
``MEMCHAT_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/14``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

POSTGRES = os.environ.get("MEMCHAT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("MEMCHAT_BENCH_REDIS", "redis://127.0.0.1:6379/14")


def run_name(purpose: str) -> str:
    return f"memchat_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def postgres_database(purpose: str, kept: str | None = None, fresh: bool = False) -> AsyncIterator[str]:
    """The URL of a database of this run's own, dropped after it; or of database ``kept``, made if missing
    (or ``fresh``: made again) and kept."""
    import asyncpg

    name = kept or run_name(purpose)
    admin = await asyncpg.connect(POSTGRES)
    if fresh:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if not await admin.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name):
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        if kept is None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def redis_keys(purpose: str) -> Iterator[str]:
    """A Redis store URL whose keys are this run's own, deleted after it."""
    import redis

    from memchat.stores.redis import INDEX_PREFIX, VECTORS_PREFIX

    prefix = run_name(purpose)
    try:
        yield f"{REDIS}?key_prefix={prefix}"
    finally:
        client = redis.Redis.from_url(REDIS)
        for pattern in (f"{prefix}:*", f"{INDEX_PREFIX}:{prefix}:*", f"{VECTORS_PREFIX}:{prefix}:*"):
            keys = list(client.scan_iter(match=pattern, count=5000))
            for start in range(0, len(keys), 5000):
                client.delete(*keys[start : start + 5000])
        client.close()
