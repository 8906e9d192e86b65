"""The chat page for tests: ``memchat web`` against the test server, Debian's Chromium driven by Playwright.

A pytest plugin (see ``conftest.pytest_plugins``): every test module gets the ``web``,
``browser`` and ``page`` fixtures, and imports the helpers it uses from here.
Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it).
Outside CI the browser tests are skipped with the reason when it is missing; under
CI they fail instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fake_openai import FakeOpenAI
from support import AGENT, clean_env, free_port, listening

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "sk-web-test-SECRET-777"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@dataclass
class Web:
    url: str
    db: Path
    cwd: Path
    env: dict[str, str]
    server: FakeOpenAI

    def terminal(self, user: str, text: str) -> str:
        """One piped turn in the terminal, on the same memory."""
        run = subprocess.run(
            [sys.executable, str(AGENT), "--user", user, "--db", str(self.db)],
            input=text.encode(),
            capture_output=True,
            cwd=self.cwd,
            env=self.env,
            timeout=60,
        )
        return run.stdout.decode()


def stored_items(db: Path, user: str) -> list[dict[str, object]]:
    """``user``'s stored items, read with plain sqlite3 (Playwright's loop rules out asyncio here)."""
    import json
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id", (user,))
        return [json.loads(data) for (data,) in rows.fetchall()]


def stored_count(db: Path, user: str, at_least: int) -> int:
    """How many items ``user`` has, once a reply shown on the page has also been stored."""
    deadline = time.monotonic() + 10
    while len(stored_items(db, user)) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(stored_items(db, user))


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """The CPU time the server has used so far (Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_web(cwd: Path, env: dict[str, str], *args: str) -> Iterator[Served]:
    """``memchat web`` on a free port of 127.0.0.1, with ``args`` (``--db URL``...), once it answers."""
    port = free_port()
    # A file, not a pipe: a pipe nobody reads would stall the server once its buffer filled.
    log = cwd / f"web-{port}.log"
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [sys.executable, str(AGENT), "web", "--port", str(port), *args],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        if not listening(port, proc, 60):
            raise RuntimeError(f"memchat web did not start: {log.read_text()}")
        yield Served(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; under CI the browser tests must run")
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("web")
    cwd = home / "work"
    cwd.mkdir()
    with FakeOpenAI(word_delay=0.05) as server:
        env = clean_env(home, OPENAI_BASE_URL=server.url, OPENAI_API_KEY=KEY)
        # The test MCP server, one tool of it trusted: on the page only trusted tools run.
        mcp = home / "config" / "memchat" / "mcp.json"
        mcp.parent.mkdir(parents=True)
        server_file = str(Path(__file__).with_name("mcp_server.py"))
        mcp.write_text(
            json.dumps(
                {"mcpServers": {"numbers": {"command": sys.executable, "args": [server_file], "trusted": ["add"]}}}
            )
        )
        db = cwd / "conversion.db"
        for user, password in PASSWORDS.items():
            subprocess.run(
                [sys.executable, str(AGENT), "passwd", user], input=password.encode(), cwd=cwd, env=env, check=True
            )
        with running_web(cwd, env) as served:
            yield Web(served.url, db, cwd, env, server)


@pytest.fixture(scope="module")
def browser(web: Web) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context()  # a fresh browser profile: no cookies from other tests
    yield context.new_page()
    context.close()


def log_in(page, web: Web, user: str, password: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page.goto(web.url)
    page.get_by_label("User id").fill(user)
    page.get_by_label("Password").fill(password if password is not None else PASSWORDS[user])
    page.get_by_role("button", name="Log in").click()


def chat_ready(page) -> None:  # type: ignore[no-untyped-def]
    """Logged in, and the chat session is up: the commands it sends at start are shown."""
    page.get_by_role("button", name="undo").wait_for(timeout=20_000)


def open_chat(page, web: Web, user: str) -> None:  # type: ignore[no-untyped-def]
    """Log in as ``user`` and wait for the chat to be ready."""
    log_in(page, web, user)
    chat_ready(page)


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    """Type and send, once the page takes a message: while the last reply's task still runs, Enter does nothing."""
    from playwright.sync_api import expect

    page.locator("#chat-input").fill(text)
    expect(page.locator("#chat-submit")).to_be_enabled(timeout=20_000)
    page.locator("#chat-submit").click()


def say_and_store(page, web: Web, user: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Send ``text`` as ``user`` and wait until its reply is on the page and the exchange is stored."""
    initial = len(stored_items(web.db, user))
    send(page, text)
    wait_for_text(page, f"You said: {text}")
    stored_count(web.db, user, at_least=initial + 2)


def run_command(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Pick a command from the composer's buttons and send it."""
    page.get_by_role("button", name=name).click()
    page.locator("#chat-submit").click()


def wait_for_text(page, text: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    page.get_by_text(text, exact=False).last.wait_for(timeout=timeout * 1000)


def post_login(web: Web | str, user: str, password: str, **headers: str) -> tuple[int, dict[str, str]]:
    url = web if isinstance(web, str) else web.url
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(f"{url}/login", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, {name.lower(): value for name, value in answer.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {name.lower(): value for name, value in exc.headers.items()}


def status_with(url: str, cookie: str, path: str = "/user", method: str = "GET") -> int:
    """The status the page at ``url`` answers ``path`` with, for a browser holding ``cookie``."""
    request = urllib.request.Request(url + path, headers={"Cookie": cookie, "Origin": url}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def give_passwords(db: str, users: list[str], password: str) -> None:
    """Let ``users`` log in to the store ``db`` with ``password``, as ``memchat passwd`` would (one hash: quicker)."""
    from memchat.stores import open_store
    from memchat.web.passwords import hash_password

    store = await open_store(db)
    hashed = hash_password(password)
    try:
        for user in users:
            await store.set_password_hash(user, hashed)
    finally:
        await store.close()


async def page_socket(url: str, cookie: str) -> Any:
    """A socket.io client of the page at ``url``, logged in with ``cookie``, as the page's own script connects."""
    import socketio

    client = socketio.AsyncClient()
    try:
        await client.connect(
            url,
            socketio_path="/ws/socket.io",
            headers={"Cookie": cookie, "Origin": url},
            auth={"sessionId": str(uuid.uuid4()), "clientType": "webapp"},
            transports=["websocket"],
            wait_timeout=10,
        )
    except BaseException:
        # A refused connection leaves the client's HTTP session open ("Unclosed client session" at exit).
        await client.eio.disconnect()
        raise
    return client


def login_cookie(url: str, user: str, password: str) -> str:
    """The cookie of a new login of ``user`` on the page at ``url``."""
    status, headers = post_login(url, user, password, Origin=url)
    if status != 200:
        raise RuntimeError(f"logging in as {user} on {url} answered {status}")
    return headers["set-cookie"].split(";", 1)[0]


@dataclass
class Said:
    """One turn as a page saw it."""

    reply: str
    # Seconds from sending to the first piece of the reply, and to the end of the turn.
    first_token: float
    took: float
    notes: list[str]


class PageClient:
    """A logged-in page over its socket, talking as the page's own script does: ``say`` is one turn."""

    EVENTS = ("set_commands", "stream_start", "stream_token", "new_message", "task_end")

    def __init__(self, url: str, cookie: str, user: str) -> None:
        self.url, self.cookie, self.user = url, cookie, user
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.client: Any = None

    async def open(self, timeout: float = 60) -> None:
        """Connect, and wait until the chat has started: it sends the page its commands, shows the history, ends."""
        self.client = await page_socket(self.url, self.cookie)
        for event in self.EVENTS:
            self.client.on(event, self._recorder(event))
        await self.client.emit("connection_successful")
        deadline = time.monotonic() + timeout
        await self._until({"set_commands"}, deadline)
        await self._until({"task_end"}, deadline)

    def _recorder(self, event: str) -> Any:
        async def record(data: Any = None) -> None:
            self.events.put_nowait((event, data))

        return record

    async def _until(self, wanted: set[str], deadline: float) -> tuple[str, Any]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.user}: no {'/'.join(sorted(wanted))} from {self.url} in time")
            event, data = await asyncio.wait_for(self.events.get(), left)
            if event in wanted:
                return event, data

    async def say(self, text: str, timeout: float = 120) -> Said:
        while not self.events.empty():
            self.events.get_nowait()
        message = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "type": "user_message",
            "name": self.user,
            "output": text,
            "createdAt": "2026-11-22T00:00:00Z",
        }
        start = time.monotonic()
        deadline = start + timeout
        await self.client.emit("client_message", {"message": message, "fileReferences": None})
        pieces: list[str] = []
        notes: list[str] = []
        first = 0.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.user}: the turn {text!r} did not end in {timeout} s")
            event, data = await asyncio.wait_for(self.events.get(), left)
            if event in ("stream_start", "stream_token"):
                # The reply's first piece opens its stream; the rest follow as tokens.
                first = first or time.monotonic() - start
                pieces.append(str(data["output"] if event == "stream_start" else data["token"]))
            elif event == "new_message":
                notes.append(str(data.get("output", "")))
            elif event == "task_end":
                return Said("".join(pieces), first, time.monotonic() - start, notes)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to the end in a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()
