"""The command line: ``memchat [--user ID] [--db PATH] [--clear] [--model NAME]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import NoReturn

from config import DEFAULT_CONTEXT_TOKENS, DEFAULT_DB, DEFAULT_USER, ENVIRONMENT, load_settings

from .commands import HELP
from .errors import MemchatError
from .output import Output

EXIT_CODES = {
    0: "success (piped: every message got a reply)",
    1: "piped: at least one message or command failed",
    2: "set-up problem: configuration, user id or database",
    130: "interrupted with Ctrl-C outside a reply",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line like every other error."""

    def error(self, message: str) -> NoReturn:
        Output().error(f"{message}: see memchat --help")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    def section(title: str, rows: dict[str, str] | dict[int, str]) -> str:
        width = max(len(str(key)) for key in rows)
        return title + ":\n" + "\n".join(f"  {str(key).ljust(width)}  {value}" for key, value in rows.items())

    epilog = "\n\n".join(
        [
            section("environment (also read from .env in the current folder)", ENVIRONMENT),
            section("commands inside the chat", HELP),
            section("exit codes", EXIT_CODES),
        ]
    )
    parser = _Parser(
        prog="memchat",
        description="A terminal chat that remembers each user across restarts.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--user", metavar="ID", help=f"whose memory to use (default: $MEMCHAT_USER or {DEFAULT_USER})")
    parser.add_argument("--db", metavar="PATH", help=f"the SQLite file (default: $MEMCHAT_DB or {DEFAULT_DB})")
    parser.add_argument("--clear", action="store_true", help="wipe this user's memory first, then chat")
    parser.add_argument("--model", metavar="NAME", help="model name (default: $OPENAI_DEFAULT_MODEL)")
    parser.add_argument(
        "--context-tokens",
        metavar="N",
        type=int,
        help=f"most tokens of history sent per request; older turns live on in a summary (default: {DEFAULT_CONTEXT_TOKENS})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run memchat; return the process exit code."""
    try:
        return asyncio.run(_run(_parser().parse_args(argv)))
    except MemchatError as exc:
        Output().error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    from .chat import Chat
    from .sqlite_store import SQLiteStore
    from .terminal import banner, interactive, piped

    settings = load_settings(user=args.user, db=args.db, model=args.model, context_tokens=args.context_tokens)
    settings.require_model_access()
    out = Output()
    store = SQLiteStore(settings.db)
    try:
        chat = Chat(settings, store, out)
        if args.clear:
            await chat.memory.clear_session()
            out.notice(f"cleared the memory of {chat.user}")
        if sys.stdin.isatty():
            banner(chat, await chat.memory.count())
            return await interactive(chat)
        return await piped(chat)
    finally:
        store.close()
