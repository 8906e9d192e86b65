"""What real OpenAI-compatible servers do that OpenAI does not, taught to the test server and met by memchat.

Seen with llama.cpp (llama-cpp-python and the native llama-server) serving a
small model: an empty stream instead of an error when the history outgrows the
context, llama-server's own overflow error, a model that never stops, usage
reported in streams only when asked, placeholder keys, a URL without /v1.

With ``MEMCHAT_TEST_SERVER_URL`` set (see docs/local-servers.md), the last test talks to a
real server as well.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI, Recorded, is_summary_request
from fake_openai import conversation as pairs_of
from memchat.model.errors import EmptyReplyError
from memchat.stores.sqlite import SQLiteStore
from memchat.turn import TurnRunner
from support import Memchat, assert_alternates


def chats(server: FakeOpenAI) -> list[Recorded]:
    return [r for r in server.requests if not is_summary_request(pairs_of(r.body))]


def test_an_empty_reply_is_a_failed_turn_that_stores_nothing(memchat: Memchat) -> None:
    run = memchat("--user", "alice", input="hello\nnothing comes back [[empty]]\nagain\n")
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "sent an empty reply" in errors[0] and "MEMCHAT_CONTEXT_TOKENS" in errors[0]
    assert_alternates(memchat.stored("alice"))
    assert [text for _, text in memchat.stored("alice")] == ["hello", "You said: hello", "again", "You said: again"]


def test_an_empty_stream_is_a_failed_turn_too(tmp_path: Path, server: FakeOpenAI) -> None:
    from config import load_settings

    settings = load_settings(env={"OPENAI_BASE_URL": server.url, "HOME": str(tmp_path)})
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    runner = TurnRunner(settings)
    shown: list[str] = []
    with pytest.raises(EmptyReplyError):
        asyncio.run(runner.run(memory, "hi [[empty]]", shown.append))
    assert asyncio.run(memory.get_items()) == []
    assert shown == []


@pytest.mark.parametrize("style", ["llama-server", "openai"])
def test_a_server_with_a_smaller_context_gets_a_fitted_budget_said_once_and_the_turn_retried(
    memchat: Memchat, server: FakeOpenAI, style: str
) -> None:
    server.context_size, server.overflow = 600, style
    lines = [f"turn {n}: here is a long enough line to fill a small context quickly, number {n}" for n in range(40)]
    run = memchat("--user", "alice", input="\n".join([*lines, "what's my name?"]) + "\n", timeout=120)
    assert run.returncode == 0, run.stderr
    notices = [line for line in run.stderr.splitlines() if "tokens of context" in line]
    assert len(notices) == 1
    assert "holds 600 tokens" in notices[0] and "at most 300 tokens" in notices[0]
    assert run.stdout.count("You said: turn") == 40
    assert_alternates(memchat.stored("alice"))
    assert len(memchat.stored("alice")) == 82
    assert any(is_summary_request(pairs_of(r.body)) for r in server.requests)  # older turns are folded from then on


def test_replies_and_summaries_are_capped_so_a_model_that_never_stops_does(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    run = memchat("--user", "alice", input="sing [[endless]]\n", MEMCHAT_MAX_TOKENS="50")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["la"] * 50
    assert chats(server)[-1].body["max_tokens"] == 50
    long = [f"line {n} " + "words " * 40 for n in range(12)]
    memchat("--user", "bob", "--context-tokens", "400", input="\n".join(long) + "\n")
    summaries = [r for r in server.requests if is_summary_request(pairs_of(r.body))]
    assert summaries
    assert all(r.body["max_tokens"] == 200 for r in summaries)  # twice the summary's share of a 400 budget


def test_streams_ask_for_usage_and_calibrate_the_budget(tmp_path: Path, server: FakeOpenAI) -> None:
    from config import load_settings

    settings = load_settings(env={"OPENAI_BASE_URL": server.url, "HOME": str(tmp_path)})
    memory = SQLiteStore(tmp_path / "m.db").memory("alice")
    runner = TurnRunner(settings)
    before = runner.estimator.chars_per_token
    asyncio.run(runner.run(memory, "hello there, " * 50, lambda piece: None))
    assert server.requests[-1].body["stream"] is True
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    assert runner.estimator.chars_per_token != before


def test_a_server_that_refuses_stream_options_is_asked_without_them_once(tmp_path: Path) -> None:
    from config import load_settings

    with FakeOpenAI(no_stream_options=True) as server:
        settings = load_settings(env={"OPENAI_BASE_URL": server.url, "HOME": str(tmp_path)})
        memory = SQLiteStore(tmp_path / "m.db").memory("alice")
        runner = TurnRunner(settings)
        first = asyncio.run(runner.run(memory, "one", lambda piece: None))
        second = asyncio.run(runner.run(memory, "two", lambda piece: None))
    assert first.reply == "You said: one" and len(first.notices) == 1
    assert second.reply == "You said: two" and second.notices == ()


def test_a_short_placeholder_key_is_not_masked_in_memchats_own_words(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat("--model", "local", input="hi [[status:404]]\n", OPENAI_API_KEY="local")
    assert "model 'local' was not found" in run.stderr
    assert "***" not in run.stderr


def test_a_base_url_without_v1_is_told_to_add_it(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input="hi\n", OPENAI_BASE_URL=server.url.removesuffix("/v1"))
    assert run.returncode == 1
    assert f"try OPENAI_BASE_URL={server.url}" in run.stderr


REAL_SERVER = os.environ.get("MEMCHAT_TEST_SERVER_URL")


@pytest.mark.skipif(
    not REAL_SERVER, reason="set MEMCHAT_TEST_SERVER_URL to a running llama.cpp server (see docs/local-servers.md)"
)
def test_a_real_llama_cpp_server_keeps_the_history_whole_past_its_context(memchat: Memchat) -> None:
    lines = ["My name is Sara."] + [f"Tell me one short fact about the number {n}." for n in range(30)]
    run = memchat(
        "--user",
        "sara",
        input="\n".join(lines) + "\n",
        timeout=1800,
        OPENAI_BASE_URL=str(REAL_SERVER),
        OPENAI_API_KEY="x",
        MEMCHAT_MAX_TOKENS="64",
        MEMCHAT_TIMEOUT="300",
    )
    assert "Traceback" not in run.stderr
    assert_alternates(memchat.stored("sara"))  # whatever failed, no lone user message was stored
    assert len(memchat.stored("sara")) >= 2
