"""The one exception type a user is shown, as a single ``error:`` line."""

from __future__ import annotations


class MemchatError(Exception):
    """A failure the user can act on: the message names the cause and the fix.

    ``exit_code`` is what the process exits with when the failure ends the run
    (2 for set-up problems: configuration, user id, database).
    """

    exit_code: int = 2


class StoreError(MemchatError):
    """The store of memories cannot be used; the message says why and what to do."""


class StoreLostError(StoreError):
    """The store went away under a running memchat (its file deleted or replaced): the chat cannot go on."""


class StoreUnreachableError(StoreError):
    """The store's server could not be reached, or the connection dropped: trying again may work."""
