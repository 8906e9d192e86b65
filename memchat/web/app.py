"""The Chainlit chat page: the same memory and the same turns as the terminal, behind a password.

Started by ``memchat web`` (see ``serve``), in its process, with its settings
(``served_settings``). Who is talking comes only from the login (Chainlit's signed
session), never from a message, an id or a URL, so a session reaches only its
own user's memory. There is no Chainlit data layer: the store is the history.

Chainlit loads this file by its path, not as part of the package, so its
imports are absolute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.config import config
from chainlit.message import MessageBase
from chainlit.server import app, get_html_template, sio
from chainlit.session import WebsocketSession
from fastapi import Request, Response
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException

from config import ConfigError, check_user_id
from memchat.attachments import Attachment, attachment, text_room
from memchat.commands import (
    REGISTRY,
    Command,
    CommandError,
    CommandOutput,
    Document,
    Found,
    Help,
    Hint,
    History,
    Message,
    Note,
    Resend,
    Rows,
    SummaryText,
    help_rows,
    parse,
)
from memchat.conversation import Conversation, Runners
from memchat.errors import MemchatError
from memchat.items import describe
from memchat.model.errors import describe_failed_turn
from memchat.stores import open_store
from memchat.stores.protocol import Store, Summary
from memchat.web.accounts import accounts
from memchat.web.guard import WebGuard, inline_scripts
from memchat.web.logins import LoginLimit, SessionCheck
from memchat.web.passwords import verify_password
from memchat.web.serve import served_settings

SETTINGS = served_settings()
# Exchanges shown when the page opens.
SHOWN_TURNS = 20
# Lucide icons for the commands the page offers; undo and clear also get a button by the input.
ICONS = {
    "undo": "undo-2",
    "clear": "trash-2",
    "retry": "refresh-cw",
    "history": "history",
    "summary": "scroll-text",
    "usage": "gauge",
    "model": "cpu",
    "export": "download",
    "instructions": "user-cog",
    "memories": "brain",
    "help": "circle-help",
    "search": "search",
    "forget": "eraser",
}
BUTTONS = ("undo", "clear")

_store: Store | None = None
_runners = Runners(SETTINGS)
_opening = asyncio.Lock()


@sio.on("edit_message")  # type: ignore[untyped-decorator]  # python-socketio's decorator is untyped
async def refuse_edit(sid: str, payload: object) -> None:
    """Editing is off on the page, but Chainlit still took an edit over the socket: it reran the turn
    while the store kept the old one. Replacing its handler refuses it where it arrives."""


@sio.on("stop")  # type: ignore[untyped-decorator]
async def stop(sid: str) -> None:
    """The Stop button. Chainlit's own handler also posted "Task manually stopped."; here the stopped turn says
    instead what was kept (see ``turn``)."""
    if (session := WebsocketSession.get(sid)) and session.current_task:
        session.current_task.cancel()


async def store() -> Store:
    """The one store of this server, opened on first use inside Chainlit's event loop."""
    global _store
    async with _opening:
        if _store is None:
            _store = await open_store(
                SETTINGS.db, encryption_key=SETTINGS.encryption_key, timeout=SETTINGS.store_timeout
            )
    return _store


async def login_mark(user: str) -> str | None:
    """The mark ``user``'s logins carry while they count (see ``logins.SessionCheck``)."""
    return await accounts(await store()).web_sessions(user)


async def end_logins(user: str) -> None:
    await accounts(await store()).end_web_sessions(user)


# Chainlit answers any origin with credentials and its socket checks none: only the page's own
# origin, and those set for a proxy, get through (see ``guard``).
config.project.allow_origins[:] = SETTINGS.web_origins
# Added first, so they run inside the guard: a login refused for its origin is not counted.
app.add_middleware(
    SessionCheck,
    secret=os.environ["CHAINLIT_AUTH_SECRET"],
    current=login_mark,
    end=end_logins,
)
app.add_middleware(LoginLimit, store=store)
app.add_middleware(WebGuard, origins=SETTINGS.web_origins, inline_scripts=inline_scripts(get_html_template("")))


