"""One chat turn, stored whole or not at all; shared by every front end.

The SDK, given a session, writes the user's message before the model answers,
so a failed or interrupted call leaves a lone user message and every later
request carries two user messages in a row. Here the history is read, the
model is called with history plus the new message, and only a finished reply
is written, together with its message, in one transaction.

The history sent is bounded: the running summary plus the newest whole turns
that fit the token budget (see ``budget``); turns that fall out are folded into
the summary after the reply (see ``summary``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents import Agent, Model, Runner
from agents.result import RunResultBase
from openai.types.responses import ResponseTextDeltaEvent

from config import Settings

from .budget import Context, TokenEstimator, build_context
from .errors import StoreError
from .items import Item
from .memory import Memory, Summary
from .model import build_agent, build_client, run_config
from .summary import Summarizer


def instructions_with(base: str, summary: Summary | None) -> str:
    """The system instructions, with what is remembered of older turns."""
    if summary is None:
        return base
    return f"{base}\n\nWhat you remember from earlier conversations with this user:\n{summary.text}"


@dataclass(frozen=True)
class TurnResult:
    """What one turn gave: the reply, and whether it could be kept."""

    reply: str
    # Set when the reply came but the store would not take it, after retries: the reply is still shown.
    not_saved: StoreError | None = None


class TurnRunner:
    """Runs turns against one model for any user's memory."""

    def __init__(self, settings: Settings, model: Model | None = None) -> None:
        self.settings = settings
        self._client = None if model is not None else build_client(settings)
        self.agent: Agent[None] = build_agent(settings, model, self._client)
        self._run_config = run_config(settings)
        self.estimator = TokenEstimator()
        self.summarizer = Summarizer(self.agent, self._run_config, settings.context_tokens, self.estimator)
        # The history of the last request: what was sent, for tests and the benchmark.
        self.last_context: Context | None = None

    async def run(self, memory: Memory, text: str, on_text: Callable[[str], None] | None = None) -> TurnResult:
        """Answer ``text`` in the context of ``memory``; stream pieces to ``on_text`` if given.

        Raises whatever the model call raised, with nothing stored. Cancelling
        the task mid-reply stores nothing either. A reply that came but could
        not be stored is returned all the same, with the reason.
        """
        context = await build_context(memory, self.settings.context_tokens, self.estimator)
        self.last_context = context
        instructions = instructions_with(self.settings.instructions, context.summary)
        agent = self.agent.clone(instructions=instructions)
        user_item: Item = {"role": "user", "content": text}
        request: list[Any] = [*context.items, user_item]
        result: RunResultBase
        if on_text is None:
            result = await Runner.run(agent, request, run_config=self._run_config)
        else:
            streamed = Runner.run_streamed(agent, request, run_config=self._run_config)
            try:
                async for event in streamed.stream_events():
                    if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
                        on_text(event.data.delta)
            except BaseException:
                streamed.cancel()
                raise
            result = streamed
        new_items: list[Item] = [dict(item.to_input_item()) for item in result.new_items]
        # The reply is complete and on screen: a Ctrl-C now must not lose it, nor cut a write in half.
        write = asyncio.ensure_future(memory.add_items([user_item, *new_items]))
        not_saved: StoreError | None = None
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await write
        except StoreError as exc:
            not_saved = exc
        self.estimator.calibrate(
            len(instructions) + len(json.dumps(request, ensure_ascii=False)),
            result.context_wrapper.usage.input_tokens,
        )
        return TurnResult(str(result.final_output), not_saved)

    async def aclose(self) -> None:
        """Close the connections to the model server."""
        if self._client is not None:
            await self._client.close()

    async def fold_if_needed(self, memory: Memory) -> bool:
        """Fold turns the last request had to leave out into the summary; True if it did."""
        if self.last_context is None or not self.last_context.overflow:
            return False
        return await self.summarizer.fold(memory)
