"""Every slash command, declared once, and how a typed line is read.

A command is a name, its argument, a help line and a handler. The handler acts
on a ``Conversation`` and returns what to show as a value (see ``Shown``); the
terminal and the web page each display those values their own way and never
carry a command out themselves. A command that makes no sense on the web page
says so here (``terminal_only``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .items import Item
from .memory import Summary, Turn, UserStats

if TYPE_CHECKING:
    from .conversation import Conversation

DEFAULT_HISTORY_TURNS = 20
# Exchanges /search shows.
SEARCH_RESULTS = 5
# Standing instructions go with every request, so they are kept short.
MAX_INSTRUCTIONS = 4000
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


Shown = Note | Rows | Help | History | SummaryText | Users | Found | Document | Resend | EditLast | Clipboard


class Arg(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"
    # An optional positive whole number.
    COUNT = "count"


Handler = Callable[["Conversation", str], Awaitable[Shown]]


@dataclass(frozen=True)
class Spec:
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


REGISTRY: dict[str, Spec] = {}


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
        REGISTRY[name] = Spec(name, arg_help, help, arg, handler, terminal_only, arg_error, default, confirm, rewrites)
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


def describe_undo(removed: int) -> str:
    """What /undo did, in plain words, for every front end."""
    if removed == 0:
        return "nothing to undo"
    if removed == 1:
        return "removed your last message (it had no reply)"
    steps = removed - 2
    extra = f", with {plural(steps, 'tool step')} between them" if steps > 0 else ""
    return f"removed your last message and its reply{extra}"


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a reply, in order, as the Markdown parser reads them."""
    from markdown_it import MarkdownIt

    return [token.content for token in MarkdownIt().parse(markdown) if token.type in ("fence", "code_block")]


# The commands.


@command("help", "show this list")
async def _help(conv: Conversation, arg: str) -> Shown:
    if conv.settings.suggest_embeddings:
        return Help(
            "recall goes by words alone here: set MEMCHAT_EMBEDDING_MODEL to an embedding model of this server "
            "(nomic-embed-text on Ollama, for one) to search by meaning too"
        )
    return Help()


@command(
    "user",
    "switch to the memory of another user id",
    arg=Arg.REQUIRED,
    arg_help="ID",
    arg_error="/user needs an id: type /user NAME",
    terminal_only=True,
)
async def _user(conv: Conversation, arg: str) -> Shown:
    count = await conv.switch_user(arg)
    return Note(f"now talking as {conv.user} ({count} messages remembered)")


@command("users", "list user ids in the database, with message counts and last activity", terminal_only=True)
async def _users(conv: Conversation, arg: str) -> Shown:
    return Users(await conv.store.users(), conv.user)


@command(
    "history",
    f"show the summary and the last N exchanges (default {DEFAULT_HISTORY_TURNS})",
    arg=Arg.COUNT,
    arg_help="[N]",
    arg_error="/history takes a positive number of exchanges: type /history 5",
    default=str(DEFAULT_HISTORY_TURNS),
)
async def _history(conv: Conversation, arg: str) -> Shown:
    return History(await conv.memory.last_turns(int(arg)), await conv.memory.summary())


@command(
    "search",
    "find your past exchanges that match QUERY, best first, with their dates",
    arg=Arg.REQUIRED,
    arg_help="QUERY",
    arg_error="/search needs words to look for: type /search QUERY",
)
async def _search(conv: Conversation, arg: str) -> Shown:
    from .search import query_words

    found = await _matching(conv, arg, by_meaning=True)
    if not found:
        return Note(f"nothing in the memory of {conv.user} matches {arg!r}")
    return Found(arg, query_words(arg), [(day, turn.items) for day, turn in found])


async def _matching(conv: Conversation, query: str, *, by_meaning: bool = False) -> list[tuple[str, Turn]]:
    """The exchanges that match the words of ``query``, best first; ``by_meaning``, those near in meaning too.

    /forget goes by words alone: the nearest in meaning always exist, related or not.
    """
    from .recall import matching

    return await matching(conv.memory, query, SEARCH_RESULTS, conv.models.semantic if by_meaning else None)


async def _ask_forget(conv: Conversation, query: str) -> str:
    from .items import item_text

    found = await _matching(conv, query)
    if not found:
        return ""
    lines = [f"  [{day or 'date unknown'}] {item_text(turn.items[0])[:100]}" for day, turn in found]
    return "\n".join([f"these exchanges match {query!r}:", *lines, f"forget these {len(found)}?"])


@command(
    "forget",
    "delete your past exchanges whose words match QUERY, after showing them",
    arg=Arg.REQUIRED,
    arg_help="QUERY",
    arg_error="/forget needs words to look for: type /forget QUERY (see what matches with /search QUERY)",
    confirm=_ask_forget,
    rewrites=True,
)
async def _forget(conv: Conversation, arg: str) -> Shown:
    found = await _matching(conv, arg)
    if not found:
        return Note(f"nothing in the memory of {conv.user} matches {arg!r}: nothing was forgotten")
    summary_went = await conv.memory.forget([turn for _, turn in found])
    said = f"forgot {plural(len(found), 'exchange')} matching {arg!r}"
    if summary_went:
        said += "; the summary of older turns may have mentioned them, so it was removed and is written again from what remains"
    return Note(said)


