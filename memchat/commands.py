"""Parsing a typed line into a message, a slash command, or a request to leave."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HISTORY_TURNS = 20

HELP: dict[str, str] = {
    "/help": "show this list",
    "/user ID": "switch to the memory of another user id",
    "/users": "list user ids in the database, with message counts and last activity",
    "/history [N]": f"show the summary and the last N exchanges (default {DEFAULT_HISTORY_TURNS})",
    "/summary": "show what is remembered of turns too old to send in full",
    "/clear": "wipe the current user's memory and summary",
    "/undo": "remove the last exchange (your last message and its reply)",
    "/exit": "leave (also: exit, quit, Ctrl-D)",
}
EXIT_WORDS = frozenset({"exit", "quit"})


class CommandError(ValueError):
    """A malformed command; the message says how to write it."""


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

# Words people type out of habit from other tools; alone on a line they are asked about, not sent.
BARE_COMMANDS = frozenset({"clear", "undo", "help"})


def describe_undo(removed: int) -> str:
    """What /undo did, in plain words, for every front end."""
    if removed == 0:
        return "nothing to undo"
    if removed == 1:
        return "removed your last message (it had no reply)"
    steps = removed - 2
    extra = f", with {steps} tool step{'s' if steps != 1 else ''} between them" if steps > 0 else ""
    return f"removed your last message and its reply{extra}"


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
    if name in ("help", "users", "clear", "undo", "summary") and not arg:
        return Command(name)
    if name in ("help", "users", "clear", "undo", "summary"):
        raise CommandError(f"/{name} takes no argument: type /{name} alone")
    if name == "user":
        if not arg:
            raise CommandError("/user needs an id: type /user NAME")
        return Command("user", arg)
    if name == "history":
        if arg and not (arg.isdigit() and int(arg) > 0):
            raise CommandError("/history takes a positive number of exchanges: type /history 5")
        return Command("history", arg or str(DEFAULT_HISTORY_TURNS))
    shown = name if len(name) <= 30 else name[:29] + "…"
    raise CommandError(
        f"unknown command /{shown}: type /help for the list, or start with // to send a line beginning with /"
    )
