"""Network faults: bounded retries where a retry is safe, then one clear line; the chat goes on, history alternates."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from fake_openai import FakeOpenAI
from support import Memchat, assert_alternates

FAULTS = {
    "[[status:500]] a": "500",
    "[[status:503]] b": "503",
    "[[busy:9]] c": "429",
    "[[context]] d": "too long",
    "[[reset]] e": "connection",
    "[[hang]] f": "no answer",
}


def test_every_fault_in_one_session_is_one_line_and_nothing_is_lost(
    memchat: Memchat, server: FakeOpenAI, report: list[str]
) -> None:
    lines = ["first", *FAULTS, "last"]
    run = memchat(input="\n".join(lines) + "\n", MEMCHAT_RETRIES="1", MEMCHAT_TIMEOUT="1")
    assert run.stdout == "You said: first\nYou said: last\n"
    errors = run.stderr.splitlines()
    assert len(errors) == len(FAULTS)
    for error, says in zip(errors, FAULTS.values(), strict=True):
        assert error.startswith("error: ") and says in error and error.endswith("(nothing was saved)"), error
    assert run.returncode == 1
    stored = memchat.stored("user1")
    assert_alternates(stored)
    assert [text for _, text in stored] == ["first", "You said: first", "last", "You said: last"]
    injected = len(server.requests) - 2
    # The context error is final; every other fault is retried once (MEMCHAT_RETRIES=1).
    assert injected == 2 * len(FAULTS) - 1
    refused = memchat(input="hello\n", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert refused.stderr.startswith("error: lost or could not open the connection") and refused.returncode == 1
    report.append(
        f"network faults: {injected + 1} injected (500, 503, 429, context too long, reset mid-reply, "
        f"no answer in 1 s, connection refused), {len(FAULTS) + 1} turns failed with one line each, "
        "0 items lost, history alternates"
    )


def test_a_busy_server_is_retried_after_its_retry_after_and_the_turn_succeeds(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    run = memchat(input="[[busy:1]] hello\n", MEMCHAT_RETRIES="2")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "You said: hello\n"
    first, second = server.requests
    assert second.at - first.at >= 0.9  # Retry-After: 1 was honoured
    assert_alternates(memchat.stored("user1"))


def test_retries_are_bounded_by_memchat_retries(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat(input="[[busy:9]] hello\nafter\n", MEMCHAT_RETRIES="2")
    assert len([r for r in server.requests if "hello" in str(r.body)]) == 3  # the try and two retries
    assert run.stderr.startswith("error: ") and "429" in run.stderr
    assert run.stdout == "You said: after\n"


def test_the_test_server_says_nothing_when_a_client_leaves_mid_reply(
    server: FakeOpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "[[slow]] " + "w " * 9}]})
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as client:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        client.sendall(head.encode() + body.encode())
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The server writes its next word into the reset connection within 0.3 s.
    time.sleep(1)
    assert "Traceback" not in capfd.readouterr().err
