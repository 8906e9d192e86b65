"""Each store's layout, as named migrations applied in order.

A file or database records the migrations it has in ``memchat_migrations`` (number and
name) and gets the rest, in order, on its next start, under the write lock, so many
processes can start at once. A new migration goes at the end of its backend's list;
one never changes once released.
"""

from typing import NamedTuple


class Migration(NamedTuple):
    """One step of a layout: what it adds, for people, and the statements that add it."""

    name: str
    statements: tuple[str, ...]
