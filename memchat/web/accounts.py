"""What the web page keeps about its users in the store, apart from their memories.

A store that serves ``memchat web`` keeps three things per user id beside the
conversations: the hash of the password set by ``memchat passwd``, the mark that
web logins carry while they count (a logout or a new password writes a new one),
and the counts of failed logins. ``Accounts`` is that part of a store, as a
protocol of its own, so a store that only keeps memories implements ``Store``
and ``Memory`` and nothing of this (``accounts`` then says the page cannot use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from memchat.errors import StoreError

if TYPE_CHECKING:
    from memchat.stores.protocol import Store


@dataclass(frozen=True)
class LoginFailures:
    """Failed web logins counted under one key (a hashed user id or address), and the time of the last."""

    count: int
    # Seconds since the epoch (time.time()): the web processes sharing a store share no other clock.
    last: float


@runtime_checkable
class Accounts(Protocol):
    """The web page's records of its users, in a store."""

    location: str

    async def password_hash(self, user: str) -> str | None:
        """The stored hash of ``user``'s web password (see ``passwords``), if one was set."""
        ...

    async def set_password_hash(self, user: str, password_hash: str) -> None:
        """Store or replace ``user``'s password hash, ending their web sessions; their memory is untouched."""
        ...

    async def web_sessions(self, user: str) -> str | None:
        """The mark ``user``'s web logins carry while they count (None: no password); see ``end_web_sessions``."""
        ...

    async def end_web_sessions(self, user: str) -> None:
        """End every web login of ``user`` (a logout ends them all): a new mark, so earlier logins no longer count."""
        ...

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        """The failed logins counted under each of ``keys`` whose last failure is not before ``since``."""
        ...

    async def count_login_failure(self, keys: Sequence[str], at: float, since: float) -> dict[str, LoginFailures]:
        """One more failure under each of ``keys``, at ``at``; a count whose last failure is before ``since``
        starts again, and may be dropped with every other such count. The new counts."""
        ...

    async def forget_login_failures(self, keys: Sequence[str]) -> None:
        """Drop the counts of ``keys`` (a login succeeded)."""
        ...


def accounts(store: Store) -> Accounts:
    """The web page's records in ``store``; a ``StoreError`` if this kind of store keeps none."""
    if not isinstance(store, Accounts):
        raise StoreError(
            f"{store.location} keeps no web logins: memchat web and memchat passwd need SQLite, PostgreSQL or Redis"
        )
    return store