async def conversation() -> Conversation:
    """This browser session's conversation, as the user it logged in as."""
    conv: Conversation | None = cl.user_session.get("conversation")
    if conv is None:
        user: cl.User = cl.user_session.get("user")
        conv = Conversation(dataclasses.replace(SETTINGS, user=user.identifier), await store(), _runners)
        cl.user_session.set("conversation", conv)
    return conv


@cl.password_auth_callback
async def login(username: str, password: str) -> cl.User | None:
    """Only a user id with a password set by ``memchat passwd`` gets in."""
    try:
        user = check_user_id(username)
        stored = await accounts(await store()).password_hash(user)
    except (ConfigError, MemchatError):
        stored, user = None, ""
    # scrypt takes tens of milliseconds: off the event loop, so other sessions keep streaming.
    if await asyncio.to_thread(verify_password, password, stored):
        # The login counts while the store keeps this mark (see logins.SessionCheck).
        mark = await login_mark(user)
        return cl.User(identifier=user, metadata={"provider": "memchat", "sessions": mark or ""})
    return None


async def plain_refusal(request: Request, exc: Exception) -> Response:
    """Chainlit refuses a login with the detail "credentialssignin", which the page pops up as it is; the
    login form's own box says how to get a password (``appearance.WORDS``)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.detail == "credentialssignin":
        exc.detail = "wrong user id or password"
    return await http_exception_handler(request, exc)


app.add_exception_handler(StarletteHTTPException, plain_refusal)


@cl.on_chat_start
async def start() -> None:
    await cl.context.emitter.set_commands(
        [
            {
                "id": spec.name,
                "icon": ICONS.get(spec.name, "terminal"),
                "description": spec.help,
                "button": spec.name in BUTTONS,
                "persistent": False,
                "selected": False,
            }
            for spec in REGISTRY.values()
            if not spec.terminal_only
        ]
    )
    try:
        conv = await conversation()
        await conv.memory.check_readable()
        await conv.catch_up()
        await show_memory(conv)
    except MemchatError as exc:
        await error(str(exc))


async def show_memory(conv: Conversation) -> None:
    """The summary and the newest exchanges, as the page shows them when it opens."""
    await show_history(await conv.memory.last_turns(SHOWN_TURNS), await conv.memory.summary())


async def show_history(items: list[dict[str, object]], summary: Summary | None) -> None:
    if summary is not None:
        await note(f"What I remember from earlier: {summary.text}")
    for item in items:
        speaker, text = describe(item)
        if speaker == "you":
            await put(cl.Message(content=text, type="user_message"))
        elif text:
            await put(cl.Message(content=text))


def on_screen() -> list[MessageBase]:
    """The messages this browser session shows, so that a command that deletes exchanges can draw them again."""
    shown: list[MessageBase] | None = cl.user_session.get("on_screen")
    if shown is None:
        shown = []
        cl.user_session.set("on_screen", shown)
    return shown


def shown_alone(message: MessageBase) -> MessageBase:
    """``message``, at the top level of the page rather than under the step of the command that sent it,
    so that ``redraw`` can take the command's own message away without taking it too."""
    message.parent_id = None
    return message


async def put(message: MessageBase) -> None:
    await shown_alone(message).send()
    on_screen().append(message)


async def redraw(conv: Conversation) -> None:
    """Show what the store now holds: after /undo, /clear or /forget, and after /retry replaced an exchange."""
    for message in on_screen():
        await message.remove()
    on_screen().clear()
    await show_memory(conv)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    on_screen().append(message)
    try:
        conv = await conversation()
        line = f"/{message.command} {message.content}" if message.command else message.content
        parsed = parse(line)
        if isinstance(parsed, Hint):
            await note(parsed.text)
        elif isinstance(parsed, Command):
            await command(conv, parsed)
        elif isinstance(parsed, Message) or message.elements:
            files: list[Attachment] = []
            for element in message.elements:
                if element.path:
                    # Each file's text shares half the budget with those before it.
                    files.append(dropped(element, [*conv.attached, *files]))
            conv.attached += files
            await turn(conv, parsed.text if isinstance(parsed, Message) else "")
    except (CommandError, MemchatError) as exc:
        await error(str(exc))


