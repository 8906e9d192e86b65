"""One chat turn, stored whole or not at all; shared by every front end.

The SDK, given a session, writes the user's message before the model answers,
so a failed or interrupted call leaves a lone user message and every later
request carries two user messages in a row. Here the history is read, the
model is called with history plus the new message, and only a finished reply
is written, together with its message, in one transaction.

The history sent is bounded by the token budget: the running summary, the newest
whole turns (see ``budget``), and what recall finds of the older ones for the new
message (see ``recall``); turns that fall out of the newest are folded into the
summary after the reply (see ``summary``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import openai
from agents import Agent, FunctionTool, Model, ModelBehaviorError, ModelSettings, Runner, Tool
from agents.result import RunResultBase
from openai.types.responses import ResponseTextDeltaEvent

from config import MIN_CONTEXT_TOKENS, Settings
from memchat.attachments import Attachment, content
from memchat.context import saved
from memchat.context.budget import (
    MESSAGE_TOKENS,
    SUMMARY_HEADING,
    Context,
    TokenEstimator,
    build_context,
    item_chars,
    opening_days,
    spoken_day,
    turn_items,
)
from memchat.context.recall import HEADING, Recalled, recall
from memchat.context.repair import repaired
from memchat.context.semantic import Semantic
from memchat.context.summary import Summarizer
from memchat.context.tools import MODEL_TOOLS, SAVED_TOOLS, ToolContext
from memchat.errors import MemchatError, StoreError
from memchat.items import Item, is_user_message
from memchat.model.agent import build_agent, run_config
from memchat.model.client import build_client
from memchat.model.errors import EmptyReplyError, is_context_overflow, server_context_size
from memchat.stores.base import END
from memchat.stores.protocol import Memory, SavedMemory, Summary
from memchat.toolbox.approval import Approver

if TYPE_CHECKING:
    from memchat.toolbox.servers import Toolbox

# The newest turns take at least this share of the budget (a sixth), and what recall leaves: the
# conversation under way. A quarter found the evidence for 1 to 3 fewer questions in 100 on LoCoMo.
WINDOW_SHARE = 6
# With the memory tool offered, this share (a twelfth) is kept for what it finds, so that the
# request that answers after a search stays within the budget too. Every request pays for it, and
# most models answer from the first: an eighth found the evidence for fewer LoCoMo questions there
# (0.3 to 0.5 in 100) and for no more once the tool was called.
TOOL_SHARE = 12
# The syntax a server adds around the tools, a tool's words and each of its parameters, in characters
# at about 4 a token (see ``tools_chars``).
TOOLS_FRAME_CHARS, TOOL_FRAME_CHARS, PARAMETER_FRAME_CHARS = 48, 40, 12
# What an attached image is counted as against the budget: about what OpenAI charges for a large one.
IMAGE_TOKENS = 1_000


def instructions_with(
    base: str,
    summary: Summary | None,
    own: str | None = None,
    recalled: Recalled | None = None,
    today: datetime | None = None,
    pinned: str = "",
) -> str:
    """The system instructions: memchat's, the user's own standing ones, the saved memories, and what is
    remembered of older turns."""
    moment = today or datetime.now()
    parts = [
        f"{base}\n\nToday is {spoken_day(f'{moment:%Y-%m-%d}')}. A message of the conversation that opens "
        "a new day starts with that day in brackets."
    ]
    if own:
        parts.append(f"This user asked you to always follow these instructions of theirs:\n{own}")
    if pinned:
        parts.append(pinned)
    if summary is not None:
        parts.append(SUMMARY_HEADING + summary.text)
    if recalled is not None and recalled.excerpts:
        parts.append(recalled.text)
    return "\n\n".join(parts)


def dated_items(context: Context) -> list[Item]:
    """The history's items as sent: the first message of each day starts with the day, so "when" can be answered."""
    items: list[Item] = []
    for turn, day in zip(context.turns, opening_days(context.turns, context.days), strict=True):
        sent = turn_items(turn)
        if day and sent and is_user_message(sent[0]):
            sent = [with_day(sent[0], day), *sent[1:]]
        items += sent
    return items


