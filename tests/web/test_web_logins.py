"""Login limits on the page: a password guesser is slowed, then locked out, and the hash never runs for it.

This module has a page of its own (the ``web`` fixture is per module): its lockouts touch no other test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from memchat.errors import StoreError
from memchat.stores.protocol import Store
from memchat.web.accounts import Accounts, LoginFailures, accounts
from memchat.web.logins import (
    FORGET_SECONDS,
    FREE_FAILURES,
    LOCKOUT_FAILURES,
    LOCKOUT_SECONDS,
    KeyLocks,
    LoginLimiter,
    login_keys,
)
from support import opened
from web_page import PASSWORDS, Web, log_in, post_login, run_async, wait_for_text


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


def test_every_store_keeps_the_pages_accounts(location: str) -> None:
    async def check() -> bool:
        async with opened(location) as store:
            return isinstance(store, Accounts) and accounts(store) is store

    assert run_async(check())


def test_a_store_that_keeps_no_accounts_is_refused_with_one_line() -> None:
    class MemoriesOnly:
        location = "/tmp/elsewhere.db"

    with pytest.raises(StoreError) as refused:
        accounts(MemoriesOnly())  # type: ignore[arg-type]
    assert str(refused.value) == (
        "/tmp/elsewhere.db keeps no web logins: memchat web and memchat passwd need SQLite, PostgreSQL or Redis"
    )


def test_twenty_failures_lock_a_user_id_for_fifteen_minutes(location: str) -> None:
    async def failing() -> tuple[list[float], float]:
        async with opened(location) as store:
            limiter = LoginLimiter(lambda: just(store))
            keys = login_keys("carol", "198.51.100.7")
            waits = []
            for _ in range(LOCKOUT_FAILURES):
                await limiter.failed(keys)
                waits.append(await limiter.wait(keys))
            return waits, await limiter.wait(login_keys("someone-else", "198.51.100.8"))

    waits, others = run_async(failing())
    assert waits[: FREE_FAILURES - 1] == [0.0] * (FREE_FAILURES - 1)
    assert 0.9 < waits[FREE_FAILURES - 1] <= 1.0 and 1.9 < waits[FREE_FAILURES] <= 2.0
    assert waits[-2] == pytest.approx(60, abs=0.5)  # the delays stop growing at a minute
    assert waits[-1] == pytest.approx(LOCKOUT_SECONDS, abs=0.5)
    assert others == 0


def test_failures_counted_through_one_connection_hold_back_another(location: str) -> None:
    """As two web processes on one store: the guesses one took count on the other."""

    async def guessing() -> tuple[float, float, float]:
        async with opened(location) as first, opened(location) as second:
            keys = login_keys("dave", "198.51.100.9")
            for _ in range(FREE_FAILURES - 1):
                await LoginLimiter(lambda: just(first)).failed(keys)
            before_last = time.time()
            await LoginLimiter(lambda: just(first)).failed(keys)
            other = LoginLimiter(lambda: just(second))
            held = await other.wait(keys)
            # The wait counts down from the last failure: what a loaded machine took since is already served.
            elapsed = time.time() - before_last
            await other.succeeded(keys)
            return held, elapsed, await LoginLimiter(lambda: just(first)).wait(keys)

    held, elapsed, after_success = run_async(guessing())
    assert 1.0 - elapsed - 0.1 < held <= 1.0
    assert after_success == 0  # a success through either clears the count for both


def test_a_count_is_forgotten_a_day_after_its_last_failure(location: str) -> None:
    async def counting() -> tuple[dict[str, LoginFailures], dict[str, LoginFailures]]:
        async with opened(location) as store:
            now = time.time()
            old, recent = login_keys("erin", "198.51.100.10")
            for _ in range(LOCKOUT_FAILURES):
                await store.count_login_failure([old], at=now - FORGET_SECONDS - 60, since=now - 2 * FORGET_SECONDS)
            await store.count_login_failure([recent], at=now - 60, since=now - FORGET_SECONDS)
            seen = await store.login_failures([old, recent], since=now - FORGET_SECONDS)
            again = await store.count_login_failure([old, recent], at=now, since=now - FORGET_SECONDS)
            return seen, again

    seen, again = run_async(counting())
    assert [counted.count for counted in seen.values()] == [1]  # the old lockout is forgotten
    assert sorted(counted.count for counted in again.values()) == [1, 2]  # and counting starts again


async def just(store: Store) -> Store:
    return store


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


def test_guesses_sent_all_at_once_get_no_more_tries_than_one_after_another(web: Web) -> None:
    # A user id and a client of their own (as a proxy on this machine reports it): no other test is held up.
    client = {"X-Forwarded-For": "203.0.113.61"}
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda n: post_login(web, "frank", f"guess {n}", **client)[0], range(12)))
    assert sorted(answers) == [401] * FREE_FAILURES + [429] * (12 - FREE_FAILURES)


def test_attempts_sharing_a_key_go_one_at_a_time_and_leave_no_lock_behind() -> None:
    locks = KeyLocks()
    inside: dict[str, int] = {}
    most: dict[str, int] = {}

    async def attempt(keys: list[str]) -> None:
        async with locks.hold(keys):
            for key in keys:
                inside[key] = inside.get(key, 0) + 1
                most[key] = max(most.get(key, 0), inside[key])
            await asyncio.sleep(0.01)
            for key in keys:
                inside[key] -= 1

    async def many() -> None:
        # The same address under many user ids, as a guesser trying names, and the other way round.
        await asyncio.gather(*(attempt([f"user {n % 3}", "address a" if n % 2 else "address b"]) for n in range(30)))

    run_async(many())
    assert set(most.values()) == {1}
    assert locks._locks == {}  # an attacker trying endless user ids cannot fill the memory
