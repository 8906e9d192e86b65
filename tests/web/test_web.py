"""The chat page in a real browser: Debian's Chromium driven by Playwright, against ``memchat web``."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

from memchat.items import describe
from support import AGENT
from web_page import (
    KEY,
    PASSWORDS,
    Web,
    chat_ready,
    log_in,
    open_chat,
    run_command,
    say_and_store,
    send,
    stored_count,
    stored_items,
    wait_for_text,
)


def test_a_wrong_password_or_a_user_without_one_is_refused_with_how_to_get_one(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    for user, password in (("alice", "not-her-password"), ("mallory", "any-password-at-all")):
        log_in(page, web, user, password)
        wait_for_text(page, "Wrong user id or password")
        assert "memchat passwd YOUR_ID" in page.inner_text("body")
        assert "credentialssignin" not in page.inner_text("body")
        assert page.locator("#chat-input").count() == 0
        assert page.get_by_role("button", name="Log in").is_visible()


def test_the_page_is_memchats_own(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    page.goto(web.url)
    page.get_by_label("User id").wait_for(timeout=20_000)
    body = page.inner_text("body")
    assert "Log in to memchat" in body and "Email" not in body
    assert page.get_by_label("User id").get_attribute("placeholder") == "alice"
    assert page.title() == "memchat"
    for path in ("/logo?theme=dark", "/logo?theme=light", "/favicon", "/avatars/memory"):
        answer = page.request.get(web.url + path)
        assert answer.ok and b"<title>memchat</title>" in answer.body(), path
    open_chat(page, web, "alice")
    assert page.get_by_role("button", name="Commands").is_visible()
    page.get_by_role("button", name="Readme").click()
    wait_for_text(page, "What is kept")
    readme = page.inner_text("body")
    assert "Hi there" not in readme and "memchat passwd YOUR_ID" in readme
    assert "removes your last message and its reply from memory, and from the page" in readme


def test_the_pencil_says_what_it_does_and_deletes_nothing(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    say_and_store(page, web, "alice", "keep the violet kite")
    kept = stored_items(web.db, "alice")
    page.locator("#new-chat-button").click()
    dialog = page.locator("#new-chat-dialog")
    dialog.wait_for(timeout=10_000)
    assert "nothing is deleted" in dialog.inner_text()
    assert "clear your current chat history" not in dialog.inner_text()
    dialog.locator("#confirm").click()
    chat_ready(page)
    wait_for_text(page, "You said: keep the violet kite")
    assert stored_items(web.db, "alice") == kept


def test_log_in_send_and_see_the_reply_stream_in(page, web: Web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    words = "one two three four five six seven eight nine ten eleven twelve"
    # A word every 0.3 s, so a loaded machine's slow reads of the page still catch the reply half written.
    send(page, f"[[slow]] {words}")
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
    say_and_store(page, web, "alice", "remember the lighthouse")
    page.reload()
    chat_ready(page)
    wait_for_text(page, "You said: remember the lighthouse")
    assert "remember the lighthouse" in page.inner_text("body")


def test_a_fact_told_in_the_terminal_is_known_on_the_page_and_back(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    assert web.terminal("alice", "my name is Alice\n") == "You said: my name is Alice\n"
    open_chat(page, web, "alice")
    send(page, "what's my name?")
    wait_for_text(page, "Your name is Alice.")
    say_and_store(page, web, "alice", "my name is Alicia")
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
    # At once, without a reload: the page shows what the store holds.
    body = page.inner_text("body")
    assert "You said: second" not in body and "You said: first" in body
    run_command(page, "clear")
    wait_for_text(page, "Cleared the memory of")
    assert stored_items(web.db, "bob") == []
    assert "You said: first" not in page.inner_text("body")


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
    wait_for_text(page, "Stopped: nothing of this was saved")
    assert "your message and this reply are not in memory" in page.inner_text("body")
    assert "Task manually stopped" not in page.inner_text("body")
    page.wait_for_timeout(500)
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
    page.wait_for_function("() => !document.body.innerText.includes('answer 1')", timeout=10_000)
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


def test_saved_memories_are_made_by_the_model_and_corrected_on_the_page(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    send(page, 'I stopped eating meat [[tool:remember:{"fact": "is vegetarian"}]]')
    wait_for_text(page, "Tool said: Saved: is vegetarian")
    send(page, "/memories edit 1 eats fish now")
    wait_for_text(page, "Updated: eats fish now")
    assert "eats fish now" in web.terminal("alice", "/memories\n")


def test_a_file_dropped_on_the_page_goes_with_the_message_and_is_remembered(page, web: Web, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    notes = tmp_path / "trip.txt"
    notes.write_text("the ferry leaves at 7:40 from pier 3\n")
    page.locator("#upload-button-input").set_input_files(str(notes))
    wait_for_text(page, "trip.txt")
    initial = len(stored_items(web.db, "alice"))
    send(page, "when does the ferry leave?")
    wait_for_text(page, "the ferry leaves at 7:40 from pier 3")
    stored_count(web.db, "alice", at_least=initial + 2)
    speaker, text = describe(stored_items(web.db, "alice")[initial])
    assert speaker == "you"
    assert text.startswith("when does the ferry leave?\n\n[attached file trip.txt (37 bytes, text/plain)]\n")
    # Chainlit's own copy of the upload is gone once read: the store (encrypted, if set) holds what is kept.
    uploads = Path(web.env["XDG_STATE_HOME"]) / "memchat" / "web" / ".files"
    assert not [path for path in uploads.rglob("*") if path.is_file() and b"ferry" in path.read_bytes()]


def test_on_the_page_only_trusted_tools_run(page, web: Web) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "bob")
    send(page, 'add them [[tool:add:{"a": 20, "b": 22}]]')
    wait_for_text(page, "Tool said: 42")
    send(page, 'shout it [[tool:shout:{"text": "hi"}]]')
    wait_for_text(page, "has not allowed shout to run here")
    wait_for_text(page, "which is not trusted: not run")
