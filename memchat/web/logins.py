"""Who may log in to the page, and which logins still count.

**Login limits: growing delays, then a lockout, per user id and per address.**

Without them a client could guess about 5 passwords a second, for ever, and many
guessing at once slowed every real login (each guess runs scrypt). Here every
``POST /login`` is looked at before Chainlit sees it: one that comes too soon after
failures is refused with 429 and ``Retry-After``, so the password hash never runs
for it. The first ``FREE_FAILURES`` failures cost nothing; each one after doubles
the wait (1 s, 2 s, 4 s... up to ``MAX_DELAY``); at ``LOCKOUT_FAILURES`` the user id,
or the address, is locked for ``LOCKOUT_SECONDS``. A successful login clears both.
Each refusal and lockout is logged, one line each, with the user id and the address.

The counts live in the store (``Accounts.count_login_failure``), so every web process
on it counts the same failures; a count is forgotten ``FORGET_SECONDS`` after its
last failure. The store sees only hashes of the user ids and addresses. Attempts
on the same keys go one at a time in a process (``KeyLocks``), and a failure is
counted before its answer leaves, so guesses sent at once get no more tries.

**Logins that end.** Chainlit's login is a signed token good for 15 days, which a
logout or a new password did not end. Each login now carries the user's mark from
the store (``Accounts.web_sessions``); a logout, or ``memchat passwd``, writes a new
one, and every request or socket whose token carries an older mark is refused.
The mark is read from the store each time, so a logout in one web process ends
the user's sessions in every other on the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

from memchat.errors import StoreError
from memchat.stores.protocol import Store
from memchat.web.accounts import LoginFailures, accounts
from memchat.web.guard import App, Message, Receive, Scope, Send, headers_of, refuse
from memchat.web.passwords import login_failure_key

FREE_FAILURES = 5
MAX_DELAY = 60.0
LOCKOUT_FAILURES = 20
LOCKOUT_SECONDS = 15 * 60.0
# A count is forgotten this long after its last failure; a successful login forgets it at once.
FORGET_SECONDS = 24 * 3600.0
# A login form is a few hundred bytes; more is not one.
MOST_BODY = 16 * 1024
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# Where Chainlit keeps the login token (its default cookie name).
TOKEN_COOKIE = "access_token"

log = logging.getLogger("memchat.web")


def delay_after(failures: int) -> float:
    """Seconds a user id or address waits after its latest failure."""
    if failures >= LOCKOUT_FAILURES:
        return LOCKOUT_SECONDS
    if failures >= FREE_FAILURES:
        return min(MAX_DELAY, 2.0 ** (failures - FREE_FAILURES))
    return 0.0


def login_keys(user: str, address: str) -> list[str]:
    """What failures are counted under: the user id and the address."""
    return [login_failure_key("user", user), login_failure_key("address", address)]


class LoginLimiter:
    """Failed logins counted per key (a user id or an address) in the store, with the wait each imposes."""

    def __init__(self, store: Callable[[], Awaitable[Store]]) -> None:
        self._store = store

    async def wait(self, keys: list[str]) -> float:
        """Seconds before these keys may try again (0: now)."""
        now = time.time()
        found = await accounts(await self._store()).login_failures(keys, since=now - FORGET_SECONDS)
        return max([0.0, *(counted.last + delay_after(counted.count) - now for counted in found.values())])

    async def failed(self, keys: list[str]) -> LoginFailures:
        """Count a failure for each key; the count of the one that now waits longest."""
        now = time.time()
        counts = await accounts(await self._store()).count_login_failure(keys, at=now, since=now - FORGET_SECONDS)
        return max(counts.values(), key=lambda counted: counted.last + delay_after(counted.count))

    async def succeeded(self, keys: list[str]) -> None:
        await accounts(await self._store()).forget_login_failures(keys)


class KeyLocks:
    """One lock per key, held only while someone wants it: attempts on the same keys go one at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: list[str]) -> AsyncIterator[None]:
        # In one order everywhere, so two attempts that share a key never wait on each other crosswise.
        ordered = sorted(set(keys))
        for key in ordered:
            lock, wanted = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, wanted + 1)
        async with contextlib.AsyncExitStack() as held:
            try:
                for key in ordered:
                    await held.enter_async_context(self._locks[key][0])
                yield
            finally:
                for key in ordered:
                    lock, wanted = self._locks[key]
                    if wanted == 1:
                        del self._locks[key]
                    else:
                        self._locks[key] = (lock, wanted - 1)


