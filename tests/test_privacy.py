"""Private by default: files only their owner can read, the API key in no output, .env never written."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from memchat.stores.sqlite import SQLiteStore
from support import AGENT, Memchat

KEY = "sk-memchat-test-0123456789-SECRET"


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_and_shm_files_are_0600_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "m.db"
    store = SQLiteStore(db)
    asyncio.run(store.memory("alice").add_items([{"role": "user", "content": "hi"}]))
    companions = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert all(path.exists() for path in companions)  # WAL keeps them while the store is open
    assert [mode(path) for path in companions] == [0o600] * 3
    asyncio.run(store.close())


def test_files_memchat_creates_are_0600_under_umask_0(memchat: Memchat, tmp_path: Path) -> None:
    env = {**memchat.env, "MEMCHAT_HISTORY_FILE": str(tmp_path / "state" / "history")}
    subprocess.run(
        [sys.executable, str(AGENT)], input=b"hello\n", cwd=memchat.cwd, env=env, preexec_fn=lambda: os.umask(0)
    )
    assert mode(memchat.db) == 0o600


def test_the_api_key_never_appears_in_any_output_or_file(memchat: Memchat, tmp_path: Path) -> None:
    seen = []
    with FakeOpenAI(api_key="sk-the-right-one") as strict:  # answers 401 and echoes the key it was given
        runs = [
            memchat(input="hello\n", OPENAI_BASE_URL=strict.url, OPENAI_API_KEY=KEY),
            memchat(input="hello\n[[status:500]]\n/history\n/users\n", OPENAI_API_KEY=KEY),
            memchat(input="[[hang]]\n", OPENAI_API_KEY=KEY, MEMCHAT_TIMEOUT="1"),
            memchat("--help", OPENAI_API_KEY=KEY),
            memchat("--no-such-flag", OPENAI_API_KEY=KEY),
            memchat("--db", "/no/such/folder/x.db", input="hi\n", OPENAI_API_KEY=KEY),
            memchat(input="hi\n", OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY=KEY),
        ]
    for run in runs:
        seen.append(run.stdout + run.stderr)
        assert "Traceback" not in run.stderr
    assert any("refused the API key" in output for output in seen)  # the echo did happen
    assert not any(KEY in output or "SECRET" in output for output in seen)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path


def test_dotenv_is_read_but_never_written(memchat: Memchat, server: FakeOpenAI) -> None:
    dotenv = memchat.cwd / ".env"
    dotenv.write_text(f"OPENAI_BASE_URL={server.url}\nMEMCHAT_USER=dora\n")
    os.utime(dotenv, (1_000_000_000, 1_000_000_000))
    before = dotenv.read_bytes(), dotenv.stat().st_mtime
    without_url = Memchat(memchat.cwd, {k: v for k, v in memchat.env.items() if k != "OPENAI_BASE_URL"})
    run = without_url(input="hello\n/clear\n")
    assert run.returncode == 0, run.stderr
    assert "dora" in run.stderr  # it was read: "cleared the memory of dora"
    assert (dotenv.read_bytes(), dotenv.stat().st_mtime) == before
