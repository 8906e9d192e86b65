"""History another program left broken is mended as it is sent, and kept as it was written."""

from __future__ import annotations

import itertools
import json
import sqlite3

import pytest

from fake_openai import FakeOpenAI
from memchat.context.repair import repaired
from support import Memchat

BROKEN = [
    {"role": "user", "content": "my name is Noor"},
    {"role": "assistant", "content": "Hello Noor."},
    {"role": "user", "content": "look up the weather"},
    # A plain SDK loop killed while its tool ran: the call is stored, its output never was.
    {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
    # And a message that never got its reply (the process died before the model answered).
    {"role": "user", "content": "are you there?"},
]


def written_by_another_program(memchat: Memchat) -> None:
    memchat(input="/help\n")  # the file and its tables, as a first start makes them
    with sqlite3.connect(memchat.db) as conn:
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('noor')")
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES ('noor', ?)",
            [(json.dumps(item),) for item in BROKEN],
        )


@pytest.mark.parametrize("alternating", [False, True], ids=["openai-like", "llama.cpp-like"])
def test_a_broken_history_written_by_another_program_does_not_fail_every_turn(
    memchat: Memchat, server: FakeOpenAI, alternating: bool
) -> None:
    server.alternating = alternating
    written_by_another_program(memchat)
    for _ in range(2):  # not only once: every later turn works
        run = memchat("--user", "noor", input="what's my name?\n")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "Your name is Noor.\n"
    sent = server.requests[-1].body["messages"]
    assert not any(message.get("tool_calls") for message in sent)
    roles = [message["role"] for message in sent if message["role"] != "system"]
    assert all(not (a == b == "user") for a, b in itertools.pairwise(roles))
    # The store keeps what was written; memchat's own turns follow it.
    assert memchat.stored("noor")[:5] == [
        ("you", "my name is Noor"),
        ("assistant", "Hello Noor."),
        ("you", "look up the weather"),
        ("tool", "called weather({})"),
        ("you", "are you there?"),
    ]


def test_repair_keeps_paired_tool_steps_and_joins_user_messages_in_a_row() -> None:
    paired = [
        {"role": "user", "content": "add 2 and 2"},
        {"type": "function_call", "call_id": "a", "name": "add", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "4"},
        {"type": "function_call_output", "call_id": "ghost", "output": "?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    assert repaired(paired) == [
        paired[0],
        paired[1],
        paired[2],
        paired[4],
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "first"}, {"type": "input_text", "text": "second"}],
        },
    ]
    assert repaired(BROKEN)[-1] == {"role": "user", "content": "look up the weather\n\nare you there?"}