class LoginLimit:
    """ASGI middleware: ``POST /login`` passes only when neither its user id nor its address must wait."""

    def __init__(self, app: App, store: Callable[[], Awaitable[Store]]) -> None:
        self.app = app
        self.limiter = LoginLimiter(store)
        # Guesses sent all at once would otherwise all pass the check before any failure was counted.
        # (Across processes they still can, one attempt per process at a time.)
        self.one_at_a_time = KeyLocks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        address = client_address(scope)
        keys = login_keys(user, address)
        async with self.one_at_a_time.hold(keys):
            await self._attempt(scope, receive, send, body, user, address, keys)

    async def _attempt(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, user: str, address: str, keys: list[str]
    ) -> None:
        """One login, refused without a look at the password while its user id or address must wait."""
        try:
            waiting = await self.limiter.wait(keys)
        except StoreError as exc:
            log.error("memchat web: login as %r from %s refused: %s", user, address, exc)
            await refuse(scope, receive, send, 503, "the memory store cannot be reached: try again in a minute")
            return
        if waiting > 0:
            log.warning(
                "memchat web: login as %r from %s refused: too many failures, %.0f s to wait", user, address, waiting
            )
            seconds = max(1, round(waiting))
            detail = f"too many failed logins for this user id or from this address: try again in {seconds} s"
            await refuse(scope, receive, send, 429, detail, [(b"retry-after", str(seconds).encode())])
            return

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Counted before the answer leaves: a client that has its 401 has its failure counted,
                # wherever its next attempt lands.
                try:
                    await self._count(int(message["status"]), user, address, keys)
                except StoreError as exc:
                    log.error("memchat web: the login as %r from %s was not counted: %s", user, address, exc)
            await send(message)

        await self.app(scope, replay, watch)

    async def _count(self, status: int, user: str, address: str, keys: list[str]) -> None:
        if status == 401:
            counted = await self.limiter.failed(keys)
            if counted.count >= LOCKOUT_FAILURES:
                log.warning(
                    "memchat web: login as %r from %s failed %d times: locked for %.0f minutes",
                    user,
                    address,
                    counted.count,
                    LOCKOUT_SECONDS / 60,
                )
        elif 200 <= status < 400:
            await self.limiter.succeeded(keys)


def client_address(scope: Scope) -> str:
    """The address a login came from; a proxy on this machine is believed about the client it forwards."""
    client = scope.get("client")
    address = str(client[0]) if client else "unknown"
    if address in ("127.0.0.1", "::1"):
        for name, value in scope.get("headers", []):
            if name.lower() == b"x-forwarded-for" and value.strip():
                return str(value.decode("latin-1")).split(",")[-1].strip()
    return address


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body") or len(body) > MOST_BODY:
            return body[:MOST_BODY]


class SessionCheck:
    """ASGI middleware: a request or socket whose login carries an older mark than the store's is refused."""

    def __init__(
        self,
        app: App,
        secret: str,
        current: Callable[[str], Awaitable[str | None]],
        end: Callable[[str], Awaitable[None]],
    ) -> None:
        self.app = app
        self._secret = secret
        self._current = current
        self._end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        login = self.login_of(scope) if scope["type"] in ("http", "websocket") else None
        if login is not None:
            user, mark = login
            # Logging in again, or out, with an ended login's cookie still in the browser must work.
            if await self._current(user) != mark and scope.get("path") not in (LOGIN_PATH, LOGOUT_PATH):
                detail = "this login has ended (a logout, or a new password): log in again"
                await refuse(scope, receive, send, 401, detail)
                return
            if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == LOGOUT_PATH:
                # A logout ends every login of this user, on every device, not only this browser's cookie.
                await self._end(user)
                log.warning("memchat web: %r logged out: their sessions are ended", user)
        await self.app(scope, receive, send)

    def login_of(self, scope: Scope) -> tuple[str, str] | None:
        """The user id and mark of the request's login token, if it carries a valid one."""
        import jwt
        from chainlit.auth.cookie import get_token_from_cookies

        cookies: dict[str, str] = {}
        for part in headers_of(scope).get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name.startswith(TOKEN_COOKIE):
                cookies[name] = value
        token = get_token_from_cookies(cookies)
        if not token:
            return None
        try:
            payload = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return None  # Chainlit itself refuses it
        metadata = payload.get("metadata") or {}
        return str(payload.get("identifier", "")), str(metadata.get("sessions", ""))
