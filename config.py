"""Every memchat setting, read in one place.

Settings come from, in order of precedence: command-line flags, real environment
variables, then a ``.env`` file in the current directory (python-dotenv; never a
parent directory's, never written). This module imports nothing heavy, so
``--help`` and the paths that only touch the database stay fast.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

from memchat.errors import MemchatError

Api = Literal["responses", "chat_completions"]

DEFAULT_USER = "user1"
DEFAULT_DB = "conversion.db"
# A current small OpenAI chat model; any server's model name works with --model.
DEFAULT_MODEL = "gpt-5.4-mini"
DEFAULT_TIMEOUT = 60.0
DEFAULT_STORE_TIMEOUT = 20.0
DEFAULT_RETRIES = 2
DEFAULT_CONTEXT_TOKENS = 8000
# Replies longer than this are cut: a small local model that never stops would otherwise run to the end of its context.
DEFAULT_MAX_TOKENS = 4096
MIN_CONTEXT_TOKENS = 100
# Embedding one message takes tens of milliseconds on a local server: a turn never waits longer than this for it.
DEFAULT_EMBEDDING_TIMEOUT = 2.0
# Search by meaning against OpenAI when no model is named: its cheapest embedding model.
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant in a terminal chat. You remember earlier "
    "conversations with this user: use what they told you before."
)
MAX_USER_ID_LENGTH = 200

# US dollars per million tokens, in and out, of OpenAI's own models, as its pricing page listed them
# (checked 2026-12-03): /usage estimates what a turn cost from them. Used only against OpenAI itself;
# MEMCHAT_PRICES adds or overrides models, for any server.
PRICES_AT_OPENAI: dict[str, tuple[float, float]] = {
    "gpt-5.5": (5.00, 30.00),
    "gpt-5.4": (2.50, 15.00),
    "gpt-5.4-mini": (0.75, 4.50),
    "gpt-5.4-nano": (0.20, 1.25),
}

# Where memchat web listens unless told otherwise: this machine only.
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8000

# Documented in --help and docs/configuration.md (a test holds them together); the single list of what memchat reads.
ENVIRONMENT: dict[str, str] = {
    "OPENAI_API_KEY": "API key for the model server",
    "OPENAI_BASE_URL": "OpenAI-compatible server URL (switches to Chat Completions)",
    "OPENAI_DEFAULT_MODEL": f"model name (default {DEFAULT_MODEL})",
    "MEMCHAT_USER": f"user id (default {DEFAULT_USER})",
    "MEMCHAT_DB": f"SQLite file or postgresql:// / redis:// URL (default {DEFAULT_DB})",
    "MEMCHAT_API": "responses | chat_completions (overrides the choice above)",
    "MEMCHAT_CONTEXT_TOKENS": f"most tokens of history sent per request (default {DEFAULT_CONTEXT_TOKENS})",
    "MEMCHAT_MAX_TOKENS": f"most tokens a reply may take (default {DEFAULT_MAX_TOKENS})",
    "MEMCHAT_TIMEOUT": f"seconds to wait for the model (default {DEFAULT_TIMEOUT:g})",
    "MEMCHAT_RETRIES": f"retries on 429, 5xx and connection errors (default {DEFAULT_RETRIES})",
    "MEMCHAT_STORE_TIMEOUT": f"seconds to wait for a PostgreSQL or Redis server (default {DEFAULT_STORE_TIMEOUT:g})",
    "MEMCHAT_INSTRUCTIONS": "system instructions for the assistant",
    "MEMCHAT_HISTORY_FILE": "where typed input history is kept",
    "MEMCHAT_TRACING": "1 to export traces to OpenAI (off by default)",
    "MEMCHAT_ENCRYPTION_KEY": "a passphrase: store messages encrypted with it (off by default)",
    "MEMCHAT_RECALL": "off to send only the summary and the newest turns, without recalled older messages",
    "MEMCHAT_TOOLS": "off to offer the model no tools: neither search_memory nor MCP servers (also --no-tools)",
    "MEMCHAT_MCP_CONFIG": "the MCP servers' JSON file (default ~/.config/memchat/mcp.json, where it exists)",
    "MEMCHAT_SAVED_MEMORIES": (
        "off to keep no saved memories; tools to keep them only by the model's tools and /memories (no request "
        "after each turn on a server without tools)"
    ),
    "MEMCHAT_EMBEDDING_MODEL": (
        f"an embedding model of the same server, for search by meaning ({DEFAULT_EMBEDDING_MODEL} against OpenAI, "
        "off against another server unless named; off to turn it off)"
    ),
    "MEMCHAT_EMBEDDING_TIMEOUT": f"seconds a turn waits to embed its message (default {DEFAULT_EMBEDDING_TIMEOUT:g})",
    "MEMCHAT_ATTACHMENTS": "names to store only the name, size and type of an attached text file, not its content",
    "MEMCHAT_WEB_ORIGINS": "memchat web: other origins the page is reached at, comma-separated (a reverse proxy's)",
    "MEMCHAT_PRICES": "prices for /usage's cost estimate, as MODEL=IN/OUT dollars per million tokens, comma-separated",
    "MEMCHAT_PLAIN": "1 to print replies as raw text, not rendered Markdown (also --plain, NO_COLOR)",
}


class ConfigError(MemchatError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one run."""

    user: str
    db: str
    model: str
    api: Api
    api_key: str | None = field(repr=False)
    base_url: str | None
    context_tokens: int
    max_tokens: int
    timeout: float
    retries: int
    store_timeout: float
    instructions: str
    history_file: Path
    # Where memchat keeps its own files: input history, the web page's secret and settings.
    state_dir: Path
    tracing: bool
    encryption_key: str | None = field(default=None, repr=False)
    # Replies as raw text even in a terminal (MEMCHAT_PLAIN, --plain, or NO_COLOR set to anything).
    plain: bool = False
    # (model, dollars per million input tokens, per million output tokens), for /usage's estimate.
    prices: tuple[tuple[str, float, float], ...] = ()
    # Older exchanges that match the new message come with each request (MEMCHAT_RECALL=off: not).
    recall: bool = True
    # The model may call tools: search_memory and the MCP servers' (MEMCHAT_TOOLS=off, --no-tools: none).
    tools: bool = True
    # An attached text file's content is stored with the message (MEMCHAT_ATTACHMENTS=names: only what it was).
    keep_attachments: bool = True
    # The file configuring MCP servers (see memchat.toolbox.config); None: no servers.
    mcp_config: Path | None = None
    # Durable facts the model keeps about the user, pinned in every request (MEMCHAT_SAVED_MEMORIES=off: none).
    saved_memories: bool = True
    # Where the server takes no tools, a short request after each turn proposes them (MEMCHAT_SAVED_MEMORIES=tools: not).
    noted_memories: bool = True
    # Messages are embedded with this model of the same server, for semantic search (None: words only).
    embedding_model: str | None = None
    # Search by meaning is off only because nobody named a model of this server: say how to turn it on.
    suggest_embeddings: bool = False
    embedding_timeout: float = DEFAULT_EMBEDDING_TIMEOUT
    # memchat web: origins besides the page's own whose requests and sockets it takes (a reverse proxy's).
    web_origins: tuple[str, ...] = ()

    def price(self, model: str) -> tuple[float, float] | None:
        """Dollars per million tokens in and out for ``model``, where its price is known."""
        return next(((given, taken) for name, given, taken in self.prices if name == model), None)

    def require_model_access(self) -> None:
        """Fail with a plain explanation when no model server can be reached."""
        if not self.api_key and not self.base_url:
            raise ConfigError(
                "no model configured: set OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL "
                "(for a local or other OpenAI-compatible server) in the environment or in "
                ".env; see .env.example"
            )


