"""The chat page in a real browser: Debian's Chromium driven by Playwright, against ``memchat web``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it).
Outside CI the browser tests are skipped with the reason when it is missing; under
CI they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import AGENT, clean_env
from fake_openai import FakeOpenAI
from memchat.items import describe

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
    page.get_by_label("Email address").fill(user)
    page.get_by_label("Password").fill(password if password is not None else PASSWORDS[user])
    page.get_by_role("button", name="Sign In").click()


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


def test_a_wrong_password_or_a_user_without_one_is_refused(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    for user, password in (("alice", "not-her-password"), ("mallory", "any-password-at-all")):
        log_in(page, web, user, password)
        page.wait_for_timeout(1500)
        assert page.locator("#chat-input").count() == 0
        assert page.get_by_role("button", name="Sign In").is_visible()


def test_log_in_send_and_see_the_reply_stream_in(page, web: Web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    words = "one two three four five six seven eight nine ten eleven twelve"
    send(page, words)
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and f"You said: {words}" not in (seen[-1] if seen else ""):
        seen.append(page.inner_text("body"))
        page.wait_for_timeout(50)
    assert f"You said: {words}" in seen[-1]
    assert any("You said: one" in body and f"You said: {words}" not in body for body in seen), "no partial reply seen"
    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reloading_the_page_shows_the_stored_history(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    initial = len(stored_items(web.db, "alice"))
    send(page, "remember the lighthouse")
    wait_for_text(page, "You said: remember the lighthouse")
    stored_count(web.db, "alice", at_least=initial + 2)
    page.reload()
    chat_ready(page)
    wait_for_text(page, "You said: remember the lighthouse")
    assert "remember the lighthouse" in page.inner_text("body")


def test_a_fact_told_in_the_terminal_is_known_on_the_page_and_back(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    assert web.terminal("alice", "my name is Alice\n") == "You said: my name is Alice\n"
    open_chat(page, web, "alice")
    send(page, "what's my name?")
    wait_for_text(page, "Your name is Alice.")
    initial = len(stored_items(web.db, "alice"))
    send(page, "my name is Alicia")
    wait_for_text(page, "You said: my name is Alicia")
    stored_count(web.db, "alice", at_least=initial + 2)
    assert web.terminal("alice", "what's my name?\n") == "Your name is Alicia.\n"


def test_user_b_never_sees_user_as_messages(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    web.terminal("alice", "my secret is the blue door\n")
    open_chat(page, web, "bob")
    send(page, "what's my name?")
    wait_for_text(page, "I don't know your name yet.")
    page.reload()
    chat_ready(page)
    wait_for_text(page, "I don't know your name yet.")
    body = page.inner_text("body")
    assert "blue door" not in body and "Alice" not in body
    assert all("blue door" not in str(request.body) for request in web.server.requests if "bob" in str(request.body))


def test_undo_and_clear_do_what_they_do_in_the_terminal(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    web.terminal("bob", "first\n")
    open_chat(page, web, "bob")
    initial = len(stored_items(web.db, "bob"))
    send(page, "second")
    wait_for_text(page, "You said: second")
    before = stored_count(web.db, "bob", at_least=initial + 2)
    run_command(page, "undo")
    wait_for_text(page, "Removed your last message and its reply")
    assert len(stored_items(web.db, "bob")) == before - 2
    run_command(page, "clear")
    wait_for_text(page, "Cleared the memory of")
    assert stored_items(web.db, "bob") == []


def test_a_model_error_is_one_clear_message_without_the_key(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    before = stored_items(web.db, "alice")
    send(page, "boom [[status:500]]")
    wait_for_text(page, "error:")
    body = page.inner_text("body") + page.content()
    assert "nothing was saved" in body
    assert "Traceback" not in body and KEY not in body and "SECRET" not in body
    assert stored_items(web.db, "alice") == before


def test_stopping_a_reply_stores_nothing_of_it(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    before = stored_items(web.db, "alice")
    send(page, "[[slow]] a b c d e f g h i j k l m n o p")
    wait_for_text(page, "You said: a")
    page.locator("#stop-button").click()
    page.wait_for_timeout(1500)
    after = stored_items(web.db, "alice")
    assert after == before
    assert [describe(item)[0] for item in after] == ["you", "assistant"] * (len(after) // 2)


def test_the_login_secret_is_generated_once_into_a_private_file(web: Web) -> None:
    secret = Path(web.env["XDG_STATE_HOME"]) / "memchat" / "web" / "auth_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 32


def test_passwords_are_stored_as_salted_hashes(web: Web) -> None:
    import sqlite3

    with sqlite3.connect(web.db) as conn:
        hashes = dict(conn.execute("SELECT user_id, hash FROM memchat_passwords").fetchall())
    assert set(hashes) == set(PASSWORDS)
    for user, password in PASSWORDS.items():
        assert hashes[user].startswith("scrypt$") and password not in hashes[user]
    assert hashes["alice"].split("$")[4] != hashes["bob"].split("$")[4]  # each has its own salt


def test_a_port_in_use_is_one_line_and_exit_2(web: Web) -> None:
    taken = web.url.rsplit(":", 1)[1]
    run = subprocess.run(
        [sys.executable, str(AGENT), "web", "--port", taken], capture_output=True, cwd=web.cwd, env=web.env, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.decode().startswith(f"error: cannot listen on 127.0.0.1:{taken}")
    assert len(run.stderr.decode().splitlines()) == 1


def test_the_shared_commands_work_on_the_page(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "bob")
    send(page, "/instructions Always sign as Captain.")
    wait_for_text(page, "Standing instructions set")
    send(page, "[[nth]] roll the dice")
    wait_for_text(page, "answer 1")
    assert "Always sign as Captain." in json.dumps(web.server.requests[-1].body)
    send(page, "/retry")
    wait_for_text(page, "answer 2")
    deadline = time.monotonic() + 10
    while [describe(item)[1] for item in stored_items(web.db, "bob")][-2:] != ["[[nth]] roll the dice", "answer 2"]:
        assert time.monotonic() < deadline, "the retried exchange did not replace the old one"
        time.sleep(0.1)
    assert [describe(item)[1] for item in stored_items(web.db, "bob")].count("answer 1") == 0
    send(page, "/usage")
    wait_for_text(page, "last request")
    send(page, "/search dice")
    wait_for_text(page, "you: [[nth]] roll the dice")
    send(page, "/forget dice")
    wait_for_text(page, "Forgot 1 exchange matching 'dice'")
    send(page, "/export")
    wait_for_text(page, "memchat-bob.md")
    send(page, "/help")
    wait_for_text(page, "/instructions [TEXT]")
    assert "/user ID" not in page.inner_text("body")
    send(page, "/user alice")
    wait_for_text(page, "/user works in the terminal only")
    send(page, "/instructions off")
    wait_for_text(page, "Standing instructions removed")
