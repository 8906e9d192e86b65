"""The SQLite store's layout, migration by migration (see ``memchat.stores.migrations``)."""

from memchat.stores.migrations import Migration

# The layout, as ordered migrations: a file records which it has (memchat_migrations) and gets the
# rest, in order, on its next start. The first is the layout of every file before versions were kept
# (all of it CREATE ... IF NOT EXISTS, so it also fits files written by the SDK's own SQLiteSession).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "the SDK's tables, web passwords and summaries",
        (
            """
            CREATE TABLE IF NOT EXISTS agent_sessions (
                session_id TEXT PRIMARY KEY,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS agent_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL,
                message_data TEXT NOT NULL,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE
            )
            """,
            """
            CREATE INDEX IF NOT EXISTS idx_agent_messages_session_id ON agent_messages (session_id, id)
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_passwords (
                user_id TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_summaries (
                session_id TEXT PRIMARY KEY,
                summary TEXT NOT NULL,
                through_id INTEGER NOT NULL,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "standing instructions (/instructions)",
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_instructions (
                session_id TEXT PRIMARY KEY,
                instructions TEXT NOT NULL,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "a full-text index of every message",
        # rowid is the message's id in agent_messages. memchat_indexed says up to which id each
        # user's messages are all in the index, so only newer ones are ever looked at for it.
        (
            """
            CREATE VIRTUAL TABLE IF NOT EXISTS memchat_search USING fts5(
                body, session_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_indexed (
                session_id TEXT PRIMARY KEY,
                through_id INTEGER NOT NULL
            )
            """,
        ),
    ),
    Migration(
        "message embeddings for semantic search",
        # One vector per message, from the embedding model named beside it (an empty one for a message
        # with no text). The trigger removes it with its message, whoever deletes it: memchat or the SDK.
        # seq only grows (a replaced vector gets a new one), so a reader can ask for what is new.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_vectors (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id INTEGER NOT NULL UNIQUE,
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                vector BLOB NOT NULL
            )
            """,
            """
            CREATE INDEX IF NOT EXISTS idx_memchat_vectors_session ON memchat_vectors (session_id, model, seq)
            """,
            """
            CREATE TRIGGER IF NOT EXISTS memchat_vectors_follow AFTER DELETE ON agent_messages BEGIN
                DELETE FROM memchat_vectors WHERE message_id = old.id;
            END
            """,
        ),
    ),
    Migration(
        "web sessions that a logout or a new password ends",
        # The mark every web login of the user carries; a new one ends them all.
        ("ALTER TABLE memchat_passwords ADD COLUMN sessions TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        "failed web logins, counted for every web process on the file",
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_login_failures (
                key TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                last REAL NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_memchat_login_failures_last ON memchat_login_failures (last)",
        ),
    ),
    Migration(
        "the sign bits of each vector, in blocks, searched in place (see vector_index)",
        # memchat_coded says up to which vector (seq) each user's bits are written; the trigger notes
        # a vector deleted after that, whoever deletes it, so its bits go on the next search too.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_codes (
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                block INTEGER NOT NULL,
                size INTEGER NOT NULL,
                entries BLOB NOT NULL,
                PRIMARY KEY (session_id, model, block)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_coded (
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                through_seq INTEGER NOT NULL,
                PRIMARY KEY (session_id, model)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS memchat_codes_gone (
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                seq INTEGER NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_memchat_codes_gone ON memchat_codes_gone (session_id, model)",
            """
            CREATE TRIGGER IF NOT EXISTS memchat_codes_follow AFTER DELETE ON memchat_vectors
            WHEN old.seq <= (SELECT through_seq FROM memchat_coded WHERE session_id = old.session_id AND model = old.model)
            BEGIN
                INSERT INTO memchat_codes_gone (session_id, model, seq) VALUES (old.session_id, old.model, old.seq);
            END
            """,
        ),
    ),
    Migration(
        "saved memories: durable facts about each user, kept apart from the conversation",
        # One text a user (the facts, as memchat.context.saved writes them), with a version that each
        # write names, so two processes changing them at once cannot lose each other's change.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_saved (
                session_id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                version INTEGER NOT NULL,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
            )
            """,
        ),
    ),
    Migration(
        "graphs: a long history's vector bits searched through a graph kept beside the file",
        # Which graph file (see memchat.stores.graph) covers a user's vectors of one model and size:
        # those up to write number through_seq; blocks from from_block on hold the ones after it.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_graphs (
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                size INTEGER NOT NULL,
                file TEXT NOT NULL,
                through_seq INTEGER NOT NULL,
                from_block INTEGER NOT NULL,
                PRIMARY KEY (session_id, model, size)
            )
            """,
        ),
    ),
    Migration(
        "embedded mark: what lacks a vector found without counting a long history",
        # Every message of a user up to through_id has its vector of that model: a message's id never
        # comes back, and its vector goes only with it. Only messages after it are looked at.
        (
            """
            CREATE TABLE IF NOT EXISTS memchat_embedded (
                session_id TEXT NOT NULL,
                model TEXT NOT NULL,
                through_id INTEGER NOT NULL,
                PRIMARY KEY (session_id, model)
            )
            """,
        ),
    ),
)
