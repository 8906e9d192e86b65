"""The command line: ``memchat [--user ID] [--db PATH|URL] [--clear] [--model NAME]``, and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn

from config import (
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_DB,
    DEFAULT_USER,
    DEFAULT_WEB_HOST,
    DEFAULT_WEB_PORT,
    ENVIRONMENT,
    ConfigError,
    check_user_id,
    load_settings,
)
from memchat.commands import help_rows
from memchat.errors import MemchatError
from memchat.terminal.output import Output, Progress

DB_FORMS = "sqlite:///PATH, postgresql://USER@HOST/DB (extra: postgres), redis://HOST:PORT/N (extra: redis)"

EXIT_CODES = {
    0: "success (piped: every message got a reply)",
    1: "piped: at least one message or command failed; copy, import: a user was not copied",
    2: "set-up problem: configuration, user id or database",
    130: "interrupted with Ctrl-C outside a reply",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line like every other error."""

    def error(self, message: str) -> NoReturn:
        Output().error(f"{message}: see {self.prog} --help")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    def section(title: str, rows: dict[str, str] | dict[int, str]) -> str:
        width = max(len(str(key)) for key in rows)
        return title + ":\n" + "\n".join(f"  {str(key).ljust(width)}  {value}" for key, value in rows.items())

    epilog = "\n\n".join(
        [
            section("environment (also read from .env in the current folder)", ENVIRONMENT),
            section("commands inside the chat", help_rows()),
            section("exit codes", EXIT_CODES),
        ]
    )
    subcommands = section(
        "commands",
        {
            "memchat [options]": "chat (the options below)",
            **{f"memchat {spec.name} {spec.usage}".rstrip(): spec.summary for spec in SUBCOMMANDS.values()},
        },
    )
    parser = _Parser(
        prog="memchat",
        description=f"A terminal chat that remembers each user across restarts.\n\n{subcommands}",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--user", metavar="ID", help=f"whose memory to use (default: $MEMCHAT_USER or {DEFAULT_USER})")
    parser.add_argument(
        "--db", metavar="PATH|URL", help=f"where memories live (default: $MEMCHAT_DB or {DEFAULT_DB}); {DB_FORMS}"
    )
    parser.add_argument("--clear", action="store_true", help="wipe this user's memory first, then chat")
    parser.add_argument(
        "--plain", action="store_true", help="print replies as raw text, not rendered Markdown (also: MEMCHAT_PLAIN=1)"
    )
    parser.add_argument("--model", metavar="NAME", help="model name (default: $OPENAI_DEFAULT_MODEL)")
    parser.add_argument(
        "--no-tools",
        action="store_true",
        help="offer the model no tools: neither memory search nor MCP servers (also: MEMCHAT_TOOLS=off)",
    )
    parser.add_argument(
        "--context-tokens",
        metavar="N",
        type=int,
        help=f"most tokens of history sent per request; older turns live on in a summary (default: {DEFAULT_CONTEXT_TOKENS})",
    )
    return parser


# The subcommands: each declared once, with @subcommand on the function that runs it; the
# parser, ``main`` and the top --help all take it from SUBCOMMANDS.


@dataclass(frozen=True)
class Option:
    """One argument of a subcommand, in argparse's words."""

    flags: tuple[str, ...]
    settings: dict[str, Any]


def option(*flags: str, **settings: Any) -> Option:
    return Option(flags, settings)


@dataclass(frozen=True)
class OneOf:
    """Options of which at most one may be given."""

    options: tuple[Option, ...]


Handler = Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]


