"""Login limits on the page: a password guesser is slowed, then locked out, and the hash never runs for it.

This module has a page of its own (the ``web`` fixture is per module): its lockouts touch no other test.
"""

from __future__ import annotations

import time

import pytest

from memchat.web.logins import FREE_FAILURES, LOCKOUT_FAILURES, LOCKOUT_SECONDS, LoginLimiter
from web_page import PASSWORDS, Web, log_in, post_login, wait_for_text


def test_failed_logins_get_growing_delays_and_the_right_password_waits_too(web: Web) -> None:
    for _ in range(FREE_FAILURES):
        assert post_login(web, "alice", "not-her-password")[0] == 401
    # Refused before Chainlit sees it: the right password gets no answer but "wait", so guessing learns nothing.
    status, headers = post_login(web, "alice", PASSWORDS["alice"])
    assert (status, headers["retry-after"]) == (429, "1")
    time.sleep(1.1)
    assert post_login(web, "alice", "not-her-password")[0] == 401
    status, headers = post_login(web, "alice", PASSWORDS["alice"])
    assert (status, headers["retry-after"]) == (429, "2")  # each failure doubles the wait
    time.sleep(2.1)
    assert post_login(web, "alice", PASSWORDS["alice"])[0] == 200
    assert post_login(web, "alice", "not-her-password")[0] == 401  # a success cleared the count
    assert post_login(web, "alice", PASSWORDS["alice"])[0] == 200


def test_guessing_many_user_ids_from_one_address_is_slowed_for_that_address(web: Web) -> None:
    for n in range(FREE_FAILURES):
        assert post_login(web, f"nobody{n}", "any-password")[0] == 401
    assert post_login(web, "bob", PASSWORDS["bob"])[0] == 429
    # Another client, as a proxy on this machine reports it, is not held up by the first one's guesses.
    assert post_login(web, "bob", PASSWORDS["bob"], **{"X-Forwarded-For": "203.0.113.9"})[0] == 200
    time.sleep(1.1)
    assert post_login(web, "bob", PASSWORDS["bob"])[0] == 200


def test_twenty_failures_lock_a_user_id_for_fifteen_minutes() -> None:
    limiter = LoginLimiter()
    keys = ["user:carol", "address:198.51.100.7"]
    waits = []
    for _ in range(LOCKOUT_FAILURES):
        limiter.failed(keys)
        waits.append(limiter.wait(keys))
    assert waits[: FREE_FAILURES - 1] == [0.0] * (FREE_FAILURES - 1)
    assert 0.9 < waits[FREE_FAILURES - 1] <= 1.0 and 1.9 < waits[FREE_FAILURES] <= 2.0
    assert waits[-2] == pytest.approx(60, abs=0.5)  # the delays stop growing at a minute
    assert waits[-1] == pytest.approx(LOCKOUT_SECONDS, abs=0.5)
    assert limiter.wait(["user:someone-else", "address:198.51.100.8"]) == 0


def test_the_login_form_says_when_logins_are_held_back(browser, web: Web) -> None:  # type: ignore[no-untyped-def]
    # A client of its own, as a proxy on this machine reports it, so the other tests' address is not held up.
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.44"})
    page = context.new_page()
    try:
        for _ in range(FREE_FAILURES):
            log_in(page, web, "dave", "wrong-password-1")
            wait_for_text(page, "Wrong user id or password")
        # From now on each failure makes the next attempt wait; on a slow machine one may come after its wait.
        for _ in range(4):
            log_in(page, web, "dave", "wrong-password-1")
            page.get_by_text("No password yet?").or_(page.get_by_text("Too many failed logins")).first.wait_for()
            if page.get_by_text("Too many failed logins: wait a minute, then try again.").count():
                break
        else:
            raise AssertionError("no attempt was held back, or the form did not say so")
    finally:
        context.close()