def with_day(item: Item, day: str) -> Item:
    content = item.get("content")
    if isinstance(content, str):
        return {**item, "content": f"[{day}]\n{content}"}
    if isinstance(content, list):
        return {**item, "content": [{"type": "input_text", "text": f"[{day}]"}, *content]}
    return item


@dataclass(frozen=True)
class Request:
    """What one request carries besides the new message, all within the budget."""

    context: Context
    recalled: Recalled
    instructions: str
    # The budget's tokens the request leaves free: the room the memory tool's findings have.
    room: int
    # Saved memories that did not fit their share of the budget, left out of this request.
    left_out: int = 0

    @property
    def items(self) -> list[Item]:
        return dated_items(self.context)

    @property
    def tokens(self) -> int:
        """The estimated tokens of the history it carries: the summary, the newest turns, what was recalled."""
        return self.context.tokens + self.recalled.tokens

    @property
    def positions(self) -> frozenset[int]:
        """The stored messages it carries whole."""
        return frozenset(p for turn in self.context.turns for p in turn.positions) | self.recalled.positions


@dataclass(frozen=True)
class Usage:
    """Tokens of one turn's requests, as the server reported them; 0 when it did not."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class TurnResult:
    """What one turn gave: the reply, what was sent for it, and whether it could be kept."""

    reply: str
    # The history the request carried; the summary is brought up to date from it after the turn.
    context: Context
    usage: Usage = Usage()
    # The estimated tokens of history sent, and the budget they had to fit in.
    history_tokens: int = 0
    budget: int = 0
    # Set when the reply came but the store would not take it, after retries: the reply is still shown.
    not_saved: StoreError | None = None
    # Things the person should know once, such as a budget fitted to the server's context.
    notices: tuple[str, ...] = ()
    # The message the reply answers.
    text: str = ""


class TurnRunner:
    """Runs turns against one model for any user's memory."""

    def __init__(
        self,
        settings: Settings,
        model: Model | None = None,
        semantic: Semantic | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.settings = settings
        # The MCP servers' tools, where servers are configured (see ``toolbox``).
        self.toolbox = toolbox
        # Search by meaning too, where an embedding model is set (see ``semantic``).
        self.semantic = semantic
        self._client = None if model is not None else build_client(settings)
        self.agent: Agent[Any] = build_agent(settings, model, self._client)
        self._run_config = run_config(settings)
        self.estimator = TokenEstimator()
        # The history budget: the configured one, until the server says it holds less.
        self.budget = settings.context_tokens
        self.summarizer = Summarizer(self.agent, self._run_config, self.budget, self.estimator)
        # Offer the memory tool, until the server says it takes no tools.
        self.tools = settings.tools
        # How many saved memories each user had left out of requests, as last said.
        self._left_out: dict[str, int] = {}
        # What the noting pass after a turn changed, said with the user's next turn.
        self._noted: dict[str, list[str]] = {}
        self.noter = self.agent.clone(
            name="memchat-memories",
            instructions=saved.NOTE_INSTRUCTIONS,
            tools=[],
            model_settings=self.agent.model_settings.resolve(ModelSettings(max_tokens=200)),
        )

    async def run(
        self,
        memory: Memory,
        text: str,
        on_text: Callable[[str], None] | None = None,
        *,
        replacing: int | None = None,
        approve: Approver | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> TurnResult:
        """Answer ``text`` in the context of ``memory``; stream pieces to ``on_text`` if given.

        Raises whatever the model call raised, with nothing stored. Cancelling
        the task mid-reply stores nothing either. A reply that came but could
        not be stored is returned all the same, with the reason. When the
        server refuses the request for its length and says how much it holds,
        the budget is fitted to it and the turn is tried once more.

        With ``replacing`` (the position where the newest turn starts), that turn is
        left out of the request and replaced by this one in a single write (/retry, /edit).

        ``approve`` asks the person before an MCP tool that is not trusted runs; without it, only trusted ones run.
        ``attachments`` go with the message (see ``attachments``); the store keeps what the setting says of them.
        """
        notices: list[str] = []
        attached = list(attachments)
        keep = self.settings.keep_attachments
        user_item: Item = {"role": "user", "content": content(text, attached, sent=False, keep_text=keep)}
        sent_item: Item = {"role": "user", "content": content(text, attached, sent=True)}
        images = any(item.is_image for item in attached)
        attached_tokens = sum(IMAGE_TOKENS if item.is_image else self.estimator.tokens(item.text) for item in attached)
        own = await memory.instructions()
        keeps_facts = self._keeps_facts(memory)
        facts = await saved.read(memory) if keeps_facts else []
        if self.tools and self.toolbox is not None:
            await self.toolbox.start()
        while True:
            tools = self.offered(memory)
            built = await self.request_for(memory, text, own, replacing, facts, attached_tokens, tools)
            if built.left_out and self._left_out.get(memory.session_id) != built.left_out:
                # Said when it starts or changes, not every turn.
                self._left_out[memory.session_id] = built.left_out
                notices.append(
                    f"{built.left_out} of {len(facts)} saved memories did not fit a tenth of the context budget: "
                    "the least recently confirmed are left out of requests (/memories lists them all)"
                )
            # What other programs left broken in the history is mended here, as sent; the store keeps it as it is.
            request: list[Any] = repaired([*built.items, sent_item])
            searched = ToolContext(
                memory,
                self.semantic,
                self.estimator,
                built.room,
                set(built.positions),
                replacing or END,
                facts,
                approve=approve,
            )
            try:
                agent = self.agent.clone(instructions=built.instructions, tools=tools)
                result = await self._call(agent, request, on_text, searched)
                break
            except ModelBehaviorError as exc:
                if "no choices" in str(exc):  # a reply with no message at all, not streamed
                    raise EmptyReplyError(str(exc)) from None
                raise
            except openai.BadRequestError as exc:
                if images and "image" in str(exc).lower():
                    where = self.settings.base_url or "OpenAI"
                    raise MemchatError(
                        f"{where} did not take the image for model {self.settings.model!r}: nothing was sent or "
                        "saved; switch to a model that reads images (/model NAME), or attach text files only"
                    ) from None
                notice = self._adapt(exc) if len(notices) < 3 else None
                if notice is None:
                    raise
                notices.append(notice)
        new_items: list[Item] = [dict(item.to_input_item()) for item in result.new_items]
        if not any(item.get("role") == "assistant" or item.get("type") == "function_call" for item in new_items):
            raise EmptyReplyError("no message in the reply")
        # The reply is complete and on screen: a Ctrl-C now must not lose it, nor cut a write in half.
        items = [user_item, *new_items]
        write = asyncio.ensure_future(
            memory.add_items(items) if replacing is None else memory.replace_turn(replacing, items)
        )
        not_saved: StoreError | None = None
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await write
        except StoreError as exc:
            not_saved = exc
        if not_saved is None and searched.changes:
            # Written only now the turn is stored: a turn that failed saves nothing.
            try:
                start = await newest_start(memory)
                notices += await saved.change(memory, [replace(c, turn=start) for c in searched.changes])
            except MemchatError as exc:
                notices.append(f"the saved memories were not changed: {exc}")
        reported = result.context_wrapper.usage
        # The turn's usage adds up every request it made (a tool call makes two): the first one alone
        # is the request that was built here.
        first = result.raw_responses[0].usage.input_tokens if result.raw_responses else 0
        sent = len(built.instructions) + sum(item_chars(item) for item in request) + tools_chars(tools)
        if not images:
            # An image is counted by its size in pixels, not its characters: nothing to learn from it.
            self.estimator.calibrate(sent, len(request) + 1, first)
        return TurnResult(
            reply=str(result.final_output),
            context=built.context,
            usage=Usage(reported.input_tokens, reported.output_tokens),
            history_tokens=built.tokens,
            budget=self.budget,
            not_saved=not_saved,
            # What the noting pass saved after the previous turn is said with the first turn that completes.
            notices=(
                *self._noted.pop(memory.session_id, []),
                *notices,
                *searched.notices,
                *(self.toolbox.notices() if self.toolbox is not None else ()),
            ),
            text=text,
        )

    def _keeps_facts(self, memory: Memory) -> bool:
        return self.settings.saved_memories and isinstance(memory, SavedMemory)

    def offered(self, memory: Memory) -> list[Tool]:
        """The tools a request for ``memory`` offers the model: memchat's own and the MCP servers' (once started)."""
        if not self.tools:
            return list(self.agent.tools)
        offered = [*self.agent.tools, *MODEL_TOOLS, *(SAVED_TOOLS if self._keeps_facts(memory) else [])]
        if self.toolbox is not None:
            offered += self.toolbox.tools()
        return offered

    async def request_for(
        self,
        memory: Memory,
        text: str,
        own: str | None = None,
        replacing: int | None = None,
        facts: Sequence[saved.Fact] = (),
        attached_tokens: int = 0,
        tools: list[Tool] | None = None,
    ) -> Request:
        """What a request for ``text`` carries besides it: the history, and the instructions with the saved
        memories (``facts``) and what is recalled; ``attached_tokens`` of files go with the message, and
        the ``tools`` offered (by default ``offered``) are counted against the budget as the server counts them."""
        pinned, left_out = saved.pinned(facts, self.budget // saved.PINNED_SHARE, self.estimator)
        schemas = self.estimator.chars_tokens(tools_chars(self.offered(memory) if tools is None else tools))
        context, recalled, room = await self._history(memory, text, own, replacing, pinned, attached_tokens + schemas)
        instructions = instructions_with(self.settings.instructions, context.summary, own, recalled, pinned=pinned)
        return Request(context, recalled, instructions, room, left_out)

    async def _history(
        self,
        memory: Memory,
        text: str,
        own: str | None,
        replacing: int | None,
        pinned: str = "",
        sent_with: int = 0,
    ) -> tuple[Context, Recalled, int]:
        """The history to send, what recall found for ``text``, and the budget's tokens left, all within the budget.

        The instructions, the new message and the ``sent_with`` tokens beside them (attached files, the
        tools' schemas) count against the budget too. The newest turns take a sixth of it, and the
        tool's room a twelfth; recall gets the rest, and what it does not fill goes back to the newest
        turns, which then reach further back.
        """
        bare = instructions_with(self.settings.instructions, None, own, pinned=pinned)
        fixed = self.estimator.tokens(bare + text + HEADING) + 2 * MESSAGE_TOKENS + sent_with
        budget = max(0, self.budget - fixed)
        usable = budget - (budget // TOOL_SHARE if self.tools else 0)
        if not self.settings.recall:
            context = await build_context(memory, usable, self.estimator, before=replacing)
            return context, Recalled(), budget - context.tokens
        context = await build_context(
            memory, usable, self.estimator, before=replacing, turn_room=usable // WINDOW_SHARE
        )
        older_than = context.turns[0].start if context.turns else (replacing or END)
        room = usable - context.tokens
        recalled = await recall(memory, text, room, self.estimator, older_than=older_than, semantic=self.semantic)
        if recalled.tokens < room and (context.overflow or context.capped):
            # What recall did not fill goes to the newest turns: they may reach further back. The budget
            # stays the same, so whether to fold is judged against the whole room, whatever recall took.
            context = await build_context(
                memory, usable, self.estimator, before=replacing, turn_room=context.room - recalled.tokens
            )
            if context.turns:
                recalled = recalled.older_than(context.turns[0].start, self.estimator)
        return context, recalled, budget - context.tokens - recalled.tokens

    async def _call(
        self, agent: Agent[Any], request: list[Any], on_text: Callable[[str], None] | None, searched: ToolContext
    ) -> RunResultBase:
        if on_text is None:
            return await Runner.run(agent, request, context=searched, run_config=self._run_config)
        streamed = Runner.run_streamed(agent, request, context=searched, run_config=self._run_config)
        try:
            async for event in streamed.stream_events():
                if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
                    on_text(event.data.delta)
        except BaseException:
            streamed.cancel()
            raise
        return streamed

    def _adapt(self, exc: openai.BadRequestError) -> str | None:
        """Change what the next request asks for so the server can take it; a notice saying so, or None."""
        size = server_context_size(exc) if is_context_overflow(exc) else None
        # Half the server's context for history: the rest holds the instructions, the summary and the reply.
        fitted = max(MIN_CONTEXT_TOKENS, size // 2) if size else None
        if fitted is not None and fitted < self.budget:
            self.budget = fitted
            self.summarizer.fit(fitted)
            return (
                f"{self.settings.base_url or 'the server'} holds {size} tokens of context for model "
                f"{self.settings.model!r}: memchat now sends at most {fitted} tokens of history to it "
                f"(MEMCHAT_CONTEXT_TOKENS={fitted} starts with that)"
            )
        if self.tools and "tool" in str(exc).lower():
            # Many local servers take no tools (llama-server without --jinja): recall does without the tool.
            self.tools = False
            return (
                f"{self.settings.base_url or 'the server'} does not take tools: carrying on without "
                "the search_memory tool; older exchanges still come by recall (MEMCHAT_TOOLS=off stops offering it)"
            )
        if "stream_options" in str(exc) and self.agent.model_settings.include_usage:
            # A server that does not know the usage option: do without it (the budget then learns from fewer counts).
            self.agent = self.agent.clone(
                model_settings=dataclasses.replace(self.agent.model_settings, include_usage=None)
            )
            return f"{self.settings.base_url or 'the server'} does not report token usage in streams; carrying on without it"
        return None

    async def aclose(self) -> None:
        """Close the connections to the model server."""
        if self._client is not None:
            await self._client.close()

    async def note_memories(self, memory: Memory, text: str, reply: str) -> list[str]:
        """Where the model takes no tools, ask it in a request of its own what of this exchange to keep.

        The lines that say what changed are also said with the user's next turn. Raises what the model raised.
        """
        wanted = self.settings.saved_memories and self.settings.noted_memories
        if not wanted or self.tools or not isinstance(memory, SavedMemory):
            return []
        facts = await saved.read(memory)
        result = await Runner.run(self.noter, saved.note_request(facts, text, reply), run_config=self._run_config)
        start = await newest_start(memory)
        changes = [replace(c, turn=start) for c in saved.noted(str(result.final_output), facts)]
        said = await saved.change(memory, changes)
        if said:
            self._noted.setdefault(memory.session_id, []).extend(said)
        return said

    async def fold_if_needed(self, memory: Memory, sent: Context) -> bool:
        """Fold turns the request that carried ``sent`` had to leave out into the summary; True if it did."""
        if not sent.overflow:
            return False
        return await self.summarizer.fold(memory, sent.room)


async def newest_start(memory: Memory) -> int:
    """Where the newest turn starts: the turn just stored, that a saved memory came from."""
    async for turn in memory.turns_backward(0):
        return turn.start
    return 0


def tools_chars(tools: list[Any]) -> int:
    """The characters a server reads of the tools offered: each one's name, description and parameters.

    Not their JSON: OpenAI renders tools as a compact declaration, about 12 tokens of syntax for them
    all, 10 a tool and 3 a parameter around their words (its cookbook's count); other servers fill a
    chat template much like it.
    """
    offered = [tool for tool in tools if isinstance(tool, FunctionTool)]
    total = TOOLS_FRAME_CHARS if offered else 0
    for tool in offered:
        total += TOOL_FRAME_CHARS + len(tool.name) + len(tool.description)
        for name, spec in tool.params_json_schema.get("properties", {}).items():
            total += PARAMETER_FRAME_CHARS + len(name) + parameter_chars(spec)
    return total


def parameter_chars(spec: dict[str, Any]) -> int:
    """A parameter's type and description, or the whole of a nested one (an MCP tool's objects and lists)."""
    if any(key in spec for key in ("properties", "items", "anyOf", "oneOf", "allOf", "$ref")):
        return len(json.dumps(spec))
    return (
        len(str(spec.get("type", ""))) + len(str(spec.get("description", ""))) + len(json.dumps(spec.get("enum", "")))
    )
