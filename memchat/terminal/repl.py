"""The two ways to talk to memchat from a shell: a live prompt, or lines on a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from memchat.terminal.chat import Chat, Outcome, preload_model_code


async def interactive(chat: Chat) -> int:
    """Prompt with line editing, completion and saved input history until exit, quit or Ctrl-D."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    from memchat.terminal.prompt import CommandCompleter, bindings, tool_answer, toolbar, yes_or_no

    history: History
    try:
        history = FileHistory(str(_private_file(chat.settings.history_file)))
    except OSError as exc:
        chat.out.notice(f"input history is not kept: cannot write {chat.settings.history_file} ({exc.strerror})")
        history = InMemoryHistory()
    completer = CommandCompleter(chat.store)
    session: PromptSession[str] = PromptSession(
        history=history,
        completer=completer,
        complete_while_typing=False,
        key_bindings=bindings(),
        bottom_toolbar=lambda: toolbar(chat.conv),
        prompt_continuation=lambda width, line, wrapped: "." * (width - 1) + " ",
    )
    chat.ask, chat.ask_tool = yes_or_no, tool_answer

    def preload_once(_: object) -> None:
        # Load the SDK only once the prompt is on screen, so the two do not share the CPU before it.
        session.app.after_render -= preload_once
        preload_model_code()

    session.app.after_render += preload_once
    loop = asyncio.get_running_loop()
    while True:
        await completer.refresh()
        prefill, chat.prefill = chat.prefill or "", None
        try:
            line = await session.prompt_async([("ansicyan bold", chat.user), ("", "> ")], default=prefill)
        except KeyboardInterrupt:
            chat.editing = False
            continue  # Ctrl-C at the prompt clears the line, as in a shell.
        except EOFError:
            return 0
        task = asyncio.ensure_future(chat.handle(line, stream=True))
        # Ctrl-C while a reply streams stops that reply only; the turn stores nothing.
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        try:
            outcome = await task
        except asyncio.CancelledError:
            chat.out.notice("(reply stopped; nothing was saved)")
            continue
        finally:
            loop.remove_signal_handler(signal.SIGINT)
        if outcome is Outcome.LEAVE:
            return 0
        if outcome is Outcome.STOP:
            return 2


async def piped(chat: Chat, source: BinaryIO | None = None) -> int:
    """One message a line of ``source`` (stdin); 0 at end of input if every line succeeded, else 1."""
    failed = False
    for raw in source or sys.stdin.buffer:
        # Bad bytes must not end the chat: they become U+FFFD like any editor shows them.
        outcome = await chat.handle(raw.decode("utf-8", errors="replace"), stream=False)
        if outcome is Outcome.LEAVE:
            break
        if outcome is Outcome.STOP:
            return 2
        failed = failed or outcome is Outcome.FAILED
    return 1 if failed else 0


def _private_file(path: Path) -> Path:
    """Create ``path`` (and its folder) readable by its owner only, if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return path


def banner(chat: Chat, count: int) -> None:
    where = chat.settings.base_url or "OpenAI"
    chat.out.notice(
        f"memchat · {chat.user} · {count} messages remembered in {chat.store.location} · "
        f"{chat.settings.model} at {where} · /help for commands"
    )
    if chat.store.created:
        # Memory lives in the folder memchat starts from: started elsewhere, a user would silently be a stranger.
        chat.out.notice(
            f"this is a new memory: {chat.store.location} did not exist (started from another folder? "
            "pass --db or set MEMCHAT_DB to use the same file everywhere)"
        )


@contextlib.contextmanager
def typeahead_unechoed() -> Iterator[None]:
    """Keys typed while memchat is busy wait, unechoed, for the next prompt (which shows them once).

    The prompt puts the terminal back as it found it, so this holds between prompts too.
    """
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    try:
        before = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    quiet = list(before)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSANOW, before)