def environment(cwd: Path | None = None) -> dict[str, str]:
    """The process environment over the ``.env`` of the current directory."""
    dotenv_file = (cwd or Path.cwd()) / ".env"
    from_file = _read_dotenv(dotenv_file) if dotenv_file.is_file() else {}
    merged = {key: value for key, value in from_file.items() if value is not None}
    merged.update(os.environ)
    return merged


def _read_dotenv(path: Path) -> dict[str, str | None]:
    """The settings of a ``.env`` file, or one line saying why it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start + 1}): save it as UTF-8, or move it out of this folder"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}): check its permissions") from None
    if "\x00" in text:
        raise ConfigError(f"{path} holds a NUL byte, so it is not a text file: fix or remove it")
    return dotenv_values(stream=io.StringIO(text))


def check_user_id(user: str) -> str:
    """Return a usable user id or raise ConfigError naming what is wrong with it."""
    user = user.strip()
    if not user:
        raise ConfigError("the user id is empty: pass --user NAME")
    if len(user) > MAX_USER_ID_LENGTH:
        raise ConfigError(f"the user id is longer than {MAX_USER_ID_LENGTH} characters: choose a shorter one")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in user):
        raise ConfigError("the user id contains control characters: use letters, digits or punctuation")
    if not _is_unicode(user):
        raise ConfigError("the user id is not valid UTF-8: check the terminal's encoding or choose another id")
    return user


def _is_unicode(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_settings(
    *,
    user: str | None = None,
    db: str | None = None,
    model: str | None = None,
    context_tokens: int | None = None,
    plain: bool = False,
    tools: bool = True,
    env: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags (the arguments) over the environment and ``.env``."""
    env = environment() if env is None else env
    state_dir = _state_dir(env)
    base_url = env.get("OPENAI_BASE_URL") or None
    api = env.get("MEMCHAT_API") or ("chat_completions" if base_url else "responses")
    if api not in ("responses", "chat_completions"):
        raise ConfigError(f"MEMCHAT_API is {api!r}: use 'responses' or 'chat_completions'")
    for name, value in (("--model", model), *((name, env.get(name)) for name in ENVIRONMENT)):
        if value is not None and not _is_unicode(value):
            raise ConfigError(f"{name} is not valid UTF-8: check the terminal's encoding or the .env file")
    if base_url and not base_url.lower().startswith(("http://", "https://")):
        raise ConfigError(
            f"OPENAI_BASE_URL is {base_url!r}: write it with its scheme, as in http://{base_url.lstrip('/')}"
        )
    named_embedding = env.get("MEMCHAT_EMBEDDING_MODEL", "").strip()
    saved_mode = _saved_memories(env)
    embedding_model = _embedding_model(named_embedding, base_url, encrypted=bool(env.get("MEMCHAT_ENCRYPTION_KEY")))
    if named_embedding not in ("", "off") and env.get("MEMCHAT_ENCRYPTION_KEY"):
        # Text can be recovered from its embedding: vectors kept in the clear would undo the encryption.
        raise ConfigError(
            "MEMCHAT_EMBEDDING_MODEL and MEMCHAT_ENCRYPTION_KEY are both set: vectors are not encrypted, "
            "and text can be recovered from them; unset one of the two"
        )
    if db is not None and not db.strip():
        raise ConfigError("--db is empty: pass a file path or a URL, or leave --db out for conversion.db")
    return Settings(
        user=check_user_id(user if user is not None else env.get("MEMCHAT_USER") or DEFAULT_USER),
        db=db or env.get("MEMCHAT_DB") or DEFAULT_DB,
        model=model or env.get("OPENAI_DEFAULT_MODEL") or DEFAULT_MODEL,
        api=api,  # type: ignore[arg-type]  # checked just above
        api_key=env.get("OPENAI_API_KEY") or None,
        base_url=base_url,
        context_tokens=_context_tokens(context_tokens, env),
        max_tokens=int(_number(env, "MEMCHAT_MAX_TOKENS", DEFAULT_MAX_TOKENS, int, positive=True)),
        timeout=_number(env, "MEMCHAT_TIMEOUT", DEFAULT_TIMEOUT, float, positive=True),
        retries=int(_number(env, "MEMCHAT_RETRIES", DEFAULT_RETRIES, int)),
        store_timeout=_number(env, "MEMCHAT_STORE_TIMEOUT", DEFAULT_STORE_TIMEOUT, float, positive=True),
        instructions=env.get("MEMCHAT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS,
        history_file=Path(env.get("MEMCHAT_HISTORY_FILE") or state_dir / "input_history"),
        state_dir=state_dir,
        tracing=_flag(env, "MEMCHAT_TRACING"),
        encryption_key=env.get("MEMCHAT_ENCRYPTION_KEY") or None,
        plain=plain or _flag(env, "MEMCHAT_PLAIN") or bool(env.get("NO_COLOR")),
        recall=_switch(env, "MEMCHAT_RECALL", default=True),
        tools=tools and _switch(env, "MEMCHAT_TOOLS", default=True),
        mcp_config=_mcp_config(env),
        keep_attachments=_attachments(env),
        saved_memories=saved_mode != "off",
        noted_memories=saved_mode == "on",
        embedding_model=embedding_model,
        suggest_embeddings=embedding_model is None and not named_embedding,
        embedding_timeout=_number(env, "MEMCHAT_EMBEDDING_TIMEOUT", DEFAULT_EMBEDDING_TIMEOUT, float, positive=True),
        web_origins=_origins(env),
        prices=_prices(env, base_url),
    )


def _embedding_model(named: str, base_url: str | None, *, encrypted: bool) -> str | None:
    """The model ``named`` by MEMCHAT_EMBEDDING_MODEL, or OpenAI's small one where the server is OpenAI's; None for off.

    Another server's embedding models have names of its own, so there it stays off until named; with
    encryption at rest it stays off unless asked for (and then refused: vectors would undo the encryption).
    """
    if named == "off":
        return None
    if named:
        return named
    if base_url is None and not encrypted:
        return DEFAULT_EMBEDDING_MODEL
    return None


def _origins(env: dict[str, str]) -> tuple[str, ...]:
    """MEMCHAT_WEB_ORIGINS: each a scheme and a host, as a browser sends it in ``Origin``."""
    origins = tuple(
        origin.strip().rstrip("/") for origin in env.get("MEMCHAT_WEB_ORIGINS", "").split(",") if origin.strip()
    )
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise ConfigError(
                f"MEMCHAT_WEB_ORIGINS holds {origin!r}: write each origin as scheme and host, "
                "as in https://chat.example.org, comma-separated"
            )
    return origins


def _flag(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes", "on")


def _switch(env: dict[str, str], name: str, *, default: bool) -> bool:
    """An on/off setting; anything else is one line naming it."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} is {env[name]!r}: use on or off")


def _prices(env: dict[str, str], base_url: str | None) -> tuple[tuple[str, float, float], ...]:
    """OpenAI's own prices against OpenAI, with MEMCHAT_PRICES over them; one line naming a malformed entry."""
    prices = dict(PRICES_AT_OPENAI) if base_url is None else {}
    for entry in filter(None, (part.strip() for part in env.get("MEMCHAT_PRICES", "").split(","))):
        model, _, rates = entry.rpartition("=")
        given, _, taken = rates.partition("/")
        try:
            rate_in, rate_out = float(given), float(taken)
        except ValueError:
            rate_in = rate_out = math.nan
        if not model.strip() or not (math.isfinite(rate_in) and math.isfinite(rate_out)) or min(rate_in, rate_out) < 0:
            raise ConfigError(
                f"MEMCHAT_PRICES has {entry!r}: write MODEL=IN/OUT in dollars per million tokens, "
                "as in my-model=0.15/0.60"
            )
        prices[model.strip()] = (rate_in, rate_out)
    return tuple((model, rate_in, rate_out) for model, (rate_in, rate_out) in prices.items())


def _saved_memories(env: dict[str, str]) -> str:
    """on (the default), tools (kept only by the model's tools and /memories) or off; the words of an on/off
    switch mean on and off."""
    switch = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    return _choice(env, "MEMCHAT_SAVED_MEMORIES", ("on", "tools", "off"), switch)


def _number(
    env: dict[str, str], name: str, default: float, kind: type[int] | type[float], *, positive: bool = False
) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}: use a number such as {default:g}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} is {raw!r}: use a finite number such as {default:g}")
    if positive and value <= 0:
        raise ConfigError(f"{name} is {raw!r}: use a number above zero, such as {default:g}")
    if value < 0:
        raise ConfigError(f"{name} is {raw!r}: use a number of zero or more")
    return value


