"""The terminal's side of a conversation: what happens to one typed line, and how it is shown.

The interactive and piped loops (see ``terminal``) both hand lines to
``Chat.handle``. Commands are carried out by the command core (see
``commands``); this module only shows what they return.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings
from memchat.commands import (
    REGISTRY,
    Blank,
    Clipboard,
    Command,
    CommandError,
    CommandOutput,
    Document,
    EditLast,
    Found,
    Help,
    Hint,
    History,
    Leave,
    Note,
    Resend,
    Rows,
    SummaryText,
    Users,
    help_rows,
    parse,
)
from memchat.conversation import Conversation
from memchat.errors import MemchatError, StoreLostError
from memchat.loading import load_model_code, load_model_code_aside, model_code_loaded
from memchat.stores.protocol import Memory, Store
from memchat.terminal.output import Output

if TYPE_CHECKING:
    from memchat.terminal.output import ReplyStream
    from memchat.toolbox.approval import Approver
    from memchat.turn import TurnResult


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    LEAVE = "leave"
    # The store is gone (its file deleted or replaced): nothing more can be kept, so the chat ends.
    STOP = "stop"


def preload_model_code() -> None:
    """Import the Agents SDK in the background, so the prompt need not wait for it."""

    def load() -> None:
        # A failure here is reported properly by the foreground import.
        with contextlib.suppress(Exception):
            load_model_code()
            # The renderer of replies too, while the prompt waits, not when the first words arrive.
            importlib.import_module("memchat.terminal.render")

    threading.Thread(target=load, name="memchat-preload", daemon=True).start()


class Chat:
    """The terminal's conversation: the command core underneath, this terminal on top."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        output: Output,
        *,
        ask: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.conv = Conversation(settings, store)
        self.out = output
        # Asks the person a yes/no question; None on a pipe, where nothing is asked.
        self.ask = ask
        # Asks whether a tool may run, answered yes, no or always; None on a pipe, where only trusted tools run.
        self.ask_tool: Callable[[str], Awaitable[str]] | None = None
        # Set by /edit: the text to put in the input line, and that what is sent next replaces the last exchange.
        self.prefill: str | None = None
        self.editing = False
        self._fold: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Settings:
        return self.conv.settings

    @property
    def store(self) -> Store:
        return self.conv.store

    @property
    def user(self) -> str:
        return self.conv.user

    @property
    def memory(self) -> Memory:
        return self.conv.memory

    async def handle(self, line: str, *, stream: bool) -> Outcome:
        """Act on one input line; report problems as one ``error:`` line and carry on."""
        replacing, self.editing = self.editing, False
        try:
            parsed = parse(line)
            if isinstance(parsed, Blank):
                if replacing:
                    self.out.notice("edit cancelled: the last exchange is unchanged")
                return Outcome.OK
            if isinstance(parsed, Leave):
                return Outcome.LEAVE
            if isinstance(parsed, Hint):
                self.out.notice(parsed.text)
                return Outcome.OK
            if isinstance(parsed, Command):
                return await self._command(parsed, stream=stream)
            return await self._turn(parsed.text, stream=stream, replacing=replacing)
        except (CommandError, MemchatError) as exc:
            self.out.error(str(exc))
            return Outcome.STOP if isinstance(exc, StoreLostError) else Outcome.FAILED

    async def _turn(self, text: str, *, stream: bool, replacing: bool = False) -> Outcome:
        self._stop_summary()
        started = time.monotonic()
        try:
            if stream:
                shown = self.out.reply_stream()
                try:
                    if not model_code_loaded():
                        shown.waiting("loading the model library (first turn only)…")
                        await load_model_code_aside()
                        shown.waiting("thinking…")
                    if self.settings.tools and (toolbox := self.conv.runners.toolbox) and not toolbox.started:
                        # Servers can take seconds to start (a package runner fetching one): say what is waited for.
                        shown.waiting("starting the MCP servers (first turn only)…")
                        await toolbox.start()
                        shown.waiting("thinking…")
                    approve = self._approver(shown) if self.ask_tool is not None else None
                    result = await self.conv.turn(text, shown.add, replacing=replacing, approve=approve)
                finally:
                    # Whatever came stays on screen, whole, before anything is said about it.
                    shown.finish()
            else:
                # Aside: Ctrl-C on a pipe must not wait for the SDK's import to finish.
                await load_model_code_aside()
                result = await self.conv.turn(text, replacing=replacing)
                self.out.reply(result.reply)
        except MemchatError:
            raise
        except Exception as exc:  # noqa: BLE001 - any model failure becomes one line
            # Imported here: it loads openai, which the turn loads aside, off this thread.
            from memchat.model.errors import describe_failed_turn

            self.out.error(describe_failed_turn(exc, self.settings))
            return Outcome.FAILED
        for notice in result.notices:
            self.out.notice(notice)
        if result.not_saved is not None:
            self.out.error(f"the reply above was not saved: {result.not_saved}")
            return Outcome.STOP if isinstance(result.not_saved, StoreLostError) else Outcome.FAILED
        if stream:
            self.out.notice(f"({time.monotonic() - started:.1f} s)")
            # While the user reads and types, not before the prompt comes back.
            self._fold = asyncio.ensure_future(self._update_summary(result, quiet=True))
        else:
            await self._update_summary(result, quiet=False)
        return Outcome.OK

    def _approver(self, shown: ReplyStream) -> Approver:
        """Asks, below what the reply showed so far, whether a tool may run."""
        from memchat.toolbox.approval import Answer

        ask = self.ask_tool
        assert ask is not None

        async def approve(server: str, tool: str, arguments: str) -> Answer:
            shown.pause()
            try:
                self.out.notice(f"the model wants to run {tool} of MCP server {server} with {arguments[:400]}")
                answer = Answer(await ask(f"run {tool}?"))
            finally:
                shown.resume(f"running {tool}…")
            return answer

        return approve

    async def _update_summary(self, result: TurnResult, *, quiet: bool) -> None:
        """Fold turns that no longer fit into the summary; on failure, retry after a later turn."""
        from memchat.model.errors import describe_model_error

        try:
            await self.conv.fold(result)
        except Exception as exc:  # noqa: BLE001 - the turn is stored; the summary can wait
            if not quiet:
                reason = describe_model_error(exc, self.settings)
                self.out.notice(f"the summary of older turns was not updated ({reason}); a later turn retries")

    def _stop_summary(self) -> None:
        """A summary being written must not land after the memory it summarizes changed."""
        if self._fold is not None:
            self._fold.cancel()
            self._fold = None

    async def close(self) -> None:
        """Stop a summary in progress and close the model connections."""
        self._stop_summary()
        await self.conv.aclose()

    async def _command(self, command: Command, *, stream: bool) -> Outcome:
        spec = REGISTRY[command.name]
        self._stop_summary()
        question = await spec.confirm(self.conv, command.arg) if spec.confirm and self.ask else ""
        if question and self.ask is not None and not await self.ask(question):
            self.out.notice(f"/{command.name} cancelled: nothing was changed")
            return Outcome.OK
        return await self._show(command, await spec.handler(self.conv, command.arg), stream=stream)

    async def _show(self, command: Command, shown: CommandOutput, *, stream: bool) -> Outcome:
        if isinstance(shown, EditLast | Clipboard) and self.ask is None:
            raise CommandError(f"/{command.name} needs an interactive terminal: it does nothing on a pipe")
        if isinstance(shown, Note):
            self.out.notice(shown.text)
        elif isinstance(shown, Rows):
            self.out.lines(shown.rows)
        elif isinstance(shown, Help):
            self.out.lines(help_rows())
            if shown.tip:
                self.out.notice(shown.tip)
        elif isinstance(shown, History):
            self.out.history(shown.items, shown.summary)
        elif isinstance(shown, SummaryText):
            self.out.summary(shown.text)
        elif isinstance(shown, Users):
            self.out.users(shown.users, shown.current)
        elif isinstance(shown, Found):
            self.out.found(shown.exchanges, shown.words)
        elif isinstance(shown, Document):
            self._write(shown)
        elif isinstance(shown, Resend):
            return await self._turn(shown.text, stream=stream, replacing=True)
        elif isinstance(shown, EditLast):
            self.prefill, self.editing = shown.text, True
            self.out.notice(
                "edit your last message; Enter sends it in place of the last exchange, an empty line cancels"
            )
        elif isinstance(shown, Clipboard):
            self.out.clipboard(shown.text)
            self.out.notice(f"copied {shown.what} ({len(shown.text):,} characters) to the clipboard")
        return Outcome.OK

    def _write(self, document: Document) -> None:
        if document.path is None:
            self.out.raw(document.text)
            return
        path = Path(document.path).expanduser()
        try:
            path.write_text(document.text, encoding="utf-8")
        except OSError as exc:
            raise MemchatError(f"cannot write {path} ({exc.strerror}): pass /export another path") from None
        self.out.notice(f"exported {document.messages} messages of {self.user} to {path}")
