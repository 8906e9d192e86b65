"""memchat in a real pseudo-terminal, driven as a person types."""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Iterator

import pexpect
import pytest

from conftest import AGENT, Memchat, assert_alternates
from fake_openai import FakeOpenAI

SLOW = "[[slow]] one two three four five six seven eight nine ten"


@pytest.fixture
def spawn(memchat: Memchat) -> Iterator[object]:
    children: list[pexpect.spawn] = []

    def start(*args: str, **env: str) -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            [str(AGENT), *args],
            cwd=str(memchat.cwd),
            # The pty answers no cursor-position requests; a real terminal does.
            env={**memchat.env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **env},
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 200),
        )
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)


def assert_exits_with_0(child: pexpect.spawn) -> None:
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0


def prompt(child: pexpect.spawn, user: str = "user1") -> None:
    """Wait for the prompt: the user id in colour, then '>'."""
    child.expect(re.escape(user) + r"(\x1b\[[0-9;]*m)*>")


def test_the_banner_names_the_memory_file_and_says_when_it_is_new(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    first = spawn("--user", "sara")
    first.expect_exact(f"0 messages remembered in {memchat.db.resolve()}")
    first.expect_exact("this is a new memory")
    prompt(first, "sara")
    first.sendline("hello")
    first.expect_exact("You said: hello")
    prompt(first, "sara")
    first.sendeof()
    assert_exits_with_0(first)
    again = spawn("--user", "sara")
    again.expect_exact(f"2 messages remembered in {memchat.db.resolve()}")
    prompt(again, "sara")
    assert "new memory" not in str(again.before)


def test_the_prompt_shows_the_user_and_replies_stream_in(spawn, memchat: Memchat, server: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    child = spawn("--user", "sara")
    child.expect("0 messages remembered")
    prompt(child, "sara")
    child.sendline("my name is Sara")
    child.expect_exact("You said: my name is Sara")
    prompt(child, "sara")
    child.sendline("exit")
    assert_exits_with_0(child)
    assert server.requests[0].body["stream"] is True
    assert memchat.stored("sara") == [("you", "my name is Sara"), ("assistant", "You said: my name is Sara")]


def test_streaming_shows_words_before_the_reply_is_complete(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline(SLOW)
    child.expect_exact("You said: one")
    started = time.monotonic()
    child.expect_exact("ten")
    assert time.monotonic() - started > 1.0  # the rest arrived word by word, later
    prompt(child)


def test_ctrl_c_mid_reply_stops_it_saves_nothing_and_keeps_chatting(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("keep me")
    prompt(child)
    child.sendline(SLOW)
    child.expect_exact("You said: one")
    child.sendintr()
    child.expect_exact("(reply stopped; nothing was saved)")
    prompt(child)
    child.sendline("still here")
    child.expect_exact("You said: still here")
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert [text for _, text in memchat.stored("user1")] == [
        "keep me",
        "You said: keep me",
        "still here",
        "You said: still here",
    ]


def test_ctrl_c_at_the_prompt_does_not_quit(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.send("half typed")
    child.sendintr()
    prompt(child)
    child.sendline("quit")
    assert_exits_with_0(child)


def test_ctrl_d_leaves_with_code_0(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)


def test_input_history_is_kept_across_runs(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("remember this line")
    child.expect_exact("You said: remember this line")
    prompt(child)
    child.sendline("/users")
    child.expect_exact("last active")
    prompt(child)
    child.sendeof()
    child.expect(pexpect.EOF)

    again = spawn()
    prompt(again)
    again.send("\x1b[A\x1b[A")  # Up twice: past /users to the message before it
    again.sendline("")
    again.expect_exact("You said: remember this line")


def test_a_process_killed_mid_reply_leaves_no_lone_user_message(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("my name is Kim")
    prompt(child)
    child.sendline(SLOW)
    child.expect_exact("You said: one")
    child.kill(signal.SIGKILL)
    child.wait()
    assert memchat.stored("user1") == [("you", "my name is Kim"), ("assistant", "You said: my name is Kim")]
    assert memchat(input="what's my name?\n").stdout == "Your name is Kim.\n"


def test_a_connection_reset_mid_stream_is_one_line_and_saves_nothing(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("[[reset]] alpha beta gamma delta")
    child.expect(r"error: lost or could not open the connection to [^\r\n]+\(nothing was saved\)")
    prompt(child)
    child.sendline("after")
    child.expect_exact("You said: after")
    prompt(child)
    assert_alternates(memchat.stored("user1"))
    assert len(memchat.stored("user1")) == 2


def test_the_responses_api_streams_too(spawn, memchat: Memchat, server: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    child = spawn(MEMCHAT_API="responses")
    prompt(child)
    child.sendline("my name is Ada")
    child.expect_exact("You said: my name is Ada")
    prompt(child)
    child.sendline("what's my name?")
    child.expect_exact("Your name is Ada.")
    prompt(child)
    assert [r.path for r in server.requests] == ["/v1/responses", "/v1/responses"]
    assert all(r.body["stream"] for r in server.requests)


def test_commands_work_in_the_terminal_too(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("hello")
    prompt(child)
    child.sendline("/history")
    child.expect_exact("assistant: You said: hello")
    prompt(child)
    child.sendline("/user bob")
    child.expect_exact("now talking as bob")
    prompt(child, "bob")
    child.sendline("/nope")
    child.expect_exact("error: unknown command /nope")
    prompt(child, "bob")
