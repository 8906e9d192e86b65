"""``memchat web``: serve the chat page (``app``) with Chainlit, on this machine only unless told otherwise.

Chainlit reads its settings from the environment when it is imported, so
everything is decided here first: the store is checked (a bad ``--db`` is one
line and exit 2, not a page that fails later), Chainlit's own files go to
memchat's state folder instead of the current one, and the secret that signs
logins is taken from ``CHAINLIT_AUTH_SECRET`` or generated once into a file
only its owner can read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import importlib.util
import logging
import os
import secrets
import socket
from pathlib import Path

from config import Settings
from memchat.errors import MemchatError
from memchat.stores import hide_password, kind_of, open_store, sqlite_path
from memchat.terminal.output import Output
from memchat.web.appearance import dress

HOST_FIX = "pass --host an address of this machine, such as 127.0.0.1 (this machine only) or 0.0.0.0 (every network)"


_served: Settings | None = None


def served_settings() -> Settings:
    """The settings ``serve`` was started with, for the page it serves."""
    if _served is None:
        raise MemchatError("memchat/web/app.py is the page of memchat web: start it with memchat web, not on its own")
    return _served


def serve(settings: Settings, host: str, port: int, out: Output) -> int:
    """Run the page until Ctrl-C; return the exit code."""
    if importlib.util.find_spec("chainlit") is None:
        raise MemchatError(
            "memchat web needs the web extra, which is not installed: pip install 'memchat[web]' "
            "(in a checkout: .venv/bin/pip install -e '.[web]')"
        )
    asyncio.run(_check_store(settings))
    _check_port(host, port)
    root = settings.state_dir / "web"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = str(Path(sqlite_path(settings.db)).resolve()) if kind_of(settings.db) == "sqlite" else settings.db
    os.environ.update(
        CHAINLIT_APP_ROOT=str(root),
        CHAINLIT_HOST=host,
        CHAINLIT_PORT=str(port),
        CHAINLIT_AUTH_SECRET=os.environ.get("CHAINLIT_AUTH_SECRET") or auth_secret(root / "auth_secret"),
    )
    global _served
    # The page runs in this process (Chainlit loads app.py by its path) and takes these, flags included.
    _served = dataclasses.replace(settings, db=db)
    out.notice(
        f"memchat web on http://{host}:{port} · memory in {hide_password(settings.db)} · "
        "log in with a user id and the password set by memchat passwd ID · Ctrl-C stops"
    )
    # Imported only now: Chainlit reads CHAINLIT_APP_ROOT and the rest when it is first imported.
    from chainlit.cli import run_chainlit
    from chainlit.config import TRANSLATIONS_DIR, SpontaneousFileUploadFeature, config

    from memchat.attachments import IMAGE_TYPES, MAX_IMAGE_BYTES

    dress(root, Path(TRANSLATIONS_DIR))

    # Editing a sent message would rewrite a turn the store already holds.
    config.features.edit_message = False
    # Files dropped on the page go with the message, as /attach does in a terminal (see memchat.attachments).
    config.features.spontaneous_file_upload = SpontaneousFileUploadFeature(
        enabled=True,
        accept=["text/*", "application/json", *sorted(IMAGE_TYPES)],
        max_files=10,
        max_size_mb=MAX_IMAGE_BYTES // 1_000_000,
    )
    config.ui.name = "memchat"
    config.ui.description = "A chat that remembers you"
    # One line from memchat, not a log of every request.
    for name in ("chainlit", "httpx", "httpx2", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    run_chainlit(str(Path(__file__).with_name("app.py")))
    return 0


def auth_secret(path: Path) -> str:
    """The secret in ``path``, created (mode 0600) on first use.

    A file left empty (a start that met a full disk) is written again: an empty secret
    made every correct login fail with a bare 500.
    """
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if secret := path.read_text().strip():
                return secret
            path.unlink(missing_ok=True)
            continue
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise MemchatError(
                f"cannot write the login secret {path} ({exc.strerror}): free some space, or set CHAINLIT_AUTH_SECRET"
            ) from None
        return path.read_text().strip()


def _check_port(host: str, port: int) -> None:
    """Fail now, in one line, rather than after Chainlit has started and its server cannot bind."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise MemchatError(f"--host {host!r} is not an address or a known name: {HOST_FIX}") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself will
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                fix = "pass --port another port, or stop what uses it"
                if exc.errno == errno.EACCES:
                    fix = "ports below 1024 need the administrator: pass --port 1024 or above"
                raise MemchatError(f"cannot listen on {host}:{port} ({exc.strerror}): {fix}") from None
            raise MemchatError(f"cannot listen on {host}:{port} ({exc.strerror}): {HOST_FIX}") from None


async def _check_store(settings: Settings) -> None:
    store = await open_store(settings.db, encryption_key=settings.encryption_key, timeout=settings.store_timeout)
    await store.close()
