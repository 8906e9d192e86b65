"""What the page lets in and what it tells the browser: origin checks and security headers.

Chainlit answers any origin with credentials, and its socket checks no
``Origin``, so another page on the same host (another port is another origin,
but the same site, so cookies go along) could read and write a logged-in user's
memory. This middleware sits in front of all of Chainlit, HTTP and WebSocket:

- a request that changes something (anything but GET, HEAD, OPTIONS) and the
  socket, over either transport, are refused unless their ``Origin`` is the
  page's own (or one listed in ``MEMCHAT_WEB_ORIGINS``, for a reverse proxy);
  a request with no ``Origin`` is not from a browser page and goes on, as its
  login still needs a password;
- every answer carries a Content-Security-Policy (scripts, styles, images and
  connections from the page itself only, so a Markdown image in a reply cannot
  carry the memory to another host; no framing), ``nosniff`` and a
  ``Referrer-Policy``;
- cookies are marked ``Secure`` when the page is served over HTTPS, or behind a
  proxy that says so with ``X-Forwarded-Proto: https``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from memchat.attachments import MAX_IMAGE_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SOCKET_PATH = "/ws/socket.io"
UPLOADS = "/project/file"
# The largest upload's body: the largest file it may carry, and room for the form around it.
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES + 100_000
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(script_hashes: Iterable[str]) -> str:
    """Everything from the page itself only: its own scripts, and the inline ones it is served with by hash.

    Chainlit's page sets inline styles (its theme); its web fonts and formula styles,
    which it would fetch from other hosts, fall back to the browser's own.
    """
    scripts = " ".join(["'self'", *(f"'{digest}'" for digest in script_hashes)])
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "font-src 'self' data:; connect-src 'self'; media-src 'self' blob:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )


def inline_scripts(html: str) -> list[str]:
    """The CSP hashes of the inline scripts in the page's HTML, so that those run and no others."""
    return [
        "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        for script in INLINE_SCRIPT.findall(html)
    ]


class WebGuard:
    """ASGI middleware: refuses cross-origin changes and sockets, adds security headers, secures cookies."""

    def __init__(self, app: App, origins: Iterable[str] = (), inline_scripts: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)
        self.headers = (
            (b"content-security-policy", content_security_policy(inline_scripts).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        origin = headers.get("origin")
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(UPLOADS):
            # Chainlit reads an upload whole into memory: one too large is refused from its headers alone.
            length = headers.get("content-length", "")
            if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
                limit = f"files on this page may be up to {MAX_IMAGE_BYTES // 1_000_000} MB"
                await self._refuse(scope, receive, send, "uploads", status=413, detail=limit)
                return
        checked = scope["type"] == "websocket" or scope["path"].startswith(SOCKET_PATH)
        checked = checked or scope.get("method", "GET") not in SAFE_METHODS
        if checked and origin is not None and not self.allows(origin, scope, headers):
            await self._refuse(scope, receive, send, origin)
            return
        secure = scope.get("scheme") in ("https", "wss") or headers.get("x-forwarded-proto", "").lower() == "https"

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, _secured(value) if secure and name.lower() == b"set-cookie" else value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in {header for header, _ in self.headers}
                ]
                message["headers"] = [*kept, *self.headers]
            await send(message)

        await self.app(scope, receive, guarded)

    def allows(self, origin: str, scope: Scope, headers: dict[str, str]) -> bool:
        """The page's own origin, as the browser addressed it, or one listed for a proxy."""
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        host = headers.get("host", "").lower()
        schemes = {"https" if scope.get("scheme") in ("https", "wss") else "http", headers.get("x-forwarded-proto", "")}
        return bool(host) and origin in {f"{scheme.lower()}://{host}" for scheme in schemes if scheme}

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, origin: str, status: int = 403, detail: str = ""
    ) -> None:
        detail = detail or f"requests from {origin} are not accepted by this page"
        await refuse(scope, receive, send, status, detail, self.headers)


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``status`` with ``{"detail": ...}``, or, to a socket, refuse its handshake (close code 4000 + status)."""
    if scope["type"] == "websocket":
        # The browser sees the socket fail, and nothing of the session.
        await receive()
        await send({"type": "websocket.close", "code": 4000 + status})
        return
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def headers_of(scope: Scope) -> dict[str, str]:
    """A request's headers by lower-case name."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _secured(cookie: bytes) -> bytes:
    return cookie if b"secure" in cookie.lower() else cookie + b"; Secure"