@dataclass(frozen=True)
class Subcommand:
    name: str
    # What the top --help shows after ``memchat NAME``.
    usage: str
    summary: str
    description: str
    options: tuple[Option | OneOf, ...]
    run: Handler
    epilog: str = ""

    def parser(self) -> argparse.ArgumentParser:
        parser = _Parser(
            prog=f"memchat {self.name}",
            description=self.description,
            epilog=self.epilog or None,
            # An epilog keeps its line breaks (an example on a line of its own); a description is wrapped.
            formatter_class=argparse.RawDescriptionHelpFormatter if self.epilog else argparse.HelpFormatter,
        )
        for entry in self.options:
            if isinstance(entry, OneOf):
                group = parser.add_mutually_exclusive_group()
                for one in entry.options:
                    group.add_argument(*one.flags, **one.settings)
            else:
                parser.add_argument(*entry.flags, **entry.settings)
        return parser


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str, usage: str, summary: str, description: str, *options: Option | OneOf, epilog: str = ""
) -> Callable[[Handler], Handler]:
    """Declare ``memchat NAME``; the decorated function runs it and returns the exit code."""

    def register(run: Handler) -> Handler:
        SUBCOMMANDS[name] = Subcommand(name, usage, summary, description, options, run, epilog)
        return run

    return register


def _port(text: str) -> int:
    """A TCP port; anything else is one line (argparse's own message names --port)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a number from 1 to 65535, such as 8000")
    return int(text)


USER = option("--user", metavar="ID", help=f"whose memory (default: $MEMCHAT_USER or {DEFAULT_USER})")
STORE = option("--db", metavar="PATH|URL", help=f"the store (default: $MEMCHAT_DB or {DEFAULT_DB})")


def main(argv: list[str] | None = None) -> int:
    """Run memchat; return the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        spec = SUBCOMMANDS.get(args[0]) if args else None
        if spec is not None:
            result = spec.run(spec.parser().parse_args(args[1:]))
            return result if isinstance(result, int) else asyncio.run(result)
        parsed = _parser().parse_args(args)
        from memchat.terminal.repl import typeahead_unechoed

        with typeahead_unechoed():
            return asyncio.run(_run(parsed))
    except MemchatError as exc:
        Output().error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    from memchat.stores import open_store
    from memchat.terminal.chat import Chat
    from memchat.terminal.repl import banner, interactive, piped

    settings = load_settings(
        user=args.user,
        db=args.db,
        model=args.model,
        context_tokens=args.context_tokens,
        plain=args.plain,
        tools=not args.no_tools,
    )
    settings.require_model_access()
    out = Output(plain=settings.plain)
    store = await open_store(settings.db, encryption_key=settings.encryption_key, timeout=settings.store_timeout)
    chat = Chat(settings, store, out)
    try:
        await chat.memory.check_readable()
        progress = Progress(out, "indexing older messages for search")
        progress.finish(await chat.conv.catch_up(progress))
        if args.clear:
            await chat.memory.clear_session()
            out.notice(f"cleared the memory of {chat.user}")
        if sys.stdin.isatty():
            banner(chat, await chat.memory.count())
            return await interactive(chat)
        return await piped(chat)
    finally:
        await chat.close()
        await store.close()


@subcommand(
    "copy",
    "--from SRC --to DST [--user ID]",
    "copy memories between stores",
    "Copy memories from one store to another. Running it again adds only what is new.",
    option("--from", dest="source", metavar="SRC", required=True, help="the store to copy from"),
    option("--to", dest="target", metavar="DST", required=True, help="the store to copy to"),
    option("--user", metavar="ID", help="copy only this user (default: everyone)"),
    epilog=f"a store is a SQLite file path or a URL: {DB_FORMS}\n\n"
    "example: memchat copy --from conversion.db --to postgresql://me@dbhost/memchat",
)
async def _copy(args: argparse.Namespace) -> int:
    from memchat.stores import hide_password, open_store
    from memchat.stores.transfer import copy_store

    users = None if args.user is None else [check_user_id(args.user)]
    if args.source == args.target:
        raise MemchatError("--from and --to name the same store: nothing to copy")
    out = Output()
    settings = load_settings()
    key, timeout = settings.encryption_key, settings.store_timeout
    source = await open_store(args.source, create=False, encryption_key=key, timeout=timeout)
    try:
        target = await open_store(args.target, encryption_key=key, timeout=timeout)
        try:
            results = await copy_store(source, target, users)
        finally:
            await target.close()
    finally:
        await source.close()
    for result in results:
        if not result.copied:
            out.error(
                f"{result.user}: not copied: {hide_password(args.target)} already holds a different conversation for "
                f"{result.user}; clear it there (memchat --db DST --user ID --clear) and copy again"
            )
        elif result.added:
            out.reply(f"{result.user}: copied {result.added} messages")
        else:
            out.reply(f"{result.user}: already up to date")
    if not results:
        out.notice(f"{hide_password(args.source)} holds no memories: nothing to copy")
    return 0 if all(result.copied for result in results) else 1


