"""Shared fixtures: a local OpenAI-compatible server and a way to run memchat as a user would."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
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