def _context_tokens(flag: int | None, env: dict[str, str]) -> int:
    value = flag if flag is not None else int(_number(env, "MEMCHAT_CONTEXT_TOKENS", DEFAULT_CONTEXT_TOKENS, int))
    if value < MIN_CONTEXT_TOKENS:
        raise ConfigError(
            f"the context budget of {value} tokens is too small to hold a turn: use at least {MIN_CONTEXT_TOKENS}"
        )
    return value


def _attachments(env: dict[str, str]) -> bool:
    """MEMCHAT_ATTACHMENTS: keep (the default) or names."""
    return _choice(env, "MEMCHAT_ATTACHMENTS", ("keep", "names")) == "keep"


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    """A setting that is one of ``choices`` (the first by default); anything else is one line naming them."""
    raw = env.get(name, "").strip().lower() or choices[0]
    raw = (aliases or {}).get(raw, raw)
    if raw not in choices:
        raise ConfigError(f"{name} is {env[name]!r}: use {', '.join(choices[:-1])} or {choices[-1]}")
    return raw


def _mcp_config(env: dict[str, str]) -> Path | None:
    """MEMCHAT_MCP_CONFIG (which must exist), else the usual file where it exists."""
    named = env.get("MEMCHAT_MCP_CONFIG", "").strip()
    if named:
        return Path(named).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    usual = Path(base) / "memchat" / "mcp.json"
    return usual if usual.is_file() else None


def _state_dir(env: dict[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "memchat"
