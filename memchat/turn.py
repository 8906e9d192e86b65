"""One chat turn, stored whole or not at all; shared by every front end.

The SDK, given a session, writes the user's message before the model answers,
so a failed or interrupted call leaves a lone user message and every later
request carries two user messages in a row. Here the history is read, the
model is called with history plus the new message, and only a finished reply
is written, together with its message, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents import Agent, Model, Runner
from agents.result import RunResultBase
from openai.types.responses import ResponseTextDeltaEvent

from config import Settings

from .items import Item
from .memory import Memory
from .model import build_agent, run_config


class TurnRunner:
    """Runs turns against one model for any user's memory."""

    def __init__(self, settings: Settings, model: Model | None = None) -> None:
        self.settings = settings
        self.agent: Agent[None] = build_agent(settings, model)
        self._run_config = run_config(settings)

    async def run(self, memory: Memory, text: str, on_text: Callable[[str], None] | None = None) -> str:
        """Answer ``text`` in the context of ``memory``; stream pieces to ``on_text`` if given.

        Raises whatever the model call raised, with nothing stored. Cancelling
        the task mid-reply stores nothing either.
        """
        user_item: Item = {"role": "user", "content": text}
        request: list[Any] = [*await memory.get_items(), user_item]
        result: RunResultBase
        if on_text is None:
            result = await Runner.run(self.agent, request, run_config=self._run_config)
        else:
            streamed = Runner.run_streamed(self.agent, request, run_config=self._run_config)
            try:
                async for event in streamed.stream_events():
                    if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
                        on_text(event.data.delta)
            except BaseException:
                streamed.cancel()
                raise
            result = streamed
        new_items: list[Item] = [dict(item.to_input_item()) for item in result.new_items]
        await memory.add_items([user_item, *new_items])
        return str(result.final_output)
