"""Hostile and odd input never yields a traceback: it is handled, or refused with one ``error:`` line.

Property-based (Hypothesis): the piped chat is driven in-process, line by line,
against the local test server, so hundreds of inputs run in seconds; a few
cases go through the real command line as well.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import ConfigError, check_user_id, load_settings
from fake_openai import FakeOpenAI
from memchat.commands import Blank, Command, CommandError, Hint, Leave, Message, parse
from memchat.stores.sqlite import SQLiteStore
from memchat.terminal.chat import Chat
from memchat.terminal.output import Output
from memchat.terminal.repl import piped
from support import Memchat

BYSTANDER = "bystander-7f3a"
NOTICES = (
    "cleared the memory of",
    "removed your last message",
    "nothing to undo",
    "now talking as",
    "(no ",
    "not sent: type /",
    # /help's tip against a server that names its own embedding models.
    "recall goes by words alone here",
)
TRIED = {"inputs": 0, "lines": 0}

odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n", categories=None),
    max_size=300,
)
command_like = st.sampled_from(
    [
        "/",
        "/user",
        "/user ",
        "/user " + "x" * 10_000,
        "/user ../../etc/passwd",
        "/user x'); DROP TABLE agent_messages;--",
        "/user Zoë 👋 مرحبا",
        "/undo",
        "/undo now",
        "/clear",
        "/history",
        "/history -1",
        "/history 99999999999999999999",
        "/history many",
        "/summary",
        "/users",
        "/help",
        "/nonsense",
        "//not a command",
        "   /undo   ",
        "\t",
        "",
        "مرحبا بالعالم",
        "שלום \u202e reversed",
        "👩‍👩‍👧‍👦🏳️‍🌈",
        "\x1b[2J\x1b[31mred",
        "NUL\x00inside",
    ]
)
line_bytes = st.one_of(
    command_like.map(str.encode),
    odd_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200).map(lambda raw: raw.replace(b"\n", b" ")),
)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


def run_piped(server: FakeOpenAI, db: Path, data: bytes) -> tuple[int, str, str]:
    """The piped chat in this process: exit code, stdout, stderr."""
    chat_settings = load_settings(
        user="hostile",
        env={
            "OPENAI_BASE_URL": server.url,
            "OPENAI_API_KEY": "sk-test",
            "MEMCHAT_RETRIES": "0",
            "HOME": str(db.parent),
        },
    )

    async def go() -> tuple[int, str, str]:
        store = SQLiteStore(db)
        out, err = io.StringIO(), io.StringIO()
        chat = Chat(chat_settings, store, Output(out, err))
        try:
            code = await piped(chat, io.BytesIO(data))
        finally:
            await chat.close()
            await store.close()
        return code, out.getvalue(), err.getvalue()

    return asyncio.run(go())


def histories(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT session_id, message_data FROM agent_messages ORDER BY id").fetchall()
    found: dict[str, list[str]] = {}
    for user, data in rows:
        found.setdefault(user, []).append(data)
    return found


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_bytes, max_size=6), final_newline=st.booleans())
def test_random_lines_on_a_pipe_are_handled_or_refused_in_one_line(
    shared_server: FakeOpenAI, report: list[str], lines: list[bytes], final_newline: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "conversion.db"
        bystander = b"my name is Bea\n"
        run_piped(shared_server, db, b"/user " + BYSTANDER.encode() + b"\n" + bystander)
        before = histories(db)[BYSTANDER]
        data = b"\n".join(lines) + (b"\n" if final_newline else b"")
        code, out, err = run_piped(shared_server, db, data)
        TRIED["inputs"] += 1
        TRIED["lines"] += len(lines)
        # ``report`` is made once for all the examples Hypothesis tries: its one line says how many ran.
        report[:] = [
            f"hostile input (Hypothesis, piped chat): {TRIED['inputs']} inputs, {TRIED['lines']} lines, "
            "0 tracebacks, 0 other users' memories changed"
        ]
        assert code in (0, 1)
        assert "Traceback" not in err
        assert "\x1b" not in out + err  # control sequences typed by the user are shown, never obeyed
        for line in err.split("\n"):
            assert line == "" or line.startswith("error: ") or line.startswith(NOTICES), line
        after = histories(db)
        assert after[BYSTANDER] == before  # nobody else's memory changed
        for user, items in after.items():
            roles = ['"role": "user"' in item for item in items]
            assert roles == [True, False] * (len(items) // 2), user  # whole turns only


@given(st.text())
def test_the_command_parser_accepts_or_names_what_is_wrong(text: str) -> None:
    try:
        parsed = parse(text)
    except CommandError as exc:
        assert str(exc)
    else:
        assert isinstance(parsed, Message | Command | Leave | Blank | Hint)


@given(st.text(max_size=300))
def test_user_ids_are_accepted_clean_or_refused_with_a_reason(user: str) -> None:
    try:
        clean = check_user_id(user)
    except ConfigError as exc:
        assert str(exc).startswith("the user id")
    else:
        assert clean == clean.strip() and 0 < len(clean) <= 200
        assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in clean)
        clean.encode("utf-8")


def test_a_one_megabyte_line_is_answered_and_the_chat_goes_on(memchat: Memchat) -> None:
    run = memchat(input="x" * 1_000_000 + "\nhello\n")
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.splitlines()[-1] == "You said: hello"
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "user",
    ["", "   ", "x" * 201, "../../etc/passwd", "x'); DROP TABLE agent_messages;--", "Zoë 👋 مرحبا", "a\nb", "\udcff"],
)
def test_odd_user_ids_on_the_command_line_are_kept_apart_or_refused(memchat: Memchat, user: str) -> None:
    memchat("--user", "bystander", input="my name is Bea\n")
    run = memchat("--user", user, input="hello\n")
    assert "Traceback" not in run.stderr
    if run.returncode == 2:
        assert run.stderr.startswith("error: the user id") and len(run.stderr.splitlines()) == 1
    else:
        assert run.returncode == 0, run.stderr
        assert memchat.stored(user.strip()) == [("you", "hello"), ("assistant", "You said: hello")]
    assert memchat.stored("bystander") == [("you", "my name is Bea"), ("assistant", "You said: my name is Bea")]