@subcommand(
    "export",
    "[--user ID] [--to FILE]",
    "write a user's memory as JSON (a backup; .md: for reading)",
    "Write one user's whole memory (messages, summary, instructions) to stdout or a file: "
    "JSON, which memchat import brings back exactly, or Markdown for reading if FILE ends in .md.",
    USER,
    STORE,
    option("--to", metavar="FILE", help="write here instead of stdout"),
)
async def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memchat.stores import open_store
    from memchat.stores.transfer import Snapshot

    settings = load_settings(user=args.user, db=args.db)
    store = await open_store(
        settings.db, create=False, encryption_key=settings.encryption_key, timeout=settings.store_timeout
    )
    try:
        memory = store.memory(settings.user)
        await memory.check_readable()
        snapshot = await Snapshot.of(memory)
    finally:
        await store.close()
    as_markdown = args.to is not None and args.to.lower().endswith(".md")
    text = snapshot.to_markdown() if as_markdown else snapshot.to_json()
    if args.to is None:
        Output().raw(text)
        return 0
    try:
        Path(args.to).expanduser().write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise MemchatError(f"cannot write {args.to} ({exc.strerror}): pass --to another path") from None
    Output().notice(f"exported {len(snapshot.items)} messages of {settings.user} to {args.to}")
    return 0


@subcommand(
    "import",
    "FILE [--user ID]",
    "bring an export back (- reads stdin)",
    "Bring back a memory written by memchat export. Into an empty memory it comes whole; "
    "into one that holds the start of it, only what is missing is added; a different memory is left alone.",
    option("file", metavar="FILE", help="the export file (- for stdin)"),
    option("--user", metavar="ID", help="import as this user (default: the user in the file)"),
    STORE,
)
async def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memchat.stores import open_store
    from memchat.stores.transfer import Snapshot, restore

    where = "stdin" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise MemchatError(f"cannot read {where} ({reason}): pass a file written by memchat export") from None
    snapshot = Snapshot.from_json(text, where)
    settings = load_settings(user=args.user or snapshot.user, db=args.db)
    store = await open_store(settings.db, encryption_key=settings.encryption_key, timeout=settings.store_timeout)
    try:
        memory = store.memory(settings.user)
        await memory.check_readable()
        result = await restore(memory, snapshot)
    finally:
        await store.close()
    out = Output()
    if not result.copied:
        out.error(
            f"{settings.user}: not imported: {store.location} already holds a different conversation for "
            f"{settings.user}; clear it (memchat --user ID --clear) or import as another --user"
        )
        return 1
    out.notice(
        f"{settings.user}: imported {result.added} messages" if result.added else f"{settings.user}: already up to date"
    )
    return 0


