"""A pytest plugin that runs the Agents SDK's own session tests against memchat's stores.

Loaded with ``-p memchat_sdk_adapter`` inside the SDK's source tree (see
``tests/stores/test_sdk_suite.py``), it puts memchat's memories where the SDK's tests
construct ``SQLiteSession``, ``SQLAlchemySession`` or ``RedisSession``: each
constructor opens a memchat store the way ``--db`` does and returns that
store's memory, so every check those tests make is made of memchat.

``MEMCHAT_SDK_STORE`` (``sqlite``, ``postgres`` or ``redis``) says which store;
``MEMCHAT_SDK_POSTGRES`` and ``MEMCHAT_SDK_REDIS`` where the servers are (each run
its own database and key prefix). Tests that inspect the SDK classes' own insides
(their worker threads, engines, locks, TTLs, SQLAlchemy dialects) do not apply to
another implementation; ``NOT_APPLICABLE`` lists them, each with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.memory.session_settings import SessionSettings, coerce_session_settings

from memchat.stores.postgres import PostgresMemory, PostgresStore
from memchat.stores.redis import RedisMemory, RedisStore
from memchat.stores.sqlite import SQLiteMemory, SQLiteStore

KIND = os.environ.get("MEMCHAT_SDK_STORE", "sqlite")
POSTGRES = os.environ.get("MEMCHAT_SDK_POSTGRES", "")
REDIS = os.environ.get("MEMCHAT_SDK_REDIS", "")


def _settings(given: Any) -> SessionSettings:
    return SessionSettings() if given is None else coerce_session_settings(given)


class SQLiteSession(SQLiteMemory):
    """``agents.SQLiteSession``'s constructor, memchat's SQLite store behind it."""

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        if str(db_path) == ":memory:":
            # A private database per instance, as SQLite's :memory: is; memchat keeps memories in files.
            folder = tempfile.mkdtemp(prefix="memchat-sdk-")
            db_path = Path(folder) / "memory.db"
        self.db_path = Path(db_path)
        self.sessions_table, self.messages_table = sessions_table, messages_table
        super().__init__(SQLiteStore(db_path), session_id)
        self.session_settings = _settings(session_settings)

    @contextlib.contextmanager
    def _locked_connection(self) -> Iterator[sqlite3.Connection]:
        # The tests use it to write rows behind the session's back: another connection to the file does that.
        conn = sqlite3.connect(self.db_path, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        store = self._store
        if not store._closed.is_set():
            store._closed.set()
            store._worker.submit(store._conn.close).result()
            store._worker.shutdown(wait=True)


class SQLAlchemySession(PostgresMemory):
    """``SQLAlchemySession``'s constructors, memchat's PostgreSQL store behind them (whatever URL is named)."""

    def __init__(self, session_id: str, *, engine: Any = None, session_settings: Any = None, **_: Any) -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        self._own_store = PostgresStore.connect(POSTGRES)
        super().__init__(self._own_store, session_id)
        self.session_settings = _settings(session_settings)
        # What the tests use to write rows behind the session's back: the same tables, through SQLAlchemy.
        self._session_factory = async_sessionmaker(self._own_store._engine, expire_on_commit=False)
        self._messages = _messages_table()

    async def _ensure_tables(self) -> None:
        """memchat made them when the run started."""

    @classmethod
    def from_url(
        cls, session_id: str, *, url: str, engine_kwargs: Any = None, session_settings: Any = None, **kwargs: Any
    ) -> SQLAlchemySession:
        return cls(session_id, session_settings=session_settings)

    @property
    def engine(self) -> Any:
        return self._own_store._engine

    async def close(self) -> None:
        await self._own_store.close()


def _messages_table() -> Any:
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

    return Table(
        "agent_messages",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("session_id", String),
        Column("message_data", Text),
        Column("created_at", DateTime),
    )


class RedisSession(RedisMemory):
    """``RedisSession``'s constructors, memchat's Redis store behind them, under this run's key prefix."""

    def __init__(
        self,
        session_id: str,
        *,
        redis_client: Any = None,
        key_prefix: str = "agents:session",
        ttl: int | None = None,
        session_settings: Any = None,
    ) -> None:
        self._own_store = RedisStore.connect(f"{REDIS}?key_prefix={_run_prefix(key_prefix)}")
        super().__init__(self._own_store, session_id)
        self.session_settings = _settings(session_settings)

    @classmethod
    def from_url(cls, session_id: str, *, url: str, redis_kwargs: Any = None, **kwargs: Any) -> RedisSession:
        return cls(session_id, **kwargs)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._own_store.close()


