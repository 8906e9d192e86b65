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
import os
import socket
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

from conftest import AGENT, clean_env
from fake_openai import FakeOpenAI

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        db = cwd / "conversion.db"
        for user, password in PASSWORDS.items():
            subprocess.run(
                [sys.executable, str(AGENT), "passwd", user], input=password.encode(), cwd=cwd, env=env, check=True
            )
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(AGENT), "web", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    output = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"memchat web did not start: {output}") from None
                time.sleep(0.2)
        yield Web(f"http://127.0.0.1:{port}", db, cwd, env, server)
        proc.terminate()
        proc.wait(timeout=10)


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


def run_command(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Pick a command from the composer's buttons and send it."""
    page.get_by_role("button", name=name).click()
    page.locator("#chat-submit").click()


def wait_for_text(page, text: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    page.get_by_text(text, exact=False).last.wait_for(timeout=timeout * 1000)


def post_login(web: Web, user: str, password: str, **headers: str) -> tuple[int, dict[str, str]]:
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(f"{web.url}/login", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, {name.lower(): value for name, value in answer.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {name.lower(): value for name, value in exc.headers.items()}


async def page_socket(web: Web, cookie: str) -> Any:
    """A socket.io client of the page, logged in with ``cookie``, as the page's own script connects."""
    import socketio

    client = socketio.AsyncClient()
    await client.connect(
        web.url,
        socketio_path="/ws/socket.io",
        headers={"Cookie": cookie, "Origin": web.url},
        auth={"sessionId": str(uuid.uuid4()), "clientType": "webapp"},
        transports=["websocket"],
        wait_timeout=10,
    )
    return client


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to the end in a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()
