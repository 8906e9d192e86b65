"""One person's conversation, whatever front end shows it: who is talking, to which model, and turns.

The terminal and the web page each hold a ``Conversation`` and only display
what it returns; the slash commands (see ``commands``) act on it too. A turn's
result comes back as a value, so nothing about one request is left on an
object that another session shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from typing import TYPE_CHECKING

from config import Settings, check_user_id
from memchat.attachments import Attachment
from memchat.errors import MemchatError
from memchat.items import is_user_message, item_text
from memchat.loading import load_model_code
from memchat.stores.protocol import Memory, Store, Turn, VectorMemory
from memchat.toolbox.approval import AllowedTools, Approver
from memchat.toolbox.config import read_servers

if TYPE_CHECKING:
    from collections.abc import Callable

    from memchat.context.semantic import Semantic
    from memchat.toolbox.servers import Toolbox
    from memchat.turn import TurnResult, TurnRunner, Usage


class Runners:
    """One turn runner per model name, shared by every conversation of a process.

    A runner learns about its server as it goes (how many tokens it holds, how
    characters count as tokens), which is worth keeping across sessions.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runners: dict[str, TurnRunner] = {}
        self._semantic: Semantic | None = None
        self._making = threading.Lock()
        # The MCP servers configured; read now, so a mistake in the file is said before the chat starts.
        self.servers = read_servers(settings.mcp_config) if settings.tools else ()
        self._toolbox: Toolbox | None = None

    def runner(self, model: str) -> TurnRunner:
        if model not in self._runners:
            # The SDK loads here, on first use, not when memchat starts.
            load_model_code()
            from memchat.turn import TurnRunner

            self._runners[model] = TurnRunner(
                dataclasses.replace(self.settings, model=model), semantic=self.semantic, toolbox=self.toolbox
            )
        return self._runners[model]

    @property
    def toolbox(self) -> Toolbox | None:
        """The MCP servers, where some are configured; made on first use (it loads the MCP client)."""
        if self._toolbox is None and self.servers:
            load_model_code()
            from memchat.toolbox.servers import Toolbox

            state = self.settings.state_dir
            self._toolbox = Toolbox(self.servers, AllowedTools(state / "allowed_tools.json"), state / "mcp-logs")
        return self._toolbox

    @property
    def semantic(self) -> Semantic | None:
        """Search by meaning, when an embedding model is set; made on first use (it loads the HTTP client)."""
        # Under a lock: a run's start makes it in a thread (see ``Conversation.catch_up``), and the web
        # page's sessions may start at once.
        with self._making:
            if self._semantic is None and self.settings.embedding_model:
                from memchat.context.semantic import Semantic

                self._semantic = Semantic(self.settings)
        return self._semantic

    async def aclose(self) -> None:
        for runner in self._runners.values():
            await runner.aclose()
        self._runners.clear()
        if self._semantic is not None:
            await self._semantic.aclose()
            self._semantic = None
        if self._toolbox is not None:
            await self._toolbox.aclose()
            self._toolbox = None


@dataclasses.dataclass
class SessionUsage:
    """What this conversation has cost so far, as the server reported it."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    # Dollars, estimated from the price of each turn's model, and how many turns had one.
    cost: float = 0.0
    priced_turns: int = 0

    def add(self, usage: Usage, price: tuple[float, float] | None = None) -> None:
        """Count one turn, and what it cost where its model's price is known."""
        self.turns += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if price is not None:
            self.cost += cost(usage, price)
            self.priced_turns += 1


def cost(usage: Usage, price: tuple[float, float]) -> float:
    """Dollars, at ``price`` (dollars per million tokens in, and out)."""
    return (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1_000_000


class Conversation:
    """A user's memory in a store, the model they talk to, and what this session has done."""

    def __init__(self, settings: Settings, store: Store, runners: Runners | None = None) -> None:
        self.settings = settings
        self.store = store
        self.runners = runners or Runners(settings)
        self.user = settings.user
        self.memory: Memory = store.memory(self.user)
        self.model = settings.model
        self.last: TurnResult | None = None
        self.usage = SessionUsage()
        # The price of the model that answered the last turn, where it is known.
        self.last_price: tuple[float, float] | None = None
        # Files that go with the next message (/attach, or dropped on the page).
        self.attached: list[Attachment] = []
        # The search's files opening (see ``catch_up``), held so the task is not collected before it ends.
        self._preparing: asyncio.Future[None] | None = None

    async def switch_user(self, user: str) -> int:
        """Talk as ``user`` from now on; the number of messages they have."""
        user = check_user_id(user)
        memory = self.store.memory(user)
        await memory.check_readable()
        self.memory, self.user, self.last = memory, user, None
        await self.catch_up()
        return await memory.count()

    async def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index what this user's memory holds that the search index does not (an older file); how many.

        Messages with no vector yet are embedded in the background, when an embedding model is set.
        """
        model = self.settings.embedding_model
        if model is not None and isinstance(self.memory, VectorMemory):
            # What a search by meaning needs (SQLite's graph file: imports and a walk of the file, 0.2 s
            # at 100,000 messages) opens in a thread of its own from now, so the first question finds it open.
            self._preparing = asyncio.ensure_future(self.memory.prepare_search(model))
            self._preparing.add_done_callback(lambda task: task.cancelled() or task.exception())
        indexed = await self.memory.index_missing(progress)
        # The HTTP client takes 0.7 s to load: in a thread, so the opening above goes on meanwhile.
        semantic = await asyncio.to_thread(lambda: self.runners.semantic)
        if semantic is not None:
            semantic.fill(self.memory)
        return indexed

    async def turn(
        self,
        text: str,
        on_text: Callable[[str], None] | None = None,
        *,
        replacing: bool = False,
        approve: Approver | None = None,
    ) -> TurnResult:
        """One turn (see ``TurnRunner.run``); with ``replacing``, it takes the place of the last exchange;
        ``approve`` asks the person before a tool that is not trusted runs."""
        start: int | None = None
        if replacing:
            newest = await self.newest_turn()
            if newest is None:
                raise MemchatError("there is no earlier message to replace: send one first")
            start = newest.start
        # The files go with this message, whatever becomes of it: a failed turn does not carry them to the next.
        attached, self.attached = self.attached, []
        result = await self.runners.runner(self.model).run(
            self.memory, text, on_text, replacing=start, approve=approve, attachments=attached
        )
        if (semantic := self.runners.semantic) is not None:
            # The new messages are embedded after the reply, never before it.
            semantic.fill(self.memory)
            result = dataclasses.replace(result, notices=result.notices + semantic.notices())
        self.last, self.last_price = result, self.settings.price(self.model)
        self.usage.add(result.usage, self.last_price)
        return result

    async def fold(self, result: TurnResult) -> None:
        """After ``result``'s turn: what to keep of it noted (a server without tools), the summary brought up to
        date; raises what the model raised."""
        runner = self.runners.runner(self.model)
        if result.not_saved is None:
            # Best effort: a pass that fails keeps nothing of this exchange, and the chat goes on.
            with contextlib.suppress(Exception):
                await runner.note_memories(self.memory, result.text, result.reply)
        await runner.fold_if_needed(self.memory, result.context)

    async def newest_turn(self) -> Turn | None:
        """The newest exchange, if the memory has one that starts with a message of the user."""
        async for turn in self.memory.turns_backward(0):
            return turn if is_user_message(turn.items[0]) else None
        return None

    async def last_message(self) -> str | None:
        """The text of the user's newest message, if any."""
        newest = await self.newest_turn()
        return None if newest is None else item_text(newest.items[0])

    async def aclose(self) -> None:
        await self.runners.aclose()
