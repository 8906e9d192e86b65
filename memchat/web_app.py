"""The Chainlit chat page: the same memory and the same turns as the terminal, behind a password.

Started by ``memchat web`` (see ``web``), which sets the environment this
module reads. Who is talking comes only from the login (Chainlit's signed
session), never from a message, an id or a URL, so a session reaches only its
own user's memory. There is no Chainlit data layer: the store is the history.

Chainlit loads this file by its path, not as part of the package, so its
imports are absolute.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import chainlit as cl

from config import ConfigError, check_user_id, load_settings
from memchat.commands import Command, CommandError, Hint, Message, describe_undo, parse
from memchat.errors import MemchatError
from memchat.items import describe
from memchat.memory import Memory, Store
from memchat.model_errors import describe_failed_turn
from memchat.passwords import verify_password
from memchat.stores import open_store
from memchat.turn import TurnRunner

SETTINGS = load_settings()
# Exchanges shown when the page opens.
SHOWN_TURNS = 20
COMMANDS: list[Any] = [
    {"id": "undo", "icon": "undo-2", "description": "Remove the last exchange (like /undo)", "button": True},
    {"id": "clear", "icon": "trash-2", "description": "Forget everything you said (like /clear)", "button": True},
]

_store: Store | None = None
_runner: TurnRunner | None = None
_opening = asyncio.Lock()


async def store() -> Store:
    """The one store of this server, opened on first use inside Chainlit's event loop."""
    global _store
    async with _opening:
        if _store is None:
            _store = await open_store(
                SETTINGS.db, encryption_key=SETTINGS.encryption_key, timeout=SETTINGS.store_timeout
            )
    return _store


def runner() -> TurnRunner:
    global _runner
    if _runner is None:
        _runner = TurnRunner(SETTINGS)
    return _runner


async def memory() -> Memory:
    """The memory of the user this session logged in as."""
    user: cl.User = cl.user_session.get("user")
    return (await store()).memory(user.identifier)


@cl.password_auth_callback
async def login(username: str, password: str) -> cl.User | None:
    """Only a user id with a password set by ``memchat passwd`` gets in."""
    try:
        user = check_user_id(username)
        stored = await (await store()).password_hash(user)
    except (ConfigError, MemchatError):
        stored, user = None, ""
    # scrypt takes tens of milliseconds: off the event loop, so other sessions keep streaming.
    if await asyncio.to_thread(verify_password, password, stored):
        return cl.User(identifier=user, metadata={"provider": "memchat"})
    return None


@cl.on_chat_start
async def start() -> None:
    await cl.context.emitter.set_commands(COMMANDS)
    try:
        mine = await memory()
        await mine.check_readable()
        await show_history(mine)
    except MemchatError as exc:
        await error(str(exc))


async def show_history(mine: Memory) -> None:
    summary = await mine.summary()
    if summary is not None:
        await cl.Message(content=f"What I remember from earlier: {summary.text}", author="memory").send()
    for item in await mine.last_turns(SHOWN_TURNS):
        speaker, text = describe(item)
        if speaker == "you":
            await cl.Message(content=text, type="user_message").send()
        elif text:
            await cl.Message(content=text).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    try:
        mine = await memory()
        if message.command:
            await command(mine, Command(message.command, ""))
            return
        parsed = parse(message.content)
        if isinstance(parsed, Hint):
            await cl.Message(content=parsed.text, author="memory").send()
        elif isinstance(parsed, Command):
            await command(mine, parsed)
        elif isinstance(parsed, Message):
            await turn(mine, parsed.text)
    except (CommandError, MemchatError) as exc:
        await error(str(exc))


async def turn(mine: Memory, text: str) -> None:
    """One turn, streamed; stored whole by ``TurnRunner`` or not at all (Stop, a closed tab, an error)."""
    reply = cl.Message(content="")
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump() -> None:
        while (piece := await pieces.get()) is not None:
            await reply.stream_token(piece)

    pumping = asyncio.ensure_future(pump())
    try:
        result = await runner().run(mine, text, pieces.put_nowait)
    except MemchatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure becomes one line in the chat
        await error(describe_failed_turn(exc, SETTINGS))
        return
    finally:
        pieces.put_nowait(None)
        await pumping
    await reply.send()
    for notice in result.notices:
        await cl.Message(content=notice, author="memory").send()
    if result.not_saved is not None:
        await error(f"the reply above was not saved: {result.not_saved}")
        return
    # The turn is stored; a summary that fails is retried after a later turn.
    with contextlib.suppress(Exception):
        await runner().fold_if_needed(mine)


async def command(mine: Memory, parsed: Command) -> None:
    if parsed.name == "clear":
        await mine.clear_session()
        await cl.Message(content="Memory cleared: I have forgotten everything you told me.", author="memory").send()
    elif parsed.name == "undo":
        note = describe_undo(await mine.undo())
        await cl.Message(content=note[0].upper() + note[1:] + ".", author="memory").send()
    elif parsed.name in ("history", "summary"):
        await show_history(mine)
    else:
        await error(f"/{parsed.name} works in the terminal only; here: /undo, /clear, /history")


async def error(text: str) -> None:
    await cl.ErrorMessage(content=f"error: {text}", author="memchat").send()
