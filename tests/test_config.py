"""Where settings come from, and which ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import config
from config import ConfigError, load_settings


def test_defaults_are_user1_conversion_db_and_a_small_openai_model() -> None:
    settings = load_settings(env={"OPENAI_API_KEY": "k"})
    assert (settings.user, settings.db, settings.model, settings.api) == (
        "user1",
        "conversion.db",
        config.DEFAULT_MODEL,
        "responses",
    )


def test_search_by_meaning_is_on_against_openai_and_named_elsewhere() -> None:
    openai = load_settings(env={"OPENAI_API_KEY": "k"})
    assert (openai.embedding_model, openai.suggest_embeddings) == ("text-embedding-3-small", False)
    # Another server's embedding models have names of their own: off, with a tip in /help.
    local = load_settings(env={"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert (local.embedding_model, local.suggest_embeddings) == (None, True)
    named = load_settings(env={"OPENAI_BASE_URL": "http://x/v1", "MEMCHAT_EMBEDDING_MODEL": "nomic-embed-text"})
    assert named.embedding_model == "nomic-embed-text"
    off = load_settings(env={"OPENAI_API_KEY": "k", "MEMCHAT_EMBEDDING_MODEL": "off"})
    assert (off.embedding_model, off.suggest_embeddings) == (None, False)
    # Vectors would undo encryption at rest: not on by default there.
    assert load_settings(env={"OPENAI_API_KEY": "k", "MEMCHAT_ENCRYPTION_KEY": "s" * 32}).embedding_model is None


def test_flags_win_over_environment() -> None:
    env = {"MEMCHAT_USER": "env-user", "MEMCHAT_DB": "env.db", "OPENAI_DEFAULT_MODEL": "env-model"}
    settings = load_settings(user="flag-user", db="flag.db", model="flag-model", env=env)
    assert (settings.user, settings.db, settings.model) == ("flag-user", "flag.db", "flag-model")


def test_a_base_url_switches_to_chat_completions_unless_overridden() -> None:
    assert load_settings(env={"OPENAI_BASE_URL": "http://x/v1"}).api == "chat_completions"
    assert load_settings(env={"OPENAI_BASE_URL": "http://x/v1", "MEMCHAT_API": "responses"}).api == "responses"


def test_dotenv_in_the_current_folder_is_read_and_real_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("MEMCHAT_USER=from-file\nOPENAI_DEFAULT_MODEL=file-model\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_DEFAULT_MODEL", "env-model")
    monkeypatch.delenv("MEMCHAT_USER", raising=False)
    settings = load_settings()
    assert (settings.user, settings.model) == ("from-file", "env-model")


def test_dotenv_in_a_parent_folder_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MEMCHAT_USER=from-parent\n")
    child = tmp_path / "child"
    child.mkdir()
    monkeypatch.chdir(child)
    monkeypatch.delenv("MEMCHAT_USER", raising=False)
    assert load_settings().user == "user1"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [(b"MEMCHAT_USER=caf\xe9\n", "not UTF-8"), (b"MEMCHAT_USER=a\x00b\n", "NUL byte")],
    ids=["latin-1", "nul"],
)
def test_a_dotenv_that_is_not_text_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, complaint: str
) -> None:
    (tmp_path / ".env").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=complaint) as raised:
        load_settings()
    assert ".env" in str(raised.value)


def test_no_key_and_no_server_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match=r"set OPENAI_API_KEY .* or OPENAI_BASE_URL"):
        load_settings(env={}).require_model_access()


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"MEMCHAT_API": "grpc"}, "MEMCHAT_API"),
        ({"MEMCHAT_TIMEOUT": "soon"}, "MEMCHAT_TIMEOUT"),
        ({"MEMCHAT_RETRIES": "-1"}, "MEMCHAT_RETRIES"),
        ({"MEMCHAT_TIMEOUT": "nan"}, "finite"),
        ({"MEMCHAT_TIMEOUT": "inf"}, "finite"),
        ({"MEMCHAT_TIMEOUT": "0"}, "above zero"),
        ({"MEMCHAT_STORE_TIMEOUT": "nan"}, "MEMCHAT_STORE_TIMEOUT"),
    ],
)
def test_malformed_settings_are_named(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_settings(env=env)


@pytest.mark.parametrize(
    ("user", "complaint"),
    [("", "empty"), ("   ", "empty"), ("x" * 201, "longer than"), ("a\x00b", "control characters")],
)
def test_unusable_user_ids_are_refused(user: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_settings(user=user, env={})


@pytest.mark.parametrize("user", ["../../etc/passwd", "alice'; DROP TABLE agent_messages;--", "Zoë 🦊", "x" * 200])
def test_odd_but_harmless_user_ids_are_accepted(user: str) -> None:
    assert load_settings(user=user, env={}).user == user


def test_openai_prices_are_known_against_openai_only_and_memchat_prices_add_to_them() -> None:
    assert load_settings(env={}).price("gpt-5.4-mini") == (0.75, 4.50)
    elsewhere = load_settings(env={"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"})
    assert elsewhere.price("gpt-5.4-mini") is None  # a proxy or another server may charge its own way
    priced = load_settings(env={"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1", "MEMCHAT_PRICES": "llama = 0/0, x=1/2"})
    assert priced.price("llama") == (0.0, 0.0) and priced.price("x") == (1.0, 2.0)
