"""Every slash command, declared once, and how a typed line is read.

A command is a name, its argument, a help line and a handler, declared with
``@command`` in the module of its group (``general``, ``memory``, ``session``, ``tools``);
importing this package registers them all, in the order ``/help`` lists them.
The handler acts on a ``Conversation`` and returns what to show as a value (see
``CommandOutput``); the terminal and the web page each display those values their own
way and never carry a command out themselves.
"""

from memchat.commands import general, memory, session, tools  # noqa: F401 - importing registers them
from memchat.commands.memory import DEFAULT_HISTORY_TURNS, describe_undo
from memchat.commands.registry import (
    REGISTRY,
    Blank,
    Clipboard,
    Command,
    CommandError,
    CommandOutput,
    CommandSpec,
    Document,
    EditLast,
    Found,
    Help,
    Hint,
    History,
    Leave,
    Line,
    Message,
    Note,
    Resend,
    Rows,
    SummaryText,
    Users,
    help_rows,
    parse,
    plural,
)

__all__ = [
    "DEFAULT_HISTORY_TURNS",
    "REGISTRY",
    "Blank",
    "Clipboard",
    "Command",
    "CommandError",
    "CommandOutput",
    "CommandSpec",
    "Document",
    "EditLast",
    "Found",
    "Help",
    "Hint",
    "History",
    "Leave",
    "Line",
    "Message",
    "Note",
    "Resend",
    "Rows",
    "SummaryText",
    "Users",
    "describe_undo",
    "general",
    "help_rows",
    "memory",
    "parse",
    "plural",
    "session",
]
