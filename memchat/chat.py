"""What happens to one typed line: a message for the model or a slash command.

The terminal's interactive and piped loops both hand lines to ``Chat.handle``,
so commands and turns behave the same in each.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import threading
from typing import TYPE_CHECKING

from config import Settings, check_user_id

from .commands import HELP, Blank, Command, CommandError, Hint, Leave, Message, describe_undo, parse
from .errors import MemchatError, StoreLostError
from .memory import Store
from .output import Output

if TYPE_CHECKING:
    from .turn import TurnRunner


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
            importlib.import_module("memchat.turn")

    threading.Thread(target=load, name="memchat-preload", daemon=True).start()


class Chat:
    """One person's chat: the current user id, their memory, and the model."""

    def __init__(self, settings: Settings, store: Store, output: Output) -> None:
        self.settings = settings
        self.store = store
        self.out = output
        self.user = settings.user
        self.memory = store.memory(self.user)
        self._runner: TurnRunner | None = None
        self._fold: asyncio.Task[None] | None = None

    async def handle(self, line: str, *, stream: bool) -> Outcome:
        """Act on one input line; report problems as one ``error:`` line and carry on."""
        try:
            parsed = parse(line)
            if isinstance(parsed, Blank):
                return Outcome.OK
            if isinstance(parsed, Leave):
                return Outcome.LEAVE
            if isinstance(parsed, Hint):
                self.out.notice(parsed.text)
                return Outcome.OK
            if isinstance(parsed, Command):
                await self._command(parsed)
                return Outcome.OK
            return await self._turn(parsed, stream=stream)
        except (CommandError, MemchatError) as exc:
            self.out.error(str(exc))
            return Outcome.STOP if isinstance(exc, StoreLostError) else Outcome.FAILED

    async def _turn(self, message: Message, *, stream: bool) -> Outcome:
        from .model_errors import describe_failed_turn

        runner = self._turn_runner()
        streamed_any = False

        def show(piece: str) -> None:
            nonlocal streamed_any
            streamed_any = True
            self.out.stream_piece(piece)

        try:
            if stream:
                result = await runner.run(self.memory, message.text, show)
                self.out.end_stream()
            else:
                result = await runner.run(self.memory, message.text)
                self.out.reply(result.reply)
        except MemchatError:
            raise
        except Exception as exc:  # noqa: BLE001 - any model failure becomes one line
            if streamed_any:
                self.out.end_stream()
            self.out.error(describe_failed_turn(exc, self.settings))
            return Outcome.FAILED
        for notice in result.notices:
            self.out.notice(notice)
        if result.not_saved is not None:
            self.out.error(f"the reply above was not saved: {result.not_saved}")
            return Outcome.STOP if isinstance(result.not_saved, StoreLostError) else Outcome.FAILED
        if stream:
            # While the user reads and types, not before the prompt comes back.
            if self._fold is None or self._fold.done():
                self._fold = asyncio.ensure_future(self._update_summary(runner, quiet=True))
        else:
            await self._update_summary(runner, quiet=False)
        return Outcome.OK

    async def _update_summary(self, runner: TurnRunner, *, quiet: bool) -> None:
        """Fold turns that no longer fit into the summary; on failure, retry after a later turn."""
        from .model_errors import describe_model_error

        try:
            await runner.fold_if_needed(self.memory)
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
        if self._runner is not None:
            await self._runner.aclose()

    def _turn_runner(self) -> TurnRunner:
        if self._runner is None:
            from .turn import TurnRunner

            self._runner = TurnRunner(self.settings)
        return self._runner

    async def _command(self, command: Command) -> None:
        if command.name in ("user", "clear", "undo"):
            self._stop_summary()
        if command.name == "help":
            self.out.lines(HELP)
        elif command.name == "user":
            user = check_user_id(command.arg)
            memory = self.store.memory(user)
            await memory.check_readable()
            self.memory, self.user = memory, user
            count = await self.memory.count()
            self.out.notice(f"now talking as {self.user} ({count} messages remembered)")
        elif command.name == "users":
            self.out.users(await self.store.users(), self.user)
        elif command.name == "history":
            self.out.history(await self.memory.last_turns(int(command.arg)), await self.memory.summary())
        elif command.name == "summary":
            summary = await self.memory.summary()
            self.out.summary(summary.text if summary else None)
        elif command.name == "clear":
            await self.memory.clear_session()
            self.out.notice(f"cleared the memory of {self.user}")
        elif command.name == "undo":
            self.out.notice(describe_undo(await self.memory.undo()))
