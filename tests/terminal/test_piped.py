"""memchat as a script sees it: lines on stdin, replies on stdout, exit codes."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from memchat.cli import SUBCOMMANDS
from support import Memchat, assert_alternates


def test_a_fact_told_today_is_remembered_after_a_restart(memchat: Memchat) -> None:
    first = memchat("--user", "sara", input="my name is Sara\n")
    assert first.returncode == 0, first.stderr
    second = memchat("--user", "sara", input="what's my name?\n")
    assert second.stdout == "Your name is Sara.\n"
    assert second.returncode == 0


def test_another_user_id_has_a_separate_memory(memchat: Memchat) -> None:
    memchat("--user", "sara", input="my name is Sara\n")
    other = memchat("--user", "tom", input="what's my name?\n")
    assert other.stdout == "I don't know your name yet.\n"


def test_memchat_user_environment_variable_picks_the_user(memchat: Memchat) -> None:
    memchat(input="my name is Ann\n", MEMCHAT_USER="ann")
    assert memchat("--user", "ann", input="what's my name?\n").stdout == "Your name is Ann.\n"
    assert memchat.stored("user1") == []


def test_clear_wipes_one_users_memory_says_so_and_chats_on(memchat: Memchat) -> None:
    memchat("--user", "sara", input="my name is Sara\n")
    memchat("--user", "tom", input="my name is Tom\n")
    run = memchat("--user", "sara", "--clear", input="what's my name?\n")
    assert run.stderr.strip() == "cleared the memory of sara"
    assert run.stdout == "I don't know your name yet.\n"
    assert memchat("--user", "tom", input="what's my name?\n").stdout == "Your name is Tom.\n"


def test_each_reply_is_printed_whole_with_no_colour_codes(memchat: Memchat) -> None:
    run = memchat(input="hello\n\n   \nsecond line\n/users\n/history\nbad /nope\n/nope\n")
    assert run.stdout.startswith("You said: hello\nYou said: second line\n")
    assert "\x1b" not in run.stdout + run.stderr


def test_blank_lines_are_not_sent(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="\n  \nhello\n\n")
    assert len(server.requests) == 1


def test_exit_code_is_0_when_every_turn_succeeds_and_1_when_any_fails(memchat: Memchat) -> None:
    assert memchat(input="a\nb\n").returncode == 0
    failed = memchat(input="a\n[[status:500]]\nb\n")
    assert failed.returncode == 1
    assert failed.stdout == "You said: a\nYou said: b\n"


def test_exit_and_quit_stop_reading(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input="one\nQUIT\ntwo\n")
    assert (run.returncode, run.stdout) == (0, "You said: one\n")
    assert memchat(input="/exit\nthree\n").stdout == ""


def test_help_command_lists_every_command(memchat: Memchat) -> None:
    out = memchat(input="/help\n").stdout
    for command in ("/help", "/user ID", "/users", "/history [N]", "/clear", "/undo", "/exit"):
        assert command in out


def test_help_says_how_to_search_by_meaning_on_a_server_that_names_its_own_models(memchat: Memchat) -> None:
    run = memchat(input="/help\n")
    assert "set MEMCHAT_EMBEDDING_MODEL to an embedding model of this server" in run.stderr
    assert "MEMCHAT_EMBEDDING_MODEL" not in memchat(input="/help\n", MEMCHAT_EMBEDDING_MODEL="off").stderr


def test_user_command_switches_memory_without_restarting(memchat: Memchat) -> None:
    run = memchat("--user", "sara", input="my name is Sara\n/user tom\nwhat's my name?\n/user sara\nwhat's my name?\n")
    assert run.stdout.splitlines()[1:] == ["I don't know your name yet.", "Your name is Sara."]
    assert "now talking as tom (0 messages remembered)" in run.stderr


def test_users_command_lists_ids_with_counts_and_last_activity(memchat: Memchat) -> None:
    memchat("--user", "sara", input="a\nb\n")
    out = memchat("--user", "tom", input="c\n/users\n").stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows[0][:3] == ["tom", "*", "2"]
    assert rows[1][:2] == ["sara", "4"]
    assert all(len(row[-2]) == 10 and row[-2].count("-") == 2 for row in rows)  # a date


def test_history_shows_who_said_what_never_json(memchat: Memchat) -> None:
    memchat(input="one\ntwo\nthree\n")
    out = memchat(input="/history 2\n").stdout
    assert out.splitlines() == [
        "you: two",
        "assistant: You said: two",
        "you: three",
        "assistant: You said: three",
    ]
    assert "{" not in memchat(input="/history\n").stdout


def test_clear_command_wipes_the_current_user(memchat: Memchat) -> None:
    memchat("--user", "sara", input="my name is Sara\n")
    run = memchat("--user", "sara", input="/clear\nwhat's my name?\n")
    assert run.stdout == "I don't know your name yet.\n"
    assert memchat.stored("sara") == [("you", "what's my name?"), ("assistant", "I don't know your name yet.")]


def test_undo_removes_the_last_exchange(memchat: Memchat) -> None:
    run = memchat(input="keep this\ndrop this\n/undo\n/undo\n/undo\n")
    assert memchat.stored("user1") == []
    assert "removed your last message and its reply" in run.stderr
    assert "nothing to undo" in run.stderr
    memchat(input="keep this\ndrop this\n/undo\n")
    assert memchat.stored("user1") == [("you", "keep this"), ("assistant", "You said: keep this")]


@pytest.mark.parametrize(
    ("line", "env", "says"),
    [
        ("[[status:429]]", {}, "rate limiting or out of quota (429)"),
        ("[[status:500]]", {}, "failed with 500"),
        ("[[status:503]]", {"MEMCHAT_RETRIES": "1"}, "failed with 503 after 1 retries"),
        ("[[context]]", {}, "too long for model"),
        ("[[status:404]]", {}, "was not found"),
        ("[[hang]]", {"MEMCHAT_TIMEOUT": "1"}, "no answer from http://127.0.0.1"),
    ],
)
def test_each_model_failure_is_one_clear_line_and_the_chat_goes_on(
    memchat: Memchat, line: str, env: dict[str, str], says: str
) -> None:
    run = memchat(input=f"before\n{line}\nafter\n", **env)
    assert run.stdout == "You said: before\nYou said: after\n"
    [error] = run.stderr.splitlines()
    assert error.startswith("error: ") and says in error, error
    assert run.returncode == 1
    assert_alternates(memchat.stored("user1"))
    assert len(memchat.stored("user1")) == 4


def test_retries_recover_from_a_transient_failure(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input="[[status:500]]\n", MEMCHAT_RETRIES="2")
    assert run.returncode == 1
    assert len(server.requests) == 3  # the first try and two retries, then one line


def test_an_unreachable_server_is_one_line(memchat: Memchat) -> None:
    run = memchat(input="hello\n", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert run.stderr.startswith("error: lost or could not open the connection to http://127.0.0.1:9/v1")
    assert len(run.stderr.splitlines()) == 1
    assert run.returncode == 1
    assert memchat.stored("user1") == []


def test_a_wrong_api_key_is_named_and_never_printed(memchat: Memchat) -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    with FakeOpenAI(api_key="sk-the-right-one") as strict:
        run = memchat(input="hello\n", OPENAI_BASE_URL=strict.url, OPENAI_API_KEY=secret)
    assert run.stderr.startswith("error: ") and "refused the API key (401): check OPENAI_API_KEY" in run.stderr
    assert secret not in run.stdout + run.stderr
    assert "SECRET" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_the_api_key_is_sent_to_the_server(memchat: Memchat) -> None:
    with FakeOpenAI(api_key="sk-right") as strict:
        run = memchat(input="hello\n", OPENAI_BASE_URL=strict.url, OPENAI_API_KEY="sk-right")
    assert run.stdout == "You said: hello\n"


def test_model_names_with_a_slash_reach_the_server_unchanged(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat("--model", "Qwen/Qwen2.5-7B-Instruct", input="hi\n")
    assert server.requests[0].body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert server.requests[0].path.endswith("/chat/completions")


def test_the_responses_api_can_be_chosen(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="my name is Rui\n", MEMCHAT_API="responses")
    run = memchat(input="what's my name?\n", MEMCHAT_API="responses")
    assert run.stdout == "Your name is Rui.\n"
    assert {r.path for r in server.requests} == {"/v1/responses"}


def test_the_history_sent_always_alternates(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="one\n[[status:500]]\n[[context]]\ntwo\nthree\n")
    for request in server.requests:
        roles = request.roles
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], roles


def test_settings_are_read_from_dotenv_in_the_current_folder(memchat: Memchat, server: FakeOpenAI) -> None:
    env = dict(memchat.env)
    env.pop("OPENAI_BASE_URL")
    (memchat.cwd / ".env").write_text(f"OPENAI_BASE_URL={server.url}\nMEMCHAT_USER=dot\n")
    before = (memchat.cwd / ".env").read_bytes()
    run = Memchat(memchat.cwd, env)(input="hello\n")
    assert run.stdout == "You said: hello\n"
    assert memchat.stored("dot")
    assert (memchat.cwd / ".env").read_bytes() == before


def test_invalid_utf8_and_control_characters_do_not_crash(memchat: Memchat) -> None:
    run = memchat(input=b"caf\xe9 \x00\x07 \xf0\x9f\x98\x80 \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("You said: caf\ufffd")
    assert_alternates(memchat.stored("user1"))


def test_the_database_file_is_private(memchat: Memchat) -> None:
    memchat(input="hello\n")
    assert stat.S_IMODE(memchat.db.stat().st_mode) == 0o600


def test_no_model_configured_says_what_to_set_and_exits_2(memchat: Memchat) -> None:
    env = {k: v for k, v in memchat.env.items() if k != "OPENAI_BASE_URL"}
    run = Memchat(memchat.cwd, env)(input="hello\n")
    assert run.returncode == 2
    assert run.stderr.startswith("error: no model configured: set OPENAI_API_KEY")
    assert len(run.stderr.splitlines()) == 1
    assert not memchat.db.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--db", "."], "is a directory"),
        (["--db", ""], "--db is empty"),
        (["--db", "missing/dir/x.db"], "does not exist"),
        (["--db", "/sys/x.db"], "cannot create /sys/x.db"),
        (["--user", ""], "user id is empty"),
        (["--user", "x" * 500], "longer than 200"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--user"], "expected one argument"),
    ],
)
def test_setup_problems_are_one_line_and_exit_2(memchat: Memchat, args: list[str], says: str) -> None:
    run = memchat(*args, input="hello\n")
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert run.stdout == ""


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(memchat: Memchat) -> None:
    notes = memchat.cwd / "notes.txt"
    notes.write_text("not a database\n" * 50)
    before = notes.read_bytes()
    run = memchat("--db", "notes.txt", input="hello\n")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "not a SQLite database" in run.stderr
    assert notes.read_bytes() == before


def test_db_flag_and_environment_choose_the_file(memchat: Memchat) -> None:
    memchat("--db", "flag.db", input="hello\n")
    memchat(input="hello\n", MEMCHAT_DB="env.db")
    for name in ("flag.db", "env.db"):
        with sqlite3.connect(memchat.cwd / name) as conn:
            assert conn.execute("SELECT COUNT(*) FROM agent_messages").fetchone() == (2,)
    assert not memchat.db.exists()


def test_help_lists_options_and_environment_variables(memchat: Memchat) -> None:
    run = memchat("--help")
    assert run.returncode == 0
    for word in (
        "--user ID",
        "--db PATH",
        "--clear",
        "--model NAME",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_DEFAULT_MODEL",
        "MEMCHAT_USER",
        "MEMCHAT_DB",
        "MEMCHAT_API",
        "exit codes",
    ):
        assert word in run.stdout, word


def test_help_lists_the_subcommands_before_the_options(memchat: Memchat) -> None:
    out = memchat("--help").stdout
    assert out.index("memchat copy --from") < out.index("options:")
    assert out.index("memchat web") < out.index("--user ID  ")


def test_every_subcommand_is_in_the_help_and_answers_its_own_help(memchat: Memchat) -> None:
    out = memchat("--help").stdout
    for name, spec in SUBCOMMANDS.items():
        assert f"memchat {name} {spec.usage}" in out
        run = memchat(name, "--help")
        assert run.returncode == 0 and run.stdout.startswith(f"usage: memchat {name} "), run.stderr
        assert spec.description.split(".")[0] in " ".join(run.stdout.split())


@pytest.mark.parametrize("word", ["clear", "Clear", "undo", "help"])
def test_a_command_word_typed_alone_is_asked_about_not_sent(memchat: Memchat, server: FakeOpenAI, word: str) -> None:
    run = memchat(input=f"hello\n{word}\n")
    assert run.returncode == 0
    assert run.stdout == "You said: hello\n"
    assert f"not sent: type /{word.lower()}" in run.stderr
    assert len(server.requests) == 1
    assert [text for _, text in memchat.stored("user1")] == ["hello", "You said: hello"]


def test_undo_says_what_it_removed_in_plain_words(memchat: Memchat) -> None:
    run = memchat(input="hello\n/undo\n/undo\n")
    assert run.stderr.splitlines() == ["removed your last message and its reply", "nothing to undo"]


def test_a_base_url_without_its_scheme_is_one_line_saying_so(memchat: Memchat) -> None:
    run = memchat(input="hi\n", OPENAI_BASE_URL="127.0.0.1:8080/v1")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: OPENAI_BASE_URL is '127.0.0.1:8080/v1': write it with its scheme, as in http://127.0.0.1:8080/v1"
    )


@pytest.mark.parametrize(
    ("first_line", "after"),
    [("", 1.0), ("hello\n", 4.0), ("[[slow]] one two three four five six seven eight\n", 3.0), ("[[hang]] x\n", 0.0)],
    ids=["waiting-for-input", "between-lines", "mid-reply", "while-loading"],
)
def test_ctrl_c_on_a_pipe_exits_at_once_with_130_and_no_warning(
    memchat: Memchat, first_line: str, after: float
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from support import AGENT

    child = subprocess.Popen(
        [sys.executable, str(AGENT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=memchat.cwd,
        env=memchat.env,
    )
    assert child.stdin is not None
    child.stdin.write(first_line.encode())
    child.stdin.flush()
    if after:
        time.sleep(after)
    else:
        # While loading: once the SDK's import has begun (its compiled parts are mapped), on a busy machine too.
        maps = Path(f"/proc/{child.pid}/maps")
        deadline = time.monotonic() + 30
        while "pydantic_core" not in maps.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    # While loading it took 1.5 to 3 s: the turn imported openai on the main thread, out of Ctrl-C's reach.
    assert time.monotonic() - sent < (1 if first_line.startswith("[[hang]]") else 5)
    assert err.decode() == ""  # no traceback, no RuntimeWarning
    assert_alternates(memchat.stored("user1"))