@command("summary", "show what is remembered of turns too old to send in full")
async def _summary(conv: Conversation, arg: str) -> Shown:
    summary = await conv.memory.summary()
    return SummaryText(summary.text if summary else None)


async def _ask_clear(conv: Conversation, arg: str) -> str:
    return f"wipe all {await conv.memory.count()} messages of {conv.user}, with the summary and instructions?"


@command(
    "clear", "wipe the current user's memory: messages, summary and instructions", confirm=_ask_clear, rewrites=True
)
async def _clear(conv: Conversation, arg: str) -> Shown:
    await conv.memory.clear_session()
    return Note(f"cleared the memory of {conv.user}")


@command("undo", "remove the last exchange (your last message and its reply)", rewrites=True)
async def _undo(conv: Conversation, arg: str) -> Shown:
    return Note(describe_undo(await conv.memory.undo()))


@command("retry", "ask again for your last message; the new reply replaces the old one (kept if this fails)")
async def _retry(conv: Conversation, arg: str) -> Shown:
    text = await conv.last_message()
    if text is None:
        return Note("nothing to retry: send a message first")
    return Resend(text)


@command(
    "edit",
    "put your last message in the input line; sending it replaces the last exchange",
    terminal_only=True,
)
async def _edit(conv: Conversation, arg: str) -> Shown:
    text = await conv.last_message()
    if text is None:
        return Note("nothing to edit: send a message first")
    return EditLast(text)


@command("model", "show the model, or switch to NAME for this session", arg=Arg.OPTIONAL, arg_help="[NAME]")
async def _model(conv: Conversation, arg: str) -> Shown:
    where = conv.settings.base_url or "OpenAI"
    if not arg:
        return Note(f"model: {conv.model} at {where}")
    if any(char.isspace() for char in arg):
        return Note(f"a model name has no spaces: {arg!r} was not taken; the model is still {conv.model}")
    conv.model = arg
    return Note(
        f"now using {arg} at {where} for this session (--model or OPENAI_DEFAULT_MODEL sets it for every start)"
    )


@command("usage", "tokens of the last request and of this session, and how full the context budget was")
async def _usage(conv: Conversation, arg: str) -> Shown:
    last, total = conv.last, conv.usage
    if last is None:
        return Note("no request yet in this session: send a message first")
    unknown = " (the server did not report token counts)" if last.usage.input_tokens == 0 else ""
    share = 100 * last.history_tokens / last.budget if last.budget else 0.0
    return Rows(
        {
            "model": conv.model,
            "last request": f"{last.usage.input_tokens:,} tokens in, {last.usage.output_tokens:,} out{unknown}",
            "this session": f"{total.input_tokens:,} tokens in, {total.output_tokens:,} out, in {plural(total.turns, 'turn')}",
            "context budget": f"history of about {last.history_tokens:,} of {last.budget:,} tokens ({share:.0f}%)"
            + (", older turns summarized" if last.context.overflow or last.context.summary else ""),
        }
    )


@command(
    "copy",
    "copy the last reply, or its Nth code block, to the clipboard (works over SSH)",
    arg=Arg.COUNT,
    arg_help="[N]",
    arg_error="/copy takes the number of a code block: type /copy 1",
    terminal_only=True,
)
async def _copy(conv: Conversation, arg: str) -> Shown:
    from .items import item_text

    replies = [item for item in await conv.memory.last_turns(1) if item.get("role") == "assistant"]
    if not replies:
        return Note("no reply to copy yet")
    reply = item_text(replies[-1])
    if not arg:
        return Clipboard(reply, "the last reply")
    blocks = code_blocks(reply)
    number = int(arg)
    if number > len(blocks):
        return Note(f"the last reply has {plural(len(blocks), 'code block')}: /copy alone copies all of it")
    return Clipboard(blocks[number - 1], f"code block {number} of the last reply")


@command(
    "export",
    "your whole conversation, summary and instructions as Markdown (JSON if FILE ends in .json)",
    arg=Arg.OPTIONAL,
    arg_help="[FILE]",
)
async def _export(conv: Conversation, arg: str) -> Shown:
    from .copy import Snapshot

    snapshot = await Snapshot.of(conv.memory)
    as_json = arg.lower().endswith(".json")
    text = snapshot.to_json() if as_json else snapshot.to_markdown()
    name = re.sub(r"[^\w.-]+", "_", f"memchat-{conv.user}") + (".json" if as_json else ".md")
    return Document(text, name, arg or None, len(snapshot.items))


@command(
    "instructions",
    "show your standing instructions (a persona, a language, a style), set them to TEXT, or 'off'",
    arg=Arg.OPTIONAL,
    arg_help="[TEXT]",
)
async def _instructions(conv: Conversation, arg: str) -> Shown:
    if not arg:
        current = await conv.memory.instructions()
        if current is None:
            return Note("no standing instructions: /instructions TEXT sets some, sent with every request")
        return Note(f"your standing instructions: {current}")
    if arg.lower() == "off":
        await conv.memory.set_instructions(None)
        return Note("standing instructions removed")
    if len(arg) > MAX_INSTRUCTIONS:
        return Note(
            f"not set: the instructions are {len(arg):,} characters; keep them under {MAX_INSTRUCTIONS:,} "
            "(they go with every request)"
        )
    await conv.memory.set_instructions(arg)
    return Note("standing instructions set: every request carries them from now on (/instructions off removes them)")
