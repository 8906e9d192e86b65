"""The input line of the terminal: completion, keys, the toolbar, and yes-or-no questions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from memchat.commands import help_rows
from memchat.conversation import Conversation
from memchat.errors import MemchatError
from memchat.stores.protocol import Store


class CommandCompleter(Completer):
    """Tab completes slash commands, and user ids after /user."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.users: list[str] = []

    async def refresh(self) -> None:
        """Learn the user ids now, so completing never waits on the store."""
        with contextlib.suppress(MemchatError):
            self.users = [stats.user for stats in await self.store.users()]

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.startswith("/user "):
            typed = text[len("/user ") :]
            for user in self.users:
                if user.startswith(typed):
                    yield Completion(user, start_position=-len(typed))
            return
        if text.startswith("/") and " " not in text:
            for usage, help_line in help_rows().items():
                name = usage.split(" ")[0]
                if name.startswith(text.lower()):
                    yield Completion(name, start_position=-len(text), display_meta=help_line)


def bindings() -> KeyBindings:
    keys = KeyBindings()

    # Alt-Enter arrives as Escape then Enter, so Esc Enter works as well.
    @keys.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return keys


def toolbar(conv: Conversation) -> str:
    """Who is talking, to which model, and how full the last request's context budget was."""
    parts = [conv.user, conv.model]
    if conv.last is not None and conv.last.budget:
        share = 100 * conv.last.history_tokens / conv.last.budget
        parts.append(f"context {share:.0f}% of {conv.last.budget:,} tokens")
    parts.append("/help · Alt-Enter new line")
    return " " + " · ".join(parts)


async def yes_or_no(question: str) -> bool:
    """Ask in the terminal; anything but y or yes is no, as is Ctrl-C or Ctrl-D."""
    try:
        answer = await PromptSession[str]().prompt_async(f"{question} [y/N] ")
    except (KeyboardInterrupt, EOFError):
        return False
    return answer.strip().lower() in ("y", "yes")


async def tool_answer(question: str) -> str:
    """Ask whether a tool may run: y, always, or (anything else, Ctrl-C, Ctrl-D) no."""
    try:
        answer = await PromptSession[str]().prompt_async(f"{question} [y/N/always] ")
    except (KeyboardInterrupt, EOFError):
        return "no"
    answer = answer.strip().lower()
    return "always" if answer in ("a", "always") else "yes" if answer in ("y", "yes") else "no"