@subcommand(
    "index",
    "[--user ID | --all] [--again]",
    "embed every message with no vector yet, for search by meaning",
    "Embed, through MEMCHAT_EMBEDDING_MODEL, every message that has no vector yet (an older "
    "history, an import, a memory written with search by meaning off), a batch at a time. "
    "Stopped, it goes on from there when run again; what new turns add is embedded as they go. "
    "On SQLite it also puts a long history's vectors (50,000 or more outside one) into a graph beside "
    "the file, which searches them in milliseconds; on PostgreSQL it makes again a vector index made "
    "by an older memchat, in the shape that finds more, faster.",
    OneOf((USER, option("--all", action="store_true", help="every user in the store"))),
    option(
        "--again",
        action="store_true",
        help="embed every message anew, replacing its vector (vectors made before 2026-12-03 are each "
        "message's alone; today's lean to the message before, and find more)",
    ),
    STORE,
)
async def _index(args: argparse.Namespace) -> int:
    from memchat.context.semantic import Semantic
    from memchat.stores import open_store

    settings = load_settings(user=args.user, db=args.db)
    if settings.embedding_model is None:
        raise ConfigError(
            "search by meaning is off, so there is nothing to embed with: set MEMCHAT_EMBEDDING_MODEL to an "
            "embedding model of the server"
        )
    settings.require_model_access()
    out = Output()
    store = await open_store(
        settings.db, create=False, encryption_key=settings.encryption_key, timeout=settings.store_timeout
    )
    semantic = Semantic(settings)
    try:
        # Shared by every user, so made again first, once (an index of an older shape, on PostgreSQL).
        rebuilding = Progress(out, "making the vector index again")
        if await store.rebuild_indexes(rebuilding):
            rebuilding.finish(0)
            out.notice("the vector index was made again, in today's shape")
        users = [stats.user for stats in await store.users()] if args.all else [settings.user]
        for user in users:
            memory = store.memory(user)
            progress = Progress(out, f"embedding the messages of {user}" + (" again" if args.again else ""))
            done = await semantic.embed_all(memory, progress, again=args.again)
            progress.finish(0)
            out.notice(f"{user}: {done:,} messages embedded" if done else f"{user}: every message has its vector")
    finally:
        await semantic.aclose()
        await store.close()
    return 0


@subcommand(
    "passwd",
    "USER",
    "set USER's password for the web page",
    "Set or change the password USER logs in with on the web page (memchat web). "
    "Asks twice in a terminal; reads one line from a pipe.",
    option("user", metavar="USER", help="the user id"),
    STORE,
)
async def _passwd(args: argparse.Namespace) -> int:
    from memchat.stores import open_store
    from memchat.web.accounts import accounts
    from memchat.web.passwords import PasswordError, hash_password, login_failure_key

    settings = load_settings(user=args.user, db=args.db)
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"new password for {settings.user}: ")
        if getpass.getpass("again: ") != password:
            raise PasswordError("the two passwords differ: nothing was changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    hashed = hash_password(password)
    store = await open_store(settings.db, timeout=settings.store_timeout)
    try:
        records = accounts(store)
        await records.set_password_hash(settings.user, hashed)
        # A user locked out by their own typos (or a guesser's) can log in with the new password at once.
        await records.forget_login_failures([login_failure_key("user", settings.user)])
    finally:
        await store.close()
    Output().notice(f"password set for {settings.user}: log in on memchat web with it")
    return 0


@subcommand(
    "web",
    "[--host H] [--port N]",
    "serve the chat page (needs the web extra)",
    "Serve the chat page: the same memory as the terminal, behind a password (memchat passwd USER).",
    option(
        "--host",
        default=DEFAULT_WEB_HOST,
        help=f"address to listen on (default: {DEFAULT_WEB_HOST}, this machine only)",
    ),
    option("--port", type=_port, default=DEFAULT_WEB_PORT, help=f"port, 1 to 65535 (default: {DEFAULT_WEB_PORT})"),
    STORE,
    option("--model", metavar="NAME", help="model name (default: $OPENAI_DEFAULT_MODEL)"),
)
def _web(args: argparse.Namespace) -> int:
    from memchat.toolbox.config import read_servers
    from memchat.web.serve import serve

    settings = load_settings(db=args.db, model=args.model)
    settings.require_model_access()
    # A mistake in the MCP config is said here, not in the page's server log.
    read_servers(settings.mcp_config if settings.tools else None)
    return serve(settings, args.host, args.port, Output())
