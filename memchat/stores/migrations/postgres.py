"""The PostgreSQL store's layout, migration by migration (see ``memchat.stores.migrations``)."""

from memchat.stores.migrations import Migration

# The layout, as ordered migrations (see the SQLite migrations): memchat_migrations records which a
# database has. The first is the layout of every database before versions were kept.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "the SDK's tables, web passwords and summaries",
        (
            """
            CREATE TABLE IF NOT EXISTS agent_sessions (
                session_id VARCHAR PRIMARY KEY,
                created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
                updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS agent_messages (
                id SERIAL PRIMARY KEY,
                session_id VARCHAR NOT NULL REFERENCES agent_sessions (session_id) ON DELETE CASCADE,
                message_data TEXT NOT NULL,
                created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_agent_messages_session_time ON agent_messages (session_id, created_at)",
            "CREATE INDEX IF NOT EXISTS idx_agent_messages_session_id ON agent_messages (session_id, id)",
            """
            CREATE TABLE IF NOT EXISTS memchat_passwords (
                user_id VARCHAR PRIMARY KEY,
                hash TEXT NOT NULL,
                updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_summaries (
                session_id VARCHAR PRIMARY KEY,
                summary TEXT NOT NULL,
                through_id INTEGER NOT NULL,
                updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "standing instructions (/instructions)",
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_instructions (
                session_id VARCHAR PRIMARY KEY,
                instructions TEXT NOT NULL,
                updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "a full-text index of every message",
        # A message's entry goes with it (ON DELETE CASCADE), whoever deletes it: memchat or the SDK.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_search (
                message_id INTEGER PRIMARY KEY REFERENCES agent_messages (id) ON DELETE CASCADE,
                session_id VARCHAR NOT NULL,
                body TSVECTOR NOT NULL
            )
            """,
            # Only the words are indexed: with an index on the user too, the planner would read all of a
            # user's rows and test each one, 100,000 of them for a long memory, instead of the few that match.
            "CREATE INDEX IF NOT EXISTS idx_memchat_search_body ON memchat_search USING GIN (body)",
        ),
    ),
    Migration(
        "message embeddings for semantic search",
        # One vector per message (see the SQLite store), gone with its message like its index entry.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_vectors (
                message_id INTEGER PRIMARY KEY REFERENCES agent_messages (id) ON DELETE CASCADE,
                seq BIGSERIAL NOT NULL,
                session_id VARCHAR NOT NULL,
                model TEXT NOT NULL,
                vector BYTEA NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_memchat_vectors_session ON memchat_vectors (session_id, model, seq)",
        ),
    ),
    Migration(
        "web sessions that a logout or a new password ends",
        ("ALTER TABLE memchat_passwords ADD COLUMN IF NOT EXISTS sessions TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        "failed web logins, counted for every web process on the database",
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_login_failures (
                key TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                last DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_memchat_login_failures_last ON memchat_login_failures (last)",
        ),
    ),
    Migration(
        "saved memories: durable facts about each user, kept apart from the conversation",
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_saved (
                session_id VARCHAR PRIMARY KEY,
                body TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "embedded mark: what lacks a vector found without counting a long history",
        # As on SQLite: every message of a user up to through_id has its vector of that model.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_embedded (
                session_id VARCHAR NOT NULL,
                model TEXT NOT NULL,
                through_id BIGINT NOT NULL,
                PRIMARY KEY (session_id, model)
            )
            """,
        ),
    ),
)
