"""memchat in a real pseudo-terminal, driven as a person types."""

from __future__ import annotations

import contextlib
import signal
import time

import pexpect
import pytest

from fake_openai import FakeOpenAI
from support import Memchat, assert_alternates, assert_exits_with_0, prompt

SLOW = "[[slow]] one two three four five six seven eight nine ten"
# Text drawn on the input line, perhaps after cursor and colour sequences.
DRAWN = r"(\x1b\[[0-9;?]*[a-zA-Z])*{}"


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


def test_a_markdown_reply_is_rendered_in_a_terminal(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("[[markdown]] plan it")
    # Bold is bold, the list is numbered, the code is highlighted: no markup left showing.
    child.expect_exact("\x1b[1mthe plan\x1b[0m")
    child.expect_exact("hello from block one")
    prompt(child)
    shown = str(child.before)
    assert "**the plan**" not in shown and "```" not in shown and "| ---- |" not in shown
    assert memchat.stored("user1")[1][1].startswith("# Plan")  # stored as the model wrote it


@pytest.mark.parametrize("setting", [("--plain",), ("NO_COLOR", "1"), ("MEMCHAT_PLAIN", "1")])
def test_plain_no_color_and_memchat_plain_print_the_raw_text(spawn, setting: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    child = spawn(setting[0]) if len(setting) == 1 else spawn(**{setting[0]: setting[1]})
    child.expect(r"user1.*>")
    child.sendline("[[markdown]] plan it")
    child.expect_exact("Here is **the plan** in three steps:")
    child.expect_exact("```python")


def test_a_spinner_shows_until_the_first_word_then_the_time_the_reply_took(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    # Sent at once: the model library is still loading, and the spinner says so.
    child.sendline("[[slow]] one two")
    child.expect_exact("loading the model library (first turn only)…")
    child.expect_exact("thinking…")
    child.expect_exact("You said: one")
    child.expect(r"\(\d+\.\d s\)")
    prompt(child)


def test_tab_completes_commands_and_user_ids(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    memchat("--user", "zelda", input="hello\n")
    child = spawn()
    prompt(child)
    child.send("/his\t")
    child.expect(DRAWN.format("tory"))  # the completed word, drawn after what was typed (maybe in pieces)
    child.send("\r")
    child.expect_exact("(no stored conversation)")
    prompt(child)
    child.send("/user zel\t")
    child.expect(DRAWN.format("da"))
    child.send("\r")
    child.expect_exact("now talking as zelda (2 messages remembered)")


def test_alt_enter_adds_a_line_and_the_message_goes_as_one(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    # Alt-Enter arrives as Escape and Enter in one piece, as terminals send it.
    child.send("first line\x1b\rsecond line")
    child.expect_exact("second line")  # on the screen, not yet sent
    child.send("\r")
    child.expect_exact("You said: first line")
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert memchat.stored("user1") == [
        ("you", "first line\nsecond line"),
        ("assistant", "You said: first line\nsecond line"),
    ]


def test_pasted_lines_stay_one_message(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.send("\x1b[200~pasted one\npasted two\x1b[201~")
    child.send("\r")
    # Not the prompt: prompt_toolkit draws it again as the paste lands, before the turn has run.
    child.expect_exact("You said: pasted one")
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert memchat.stored("user1")[0] == ("you", "pasted one\npasted two")


def test_edit_puts_the_last_message_in_the_input_line_and_replaces_the_exchange(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("[[nth]] draft")
    child.expect_exact("answer 1")
    prompt(child)
    child.sendline("/edit")
    child.expect_exact("edit your last message")
    child.expect_exact("[[nth]] draft")  # already in the input line
    child.send(" v2\r")
    child.expect_exact("answer 1")  # a new message to the server: its own count
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert memchat.stored("user1") == [("you", "[[nth]] draft v2"), ("assistant", "answer 1")]


def test_copy_puts_the_reply_or_a_code_block_on_the_clipboard_with_osc_52(spawn) -> None:  # type: ignore[no-untyped-def]
    import base64

    child = spawn()
    prompt(child)
    child.sendline("[[markdown]] plan it")
    prompt(child)
    child.sendline("/copy 1")
    block = base64.b64encode(b'print("hello from block one")\n').decode()
    child.expect_exact(f"\x1b]52;c;{block}\x07")
    child.expect_exact("copied code block 1 of the last reply")
    prompt(child)
    child.sendline("/copy 3")
    child.expect_exact("the last reply has 2 code blocks")
    prompt(child)
    child.sendline("/copy")
    child.expect_exact("\x1b]52;c;" + base64.b64encode(b"# Plan").decode()[:6])


def test_clear_asks_first_in_a_terminal(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("keep me")
    prompt(child)
    child.sendline("/clear")
    child.expect_exact("wipe all 2 messages of user1, with the summary and instructions? [y/N]")
    child.sendline("n")
    child.expect_exact("/clear cancelled: nothing was changed")
    prompt(child)
    assert len(memchat.stored("user1")) == 2
    child.sendline("/clear")
    child.expect_exact("[y/N]")
    child.sendline("y")
    child.expect_exact("cleared the memory of user1")
    prompt(child)
    assert memchat.stored("user1") == []


def test_keys_typed_before_the_prompt_appears_are_not_garbled(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    # As soon as memchat runs (the terminal echoes what came before that, as for any program), and
    # before it has drawn its banner: the keys wait, unechoed, and the prompt shows them once.
    deadline = time.monotonic() + 10
    while child.getecho() and time.monotonic() < deadline:
        time.sleep(0.002)
    drawn = ""
    with contextlib.suppress(pexpect.TIMEOUT):
        drawn = child.read_nonblocking(100_000, timeout=0)
    assert "memchat ·" not in drawn  # the echo went off before the banner, not only at the prompt
    child.send("typed early\r")
    child.expect_exact("memchat · user1")
    assert "typed early" not in str(child.before)
    child.expect_exact("You said: typed early")
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert memchat.stored("user1") == [("you", "typed early"), ("assistant", "You said: typed early")]


def test_the_toolbar_shows_user_model_and_context_use(spawn) -> None:  # type: ignore[no-untyped-def]
    # A real terminal answers where its cursor is; the toolbar is drawn only then.
    child = spawn(PROMPT_TOOLKIT_NO_CPR="")
    child.expect_exact("\x1b[6n")
    child.send("\x1b[1;1R")
    child.expect_exact("user1 · gpt-5.4-mini · /help")
    child.sendline("hello")
    child.expect_exact("You said: hello")
    child.expect_exact("\x1b[6n")
    child.send("\x1b[5;1R")
    child.expect(r"user1 · gpt-5\.4-mini · context \d+% of 8,000 tokens")


def test_search_highlights_the_words_looked_for_in_a_terminal(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    prompt(child)
    child.sendline("my cat is called Miso")
    prompt(child)
    child.sendline("/search cat")
    child.expect(r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\]")
    child.expect_exact("\x1b[7mcat\x1b[0m")
    prompt(child)


def test_forget_shows_what_matches_and_asks_first(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    memchat(input="my cat is called Miso\nthe weather is mild\n")
    child = spawn()
    prompt(child)
    child.sendline("/forget cat")
    child.expect_exact("these exchanges match 'cat':")
    child.expect_exact("my cat is called Miso")
    child.expect_exact("forget these 1? [y/N]")
    child.sendline("n")
    child.expect_exact("/forget cancelled: nothing was changed")
    prompt(child)
    assert len(memchat.stored("user1")) == 4
    child.sendline("/forget cat")
    child.expect_exact("[y/N]")
    child.sendline("y")
    child.expect_exact("forgot 1 exchange matching 'cat'")
    prompt(child)
    assert len(memchat.stored("user1")) == 2


def test_a_tool_step_streams_through_to_its_answer(spawn, memchat: Memchat) -> None:  # type: ignore[no-untyped-def]
    memchat(input="my heron is called Pip\n")
    child = spawn()
    prompt(child)
    child.sendline("who is [[lookup:heron]]?")
    child.expect_exact("From memory:")
    # The fact is in the request already: the tool brings only what it lacks.
    child.expect_exact("beyond what you were given")
    prompt(child)
    child.sendeof()
    assert_exits_with_0(child)
    assert [speaker for speaker, _ in memchat.stored("user1")][2:] == ["you", "tool", "tool", "assistant"]
