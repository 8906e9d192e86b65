"""The registry of slash commands, and how a typed line is read.

A command is a name, its argument, a help line and a handler. The handler acts
on a ``Conversation`` and returns what to show as a value (see ``CommandOutput``); the
terminal and the web page each display those values their own way and never
carry a command out themselves. A command that makes no sense on the web page
says so here (``terminal_only``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memchat.items import Item
from memchat.stores.protocol import Summary, UserStats

if TYPE_CHECKING:
    from memchat.conversation import Conversation

EXIT_WORDS = frozenset({"exit", "quit"})
# Words people type out of habit from other tools; alone on a line they are asked about, not sent.
BARE_COMMANDS = frozenset({"clear", "undo", "help"})


class CommandError(ValueError):
    """A malformed command; the message says how to write it."""


# What a typed line is.


@dataclass(frozen=True)
class Message:
    text: str


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Blank:
    pass


@dataclass(frozen=True)
class Hint:
    """A line that is probably a command typed without its slash: said back, not sent to the model."""

    text: str


Line = Message | Command | Leave | Blank | Hint


# What a command gives a front end to show.


@dataclass(frozen=True)
class Note:
    """One line for the person."""

    text: str


@dataclass(frozen=True)
class Rows:
    """A two-column list: the help, the usage figures."""

    rows: dict[str, str]


@dataclass(frozen=True)
class Help:
    """The command list, as the front end showing it offers it (see ``help_rows``), and a tip under it."""

    tip: str | None = None


@dataclass(frozen=True)
class History:
    items: list[Item]
    summary: Summary | None


@dataclass(frozen=True)
class SummaryText:
    text: str | None


@dataclass(frozen=True)
class Users:
    users: list[UserStats]
    current: str


@dataclass(frozen=True)
class Document:
    """An export: written to ``path`` if given, else shown or offered for download."""

    text: str
    name: str
    path: str | None
    messages: int


@dataclass(frozen=True)
class Found:
    """What /search found: whole exchanges with the day they were stored, best first."""

    query: str
    words: list[str]
    exchanges: list[tuple[str, list[Item]]]


@dataclass(frozen=True)
class Resend:
    """Run a turn with ``text`` in place of the last exchange (/retry)."""

    text: str


@dataclass(frozen=True)
class EditLast:
    """Put ``text`` in the input line; what is sent then replaces the last exchange (/edit)."""

    text: str


@dataclass(frozen=True)
class Clipboard:
    """Copy ``text`` to the clipboard of the person's terminal (/copy)."""

    text: str
    what: str


CommandOutput = Note | Rows | Help | History | SummaryText | Users | Found | Document | Resend | EditLast | Clipboard


class Arg(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"
    # An optional positive whole number.
    COUNT = "count"


Handler = Callable[["Conversation", str], Awaitable[CommandOutput]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    # The argument as the help shows it: "ID", "[N]", "[FILE]".
    arg_help: str
    help: str
    arg: Arg
    handler: Handler
    terminal_only: bool = False
    # Said when the argument is missing (Arg.REQUIRED) or not a count (Arg.COUNT).
    arg_error: str = ""
    default: str = ""
    # A question asked before running it, in a terminal (never on a pipe); "" when there is nothing to ask.
    confirm: Callable[[Conversation, str], Awaitable[str]] | None = None
    # It deletes stored exchanges: a front end that shows them (the page) draws them again.
    rewrites: bool = False

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.arg_help}".rstrip()


REGISTRY: dict[str, CommandSpec] = {}


def command(
    name: str,
    help: str,  # noqa: A002 - the word the help table uses
    *,
    arg: Arg = Arg.NONE,
    arg_help: str = "",
    arg_error: str = "",
    default: str = "",
    terminal_only: bool = False,
    confirm: Callable[[Conversation, str], Awaitable[str]] | None = None,
    rewrites: bool = False,
) -> Callable[[Handler], Handler]:
    """Declare a slash command; the decorated function carries it out."""

    def register(handler: Handler) -> Handler:
        REGISTRY[name] = CommandSpec(
            name, arg_help, help, arg, handler, terminal_only, arg_error, default, confirm, rewrites
        )
        return handler

    return register


def help_rows(*, web: bool = False) -> dict[str, str]:
    """Every command and its help line, for /help and --help."""
    rows = {spec.usage: spec.help for spec in REGISTRY.values() if not (web and spec.terminal_only)}
    if not web:  # a page is left by closing it
        rows["/exit"] = "leave (also: exit, quit, Ctrl-D)"
    return rows


def parse(line: str) -> Line:
    """Classify one input line. Raises CommandError for an unknown or malformed command.

    A line starting with '//' is a message that starts with '/'.
    """
    text = line.strip()
    if not text:
        return Blank()
    if text.lower() in EXIT_WORDS:
        return Leave()
    if text.lower() in BARE_COMMANDS:
        word = text.lower()
        return Hint(f"not sent: type /{word} for the command, or write a longer message to say '{text}' to the model")
    if text.startswith("//"):
        return Message(text[1:])
    if not text.startswith("/"):
        return Message(text)
    name, _, arg = text[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    if name in ("exit", "quit"):
        return Leave()
    spec = REGISTRY.get(name)
    if spec is None:
        shown = name if len(name) <= 30 else name[:29] + "…"
        raise CommandError(
            f"unknown command /{shown}: type /help for the list, or start with // to send a line beginning with /"
        )
    if spec.arg is Arg.NONE and arg:
        raise CommandError(f"/{name} takes no argument: type /{name} alone")
    if spec.arg is Arg.REQUIRED and not arg:
        raise CommandError(spec.arg_error)
    if spec.arg is Arg.COUNT and arg and not (arg.isdigit() and int(arg) > 0):
        raise CommandError(spec.arg_error)
    return Command(name, arg or spec.default)


def plural(count: int, word: str) -> str:
    """``1 turn``, ``2 turns``: a count and its word, for every line that says how many."""
    return f"{count} {word}{'' if count == 1 else 's'}"
