"""Logins that end: after a logout, or a new password, an old login's cookie no longer reaches the memory.

Before, Chainlit's signed token kept working for its 15 days whatever happened.
This module has a page of its own (the ``web`` fixture is per module).
"""

from __future__ import annotations

import subprocess
import sys
import time

from memchat.web.logins import LOCKOUT_FAILURES
from memchat.web.passwords import login_failure_key
from support import AGENT, opened
from web_page import PASSWORDS, Web, login_cookie, page_socket, post_login, run_async, status_with


def login(web: Web, user: str, password: str | None = None) -> str:
    return login_cookie(web.url, user, password or PASSWORDS[user])


def socket_opens(web: Web, cookie: str) -> bool:
    """Whether the page's socket takes a connection with this login's cookie."""
    import socketio

    async def attempt() -> bool:
        try:
            client = await page_socket(web.url, cookie)
        except socketio.exceptions.ConnectionError:
            return False
        await client.disconnect()
        return True

    return run_async(attempt())


def test_a_logout_ends_every_login_of_that_user(web: Web) -> None:
    laptop, phone = login(web, "alice"), login(web, "alice")
    other = login(web, "bob")
    assert status_with(web.url, laptop) == status_with(web.url, phone) == 200 and socket_opens(web, phone)
    assert status_with(web.url, laptop, "/logout", "POST") == 200
    assert status_with(web.url, laptop) == 401
    assert status_with(web.url, phone) == 401  # the other device too
    assert not socket_opens(web, phone)  # nor does its socket reach the memory
    assert status_with(web.url, other) == 200  # another user's login is untouched
    assert status_with(web.url, login(web, "alice")) == 200  # and logging in again works


def passwd(web: Web, user: str, password: str) -> None:
    """``memchat passwd USER`` on the page's store, the password on a pipe."""
    subprocess.run(
        [sys.executable, str(AGENT), "passwd", user],
        input=f"{password}\n".encode(),
        cwd=web.cwd,
        env=web.env,
        check=True,
    )


def test_a_new_password_ends_the_logins_made_with_the_old_one(web: Web) -> None:
    old = login(web, "bob")
    passwd(web, "bob", "a-brand-new-password")
    assert status_with(web.url, old) == 401
    assert post_login(web, "bob", PASSWORDS["bob"], Origin=web.url)[0] == 401
    assert status_with(web.url, login(web, "bob", "a-brand-new-password")) == 200


def test_a_new_password_lifts_the_lockout_of_that_user_id(web: Web) -> None:
    async def lock_out(user: str) -> None:
        async with opened(str(web.db)) as store:
            now = time.time()
            for _ in range(LOCKOUT_FAILURES):
                await store.count_login_failure([login_failure_key("user", user)], at=now, since=now - 60)

    run_async(lock_out("carol"))
    assert post_login(web, "carol", "carols-new-password", Origin=web.url)[0] == 429
    passwd(web, "carol", "carols-new-password")
    assert post_login(web, "carol", "carols-new-password", Origin=web.url)[0] == 200