def dropped(element: Any, attached: list[Attachment]) -> Attachment:
    """A file dropped on the page, as an attachment of the message it came with; one line when it cannot be one."""
    path = Path(element.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MemchatError(f"the file {element.name} could not be read ({exc.strerror}): drop it again") from None
    finally:
        # Chainlit keeps an upload until the session ends, in plain text: the message holds what is kept of it.
        path.unlink(missing_ok=True)
    return attachment(element.name, data, text_room(SETTINGS.context_tokens, attached), element.mime)


async def turn(conv: Conversation, text: str, *, replacing: bool = False) -> None:
    """One turn, streamed; stored whole by the turn runner or not at all (Stop, a closed tab, an error)."""
    reply = shown_alone(cl.Message(content=""))
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump() -> None:
        while (piece := await pieces.get()) is not None:
            await reply.stream_token(piece)

    pumping = asyncio.ensure_future(pump())
    on_screen().append(reply)
    try:
        result = await conv.turn(text, pieces.put_nowait, replacing=replacing)
    except asyncio.CancelledError:
        # The Stop button. A turn is stored whole once its reply is complete, or not at all.
        kept = "your earlier reply stays as it was" if replacing else "your message and this reply are not in memory"
        await note(f"Stopped: nothing of this was saved; {kept}.")
        raise
    except MemchatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure becomes one line in the chat
        await error(describe_failed_turn(exc, SETTINGS))
        return
    finally:
        pieces.put_nowait(None)
        await pumping
    await reply.send()
    if replacing and result.not_saved is None:
        await redraw(conv)
    for notice in result.notices:
        await note(notice)
    if result.not_saved is not None:
        await error(f"the reply above was not saved: {result.not_saved}")
        return
    # The turn is stored; a summary that fails is retried after a later turn.
    with contextlib.suppress(Exception):
        await conv.fold(result)


async def command(conv: Conversation, parsed: Command) -> None:
    spec = REGISTRY[parsed.name]
    if spec.terminal_only:
        usable = ", ".join(f"/{name}" for name, other in REGISTRY.items() if not other.terminal_only)
        await error(f"/{parsed.name} works in the terminal only; here: {usable}")
        return
    shown = await spec.handler(conv, parsed.arg)
    if spec.rewrites:
        await redraw(conv)
    await show(conv, shown)


def sentence(text: str) -> str:
    """A terminal's lower-case notice as the page writes it: a sentence, capitalised and ended."""
    return text[0].upper() + text[1:] + ("" if text.endswith((".", ")")) else ".")


async def show(conv: Conversation, shown: CommandOutput) -> None:
    """The page's way of showing what a command returned."""
    if isinstance(shown, Note):
        await note(sentence(shown.text))
    elif isinstance(shown, Rows | Help):
        rows = help_rows(web=True) if isinstance(shown, Help) else shown.rows
        tip = ["\n" + sentence(shown.tip)] if isinstance(shown, Help) and shown.tip else []
        await note("\n".join([*(f"- **{key}**: {value}" for key, value in rows.items()), *tip]))
    elif isinstance(shown, History):
        await show_history(shown.items, shown.summary)
    elif isinstance(shown, SummaryText):
        await note(
            f"What I remember from earlier: {shown.text}"
            if shown.text
            else "No summary yet: it is written once the conversation outgrows the context budget."
        )
    elif isinstance(shown, Found):
        parts = []
        for day, items in shown.exchanges:
            lines = [f"**{day or 'date unknown'}**"] + [
                f"- {speaker}: {text}" for speaker, text in map(describe, items) if text
            ]
            parts.append("\n".join(lines))
        await note("\n\n".join(parts))
    elif isinstance(shown, Document):
        # Offered for download; a path typed on the page never names a file on the server.
        file = cl.File(name=shown.name, content=shown.text.encode(), display="inline")
        await put(cl.Message(content=f"Your memory: {shown.messages} messages.", author="memory", elements=[file]))
    elif isinstance(shown, Resend):
        await turn(conv, shown.text, replacing=True)


async def note(text: str) -> None:
    await put(cl.Message(content=text, author="memory"))


async def error(text: str) -> None:
    await put(cl.ErrorMessage(content=f"error: {text}", author="memchat"))
