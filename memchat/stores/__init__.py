"""From a ``--db`` value to an open store: a file path, or a URL naming a server.

- ``conversion.db``, ``sqlite:///conversion.db``: a SQLite file (built in)
- ``postgresql://user@host/db``: PostgreSQL (the ``postgres`` extra)
- ``redis://host:port/n``: Redis (the ``redis`` extra)

The server stores are imported only when named, so the default install and the
SQLite path load neither their drivers nor SQLAlchemy.
"""

from __future__ import annotations

import importlib
import re

from config import DEFAULT_STORE_TIMEOUT
from memchat.errors import StoreError
from memchat.stores.base import hide_password as hide_password
from memchat.stores.protocol import Store

# What each kind of server needs installed, and the extra that installs it.
EXTRAS = {"postgres": ("sqlalchemy", "asyncpg"), "redis": ("redis",)}

SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "postgresql+asyncpg": "postgres",
    "redis": "redis",
    "rediss": "redis",
}

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


def kind_of(location: str) -> str:
    """``sqlite``, ``postgres`` or ``redis``: which store a ``--db`` value names."""
    match = _URL.match(location)
    if match is None:
        return "sqlite"
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise StoreError(
            f"--db {hide_password(location)}: unknown kind of database {scheme!r}: "
            "use a file path, sqlite:///PATH, postgresql://USER@HOST/DB or redis://HOST:PORT/N"
        )
    return SCHEMES[scheme]


def sqlite_path(location: str) -> str:
    """The file of a SQLite location: ``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute."""
    match = _URL.match(location)
    if match is None:
        return location
    path = match.group(2)
    if not path.startswith("/") or path == "/":
        raise StoreError(f"--db {location}: write a SQLite URL as sqlite:///PATH (three slashes), or pass the path")
    return path[1:]


async def open_store(
    location: str, *, create: bool = True, encryption_key: str | None = None, timeout: float = DEFAULT_STORE_TIMEOUT
) -> Store:
    """Open the store ``location`` names; ``create=False`` refuses a SQLite file that does not exist.

    With ``encryption_key``, items and summaries are written encrypted (see ``codec``). A
    server that does not answer within ``timeout`` seconds is an error, not a hang.
    """
    kind = kind_of(location)
    if kind == "sqlite":
        from memchat.stores.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(location), create=create, encryption_key=encryption_key)
    _require_extra(kind, location)
    if kind == "postgres":
        from memchat.stores.postgres import PostgresStore

        return await PostgresStore.open(location, encryption_key, timeout)
    from memchat.stores.redis import RedisStore

    return await RedisStore.open(location, encryption_key, timeout)


def _require_extra(kind: str, location: str) -> None:
    for module in EXTRAS[kind]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise StoreError(
                f"--db {hide_password(location)} needs the {kind} extra, which is not installed: "
                f"pip install 'memchat[{kind}]' (in a checkout: .venv/bin/pip install -e '.[{kind}]')"
            ) from None