def _run_prefix(key_prefix: str) -> str:
    return f"{os.environ.get('MEMCHAT_SDK_RUN', 'run')}:{key_prefix.rstrip(':')}"


def _install() -> None:
    """Put the adapters where the SDK's tests import their session classes from."""
    import agents
    import agents.extensions.memory.redis_session as redis_module
    import agents.extensions.memory.sqlalchemy_session as sqlalchemy_module
    import agents.memory
    import agents.memory.sqlite_session as sqlite_module

    if KIND == "sqlite":
        agents.SQLiteSession = SQLiteSession  # type: ignore[misc]
        agents.memory.SQLiteSession = SQLiteSession  # type: ignore[misc]
        sqlite_module.SQLiteSession = SQLiteSession  # type: ignore[misc]
    elif KIND == "postgres":
        sqlalchemy_module.SQLAlchemySession = SQLAlchemySession  # type: ignore[misc]
    elif KIND == "redis":
        redis_module.RedisSession = RedisSession  # type: ignore[misc]


# Only inside the run tests/stores/test_sdk_suite.py starts (which names the store): a test process that just
# imports FILES from here must keep the SDK's own classes.
if "MEMCHAT_SDK_STORE" in os.environ:
    _install()

# The SDK's test files that exercise each session class through what a Session offers: its own
# session tests, and the runner's tests that keep history in a session. Left out whole:
# tests/memory/test_compaction_suffix.py, tests/memory/test_compaction_model_visibility.py and
# tests/extensions/memory/test_encrypt_session.py, whose wrappers reach into SQLiteSession's private
# methods (``_pop_item_with_validation``, its connection cache) rather than the Session protocol.
FILES = {
    "sqlite": [
        "tests/memory/test_session.py",
        "tests/memory/test_session_limit.py",
        "tests/memory/test_session_persistence_sanitize.py",
        "tests/memory/test_session_context_wrapper.py",
        "tests/memory/test_openai_responses_compaction_session.py",
        "tests/test_max_turns.py",
        "tests/test_soft_cancel.py",
        "tests/test_tool_batch_failure_history.py",
        "tests/test_native_tool_failure_history.py",
    ],
    "postgres": ["tests/extensions/memory/test_sqlalchemy_session.py"],
    "redis": ["tests/extensions/memory/test_redis_session.py"],
}

