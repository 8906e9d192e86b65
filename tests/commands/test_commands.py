"""How a typed line is read: message, command, or leaving."""

from __future__ import annotations

import pytest

from memchat.commands import DEFAULT_HISTORY_TURNS, Blank, Command, CommandError, Leave, Message, parse


@pytest.mark.parametrize("line", ["", "   ", "\t\n"])
def test_blank_lines_are_ignored(line: str) -> None:
    assert parse(line) == Blank()


@pytest.mark.parametrize("line", ["exit", "QUIT", " Exit ", "/exit", "/quit"])
def test_exit_and_quit_in_any_case_leave(line: str) -> None:
    assert parse(line) == Leave()


def test_plain_text_is_a_message() -> None:
    assert parse("  hello there \n") == Message("hello there")


def test_a_double_slash_sends_a_line_starting_with_slash() -> None:
    assert parse("//etc/hosts is a file") == Message("/etc/hosts is a file")


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/help", Command("help")),
        ("/users", Command("users")),
        ("/clear", Command("clear")),
        ("/undo", Command("undo")),
        ("/HISTORY", Command("history", str(DEFAULT_HISTORY_TURNS))),
        ("/history 3", Command("history", "3")),
        ("/user bob", Command("user", "bob")),
        ("/user  Émile Zola ", Command("user", "Émile Zola")),
    ],
)
def test_commands_are_recognised(line: str, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("/", "unknown command"),
        ("/nope", "unknown command /nope"),
        ("/user", "needs an id"),
        ("/history two", "positive number"),
        ("/history 0", "positive number"),
        ("/clear everything", "takes no argument"),
        ("/" + "x" * 10_000, "unknown command"),
    ],
)
def test_malformed_commands_are_refused_with_the_fix(line: str, complaint: str) -> None:
    with pytest.raises(CommandError, match=complaint) as info:
        parse(line)
    assert len(str(info.value)) < 200


def test_undo_is_described_in_plain_words_tool_steps_included() -> None:
    from memchat.commands import describe_undo

    assert describe_undo(0) == "nothing to undo"
    assert describe_undo(1) == "removed your last message (it had no reply)"
    assert describe_undo(2) == "removed your last message and its reply"
    assert describe_undo(3) == "removed your last message and its reply, with 1 tool step between them"
    assert describe_undo(4) == "removed your last message and its reply, with 2 tool steps between them"
