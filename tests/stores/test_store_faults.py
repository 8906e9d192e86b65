"""Faults between memchat and its store, injected for real while memchat runs.

SQLite: the file deleted or replaced under a running chat, a full filesystem,
a read-only one, a lock held by another process, many processes starting on a
new file at once. PostgreSQL and Redis: a TCP proxy (``proxy.FaultProxy``)
that drops, refuses and stalls connections between memchat and the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from fake_openai import FakeOpenAI
from memchat.items import describe
from memchat.stores import open_store
from memchat.stores.sqlite import SQLiteStore
from proxy import FaultProxy
from support import AGENT, POSTGRES_URL, REDIS_PREFIX, REDIS_SERVER, Memchat, clean_env, fresh_store, stored_items
from web_page import CHROMIUM, CHROMIUM_ARGS, give_passwords, log_in, post_login, running_web, wait_for_text


@dataclass
class Conversation:
    """memchat on a pipe, a line at a time: what a person at a slow terminal does, with the output read as it comes."""

    proc: subprocess.Popen[bytes]
    out: queue.Queue[str] = field(default_factory=queue.Queue)
    err: queue.Queue[str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=_read_lines, args=(stream, lines), daemon=True).start()

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float = 30) -> str:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout} s; stderr so far: {self.errors()}") from None

    def error(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.err.get(timeout=0.1)
            except queue.Empty:
                continue
            if line.startswith("error:"):
                return line
        raise AssertionError(f"no error line within {timeout} s")

    def errors(self) -> list[str]:
        found = []
        while not self.err.empty():
            found.append(self.err.get())
        return found

    def end(self, timeout: float = 30) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)


def _read_lines(stream: IO[bytes], lines: queue.Queue[str]) -> None:
    # Closed at the end of the output, or the pipe is left to the collector ("unclosed file" warnings).
    with stream:
        for raw in stream:
            lines.put(raw.decode(errors="replace").rstrip("\n"))


@pytest.fixture
def converse(memchat: Memchat) -> Iterator[object]:
    started: list[Conversation] = []

    def start(*args: str, **env: str) -> Conversation:
        proc = subprocess.Popen(
            [sys.executable, str(AGENT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=memchat.cwd,
            env={**memchat.env, **env},
        )
        started.append(Conversation(proc))
        return started[-1]

    yield start
    for conversation in started:
        if conversation.proc.poll() is None:
            conversation.proc.kill()
            conversation.proc.wait()


def assert_one_line(line: str, *phrases: str) -> None:
    assert line.startswith("error: "), line
    assert "Traceback" not in line
    for phrase in phrases:
        assert phrase in line, line


# -- SQLite -----------------------------------------------------------------------


def test_a_database_deleted_under_a_running_chat_stops_it_with_one_line_not_silent_loss(
    converse, memchat: Memchat
) -> None:
    chat = converse("--user", "alice")
    chat.say("my name is Alice")
    assert chat.reply() == "You said: my name is Alice"
    for path in memchat.cwd.glob("conversion.db*"):
        path.unlink()
    chat.say("I like tea")
    assert_one_line(chat.error(), "conversion.db was deleted while memchat was running", "start memchat again")
    assert chat.end() == 2  # the chat ends, since nothing more can be kept
    assert chat.out.empty()  # the model was not asked: its reply could not have been kept


def test_a_database_replaced_under_a_running_chat_is_noticed(converse, memchat: Memchat) -> None:
    chat = converse("--user", "alice")
    chat.say("hello")
    chat.reply()
    other = memchat.cwd / "other.db"
    SQLiteStore(other)  # a valid, empty memchat file
    os.replace(other, memchat.db)
    chat.say("/undo")
    assert_one_line(chat.error(), "was replaced by another file")
    assert chat.end() == 2
    assert stored_items(str(memchat.db), "alice") == []  # the new file was not written to


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem of its own (tmpfs), mounted for this test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        message = f"cannot mount a small filesystem here ({done.stderr.decode().strip()})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI runs as root")
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; return the filler, to delete for space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_one_line_naming_it_and_the_chat_goes_on_once_there_is_space(converse, small_disk: Path) -> None:
    db = str(small_disk / "memory.db")
    chat = converse("--db", db, "--user", "alice")
    chat.say("first")
    assert chat.reply() == "You said: first"
    filler = fill(small_disk)
    chat.say("x" * 20000)  # more than any free page left
    chat.reply()
    assert_one_line(chat.error(), "the reply above was not saved", "the disk is full", "free some space")
    chat.say("/undo")  # a command meets the same disk: one line, not a traceback
    line = chat.error()
    assert_one_line(line, "the disk is full")
    filler.unlink()
    chat.say("second")
    assert chat.reply() == "You said: second"
    assert chat.end() == 1
    texts = [describe(item)[1] for item in stored_items(db, "alice")]
    assert texts == ["first", "You said: first", "second", "You said: second"]


def test_a_read_only_filesystem_is_one_line_at_start(memchat: Memchat, small_disk: Path) -> None:
    db = small_disk / "memory.db"
    assert memchat("--db", str(db), "--user", "alice", input="hello\n").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for args in (["--user", "alice"], ["--user", "alice", "--clear"]):
        run = memchat("--db", str(db), *args, input="again\n/undo\n")
        assert run.returncode == 2
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1
        assert_one_line(lines[0], str(db))
        assert "Traceback" not in run.stderr


@pytest.mark.anyio
async def test_a_lock_held_by_another_process_does_not_freeze_the_event_loop(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = SQLiteStore(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.ensure_future(store.memory("alice").add_items([{"role": "user", "content": "hi"}]))
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await asyncio.sleep(0.05)
            ticks += 1
        # The loop kept running (other users of the web page are served) while the write waited.
        assert ticks >= 10
        assert not write.done()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await write
    assert await store.memory("alice").get_items() == [{"role": "user", "content": "hi"}]
    await store.close()


def test_a_memory_can_be_used_from_another_thread_as_the_sdk_allows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    memory = store.memory("alice")
    asyncio.run(memory.add_items([{"role": "user", "content": "from the main thread"}]))
    seen: list[object] = []

    def worker() -> None:
        asyncio.run(memory.add_items([{"role": "assistant", "content": "from a worker"}]))
        seen.extend(asyncio.run(memory.get_items()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert [describe(item)[1] for item in seen] == ["from the main thread", "from a worker"]  # type: ignore[arg-type]


def test_eight_processes_starting_at_once_on_a_new_file_all_start(memchat: Memchat) -> None:
    for round_ in range(4):
        db = memchat.cwd / f"new-{round_}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, str(AGENT), "--db", str(db), "--user", f"u{n}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=memchat.cwd,
                env=memchat.env,
            )
            for n in range(8)
        ]
        results = [proc.communicate(b"/users\n/undo\n", timeout=60) for proc in procs]
        failures = [err.decode() for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode != 0]
        assert failures == [], f"round {round_}: {failures}"


# -- PostgreSQL and Redis behind a proxy that misbehaves ---------------------------


@pytest.fixture
def redis_proxy(tmp_path: Path) -> Iterator[tuple[FaultProxy, str]]:
    fresh_store("redis", tmp_path)
    port = urlsplit(REDIS_SERVER).port or 6379
    with FaultProxy(port) as proxy:
        yield proxy, proxy.url("redis://", f"{urlsplit(REDIS_SERVER).path}?key_prefix={REDIS_PREFIX}")


@pytest.fixture
def postgres_proxy(tmp_path: Path) -> Iterator[tuple[FaultProxy, str]]:
    fresh_store("postgres", tmp_path)
    parts = urlsplit(POSTGRES_URL)
    with FaultProxy(parts.port or 5432) as proxy:
        yield proxy, proxy.url(f"postgresql://{parts.username}@", parts.path)


@pytest.fixture(params=["postgres", "redis"])
def proxied(request: pytest.FixtureRequest) -> tuple[FaultProxy, str]:
    return request.getfixturevalue(f"{request.param}_proxy")  # type: ignore[no-any-return]


def test_a_dropped_connection_between_turns_is_replaced_without_a_failed_turn(
    converse, proxied: tuple[FaultProxy, str]
) -> None:
    proxy, url = proxied
    chat = converse("--db", url, "--user", "alice")
    chat.say("one")
    assert chat.reply() == "You said: one"
    proxy.drop()
    chat.say("two")
    assert chat.reply() == "You said: two"
    assert chat.end() == 0, chat.errors()
    assert len(stored_items(url, "alice")) == 4


def test_a_store_that_goes_down_fails_turns_with_one_line_and_is_used_again_when_back(
    converse, proxied: tuple[FaultProxy, str]
) -> None:
    proxy, url = proxied
    chat = converse("--db", url, "--user", "alice", MEMCHAT_STORE_TIMEOUT="3")
    chat.say("one")
    assert chat.reply() == "You said: one"
    proxy.refuse()
    chat.say("two")
    assert_one_line(chat.error(), "start the server")
    proxy.accept()
    chat.say("three")
    assert chat.reply() == "You said: three"
    assert chat.end() == 1
    assert [describe(item)[1] for item in stored_items(url, "alice")] == [
        "one",
        "You said: one",
        "three",
        "You said: three",
    ]


def test_a_store_that_stops_answering_fails_the_turn_within_the_store_timeout(
    converse, proxied: tuple[FaultProxy, str]
) -> None:
    proxy, url = proxied
    chat = converse("--db", url, "--user", "alice", MEMCHAT_STORE_TIMEOUT="2")
    chat.say("one")
    assert chat.reply() == "You said: one"
    proxy.stall()
    started = time.monotonic()
    chat.say("two")
    line = chat.error(timeout=40)
    assert time.monotonic() - started < 30
    assert_one_line(line)
    proxy.flow()
    proxy.drop()
    chat.say("three")
    assert chat.reply() == "You said: three"
    chat.end()


@pytest.mark.anyio
@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "command-lost"])
async def test_a_write_whose_connection_drops_is_stored_exactly_once(
    proxied: tuple[FaultProxy, str], applied: bool
) -> None:
    proxy, url = proxied
    commit = b"EXEC" if url.startswith("redis") else b"COMMIT"
    store = await open_store(url)
    try:
        memory = store.memory("alice")
        await memory.add_items([{"role": "user", "content": "before"}])
        (proxy.drop_after if applied else proxy.drop_before)(commit)
        await memory.add_items([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
        assert [describe(item)[1] for item in await memory.get_items()] == ["before", "q", "a"]
    finally:
        await store.close()


def test_store_errors_never_show_a_password_with_an_at_sign(memchat: Memchat) -> None:
    run = memchat("--db", "postgresql://postgres:S3cr@t@127.0.0.1:1/test", input="hi\n")
    assert run.returncode == 2
    assert "S3cr" not in run.stderr and "t@127" not in run.stderr
    assert "postgresql://postgres:***@127.0.0.1:1/test" in run.stderr


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("redis://127.0.0.1:6379/13abc", "must be a number"),
        ("postgresql://postgres@127.0.0.1:port/test", "not a usable PostgreSQL URL"),
        ("redis://127.0.0.1:port/0", "port"),
    ],
)
def test_a_malformed_url_is_one_line(memchat: Memchat, url: str, phrase: str) -> None:
    run = memchat("--db", url, input="hi\n")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert_one_line(run.stderr.strip(), phrase)


def test_a_login_while_the_store_is_down_is_refused_in_one_line_and_works_once_it_is_back(
    tmp_path: Path, server: FakeOpenAI, redis_proxy: tuple[FaultProxy, str]
) -> None:
    from playwright.sync_api import sync_playwright

    proxy, url = redis_proxy
    asyncio.run(give_passwords(url, ["alice"], "alice-pw"))
    env = clean_env(tmp_path, OPENAI_BASE_URL=server.url, MEMCHAT_STORE_TIMEOUT="3")
    with running_web(tmp_path, env, "--db", url) as web:
        proxy.refuse()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            log_in(page, web, "alice", "alice-pw")
            wait_for_text(page, "The memory store cannot be reached: try again in a minute.")
            browser.close()
        request = urllib.request.Request(
            f"{web.url}/login", data=b"username=alice&password=alice-pw", headers={"Origin": web.url}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 503
        assert json.loads(refused.value.read()) == {
            "detail": "the memory store cannot be reached: try again in a minute"
        }
        proxy.accept()
        assert post_login(web.url, "alice", "alice-pw", Origin=web.url)[0] == 200
    log = (tmp_path / f"web-{web.url.rsplit(':', 1)[1]}.log").read_text()
    assert "login as 'alice' from 127.0.0.1 refused: cannot reach Redis" in log and "Traceback" not in log