_THREADS = "the SDK class's per-thread connection cache (memchat uses one worker thread per store)"
_INSIDES = "monkeypatches or inspects the SDK class's private connection handling"
_COMPACTION = "the SDK class's private atomic-replace hook, which the SDK's compaction session calls"
NOT_APPLICABLE: dict[str, str] = {
    # SQLiteSession
    "test_sqlite_session_close_closes_worker_thread_connections": _THREADS,
    "test_sqlite_session_reaps_connections_from_exited_worker_threads": _THREADS,
    "test_sqlite_session_closes_retired_connections_before_the_next_allocation": _THREADS,
    "test_sqlite_session_keeps_connections_of_live_worker_threads": _THREADS,
    "test_sqlite_session_file_lock_is_shared_across_instances": "the SDK class's process-wide lock registry",
    "test_sqlite_session_closed_rejects_empty_add_items": "the SDK's RuntimeError wording for a closed session",
    "test_sqlite_session_failed_clear_session_rolls_back": "expects the raw sqlite3 error (memchat raises one "
    "StoreError line) and inspects the SDK's connection cache",
    "test_sqlite_session_failed_pop_item_releases_write_lock": "expects the raw sqlite3 error (memchat raises one "
    "StoreError line) and inspects the SDK's connection cache",
    "test_sqlite_session_rollback_failure_evicts_connection": _INSIDES,
    "test_sqlite_session_close_retries_quarantined_connection": _INSIDES,
    "test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome": _INSIDES,
    "test_automatic_compaction_rollback_budget": _COMPACTION,
    "test_settled_pop_failure_invalidates_response_chain": _INSIDES,
    "test_settled_clear_failure_invalidates_response_chain": _INSIDES,
    # SQLAlchemySession
    "test_sqlalchemy_session_defaults_to_escaped_non_ascii_storage": "the SDK's storage format; memchat stores "
    "text readably (ensure_ascii=False), which the SDK reads back the same",
    "test_sqlite_fallback_reserves_writer_before_tail_claim": "the SDK's SQLite dialect fallback",
    "test_pop_item_supports_unknown_delete_rowcount": _INSIDES,
    "test_pop_item_retries_returning_claim_lost_to_concurrent_delete": _INSIDES,
    "test_mutation_cancellation_waits_for_transaction_exit": _INSIDES,
    "test_add_items_waits_for_transient_sqlite_write_lock": "the SDK's SQLite dialect",
    "test_add_items_concurrent_first_access_with_shared_session_cross_loop": "one SQLAlchemy engine shared "
    "across event loops (asyncpg connections belong to one loop)",
    "test_add_items_cancelled_waiter_does_not_strand_table_init_lock": "the SDK class's table-creation lock",
    "test_create_tables_false_does_not_allocate_shared_init_lock": "the SDK class's table-creation lock",
    "test_pop_item_returns_none_after_dropping_only_corrupt_rows": "writes a message row with no session row, which "
    "PostgreSQL's foreign key refuses (the SDK's own tests run on SQLite, which does not enforce it)",
    "test_pop_item_same_timestamp_returns_latest": "writes a timestamp as text, which SQLite takes and asyncpg refuses",
    "test_get_items_orders_by_id_for_ties": "inspects the SQL statements the SDK class builds",
    "test_engine_property_from_external_engine": "memchat's store owns its engine, built from --db",
    "test_sqlite_configuration_registry_releases_collected_engines": "the SDK's SQLite dialect",
    "test_sqlite_configuration_registry_does_not_grow_unbounded": "the SDK's SQLite dialect",
    # RedisSession
    "test_redis_session_rejects_cluster_transactions_before_pipeline": "hands the session its own RedisCluster "
    "client; memchat opens its store from --db",
    "test_mutation_cancellation_waits_for_authoritative_outcome": _INSIDES,
    "test_internal_client_ownership": _INSIDES,
    "test_get_next_id_method": "the SDK class's private id counter",
    "test_compaction_replaces_redis_history_atomically": _COMPACTION,
    "test_atomic_replacement_preserves_clear_add_metadata": _COMPACTION,
    "test_atomic_replacement_serializes_before_deleting_history": _COMPACTION,
    "test_compaction_cancel_after_redis_commit_invalidates_cached_history": _COMPACTION,
    "test_atomic_replacement_rejects_colliding_counter_key": _COMPACTION,
    "test_cancelled_redis_compaction_handoff_remains_resumable": _COMPACTION,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = [item for item in items if item.originalname in NOT_APPLICABLE or item.name in NOT_APPLICABLE]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(autouse=True)
def _empty_store() -> Iterator[None]:
    """Each SDK test starts on an empty store, as theirs do on a fresh in-memory database."""
    if KIND == "postgres":

        async def wipe() -> None:
            store = await PostgresStore.open(POSTGRES)
            async with store.connection(write=True) as conn:
                from sqlalchemy import text

                await conn.execute(
                    text(
                        "TRUNCATE agent_messages, agent_sessions, memchat_summaries, memchat_instructions "
                        "RESTART IDENTITY CASCADE"
                    )
                )
            await store.close()

        asyncio.run(wipe())
    elif KIND == "redis":
        import redis

        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{os.environ.get('MEMCHAT_SDK_RUN', 'run')}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    yield
