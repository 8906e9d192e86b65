"""Folding turns that no longer fit the budget into a running per-user summary.

Written by the same model through a plain chat request (no provider-specific
compaction), so it works with any OpenAI-compatible server. Folding happens
after a turn is stored: if it fails, nothing is lost and a later turn retries.
"""

from __future__ import annotations

import re

from agents import Agent, ModelSettings, RunConfig, Runner

from memchat.context.budget import TokenEstimator, clip, opening_days, turn_items
from memchat.items import describe
from memchat.stores.protocol import Memory, Summary, Turn

SUMMARY_INSTRUCTIONS = (
    "Update the memory summary of a chat with one user. Keep what the user told about "
    "themselves (name, facts, preferences), what was decided or promised, and open "
    "questions; drop small talk. Say when things happened as dates (the conversation is marked with "
    "its days), not as 'yesterday'. Write plain sentences in the third person, at most "
    "{words} words. Reply with the updated summary only."
)
SENTENCE_END = re.compile(r"[.!?][)\"']?(?=\s)")


def transcript(turns: list[Turn], days: dict[int, str] | None = None) -> str:
    """The turns as the summarizer reads them, each new day under its date."""
    lines = []
    for turn, day in zip(turns, opening_days(turns, days or {}), strict=True):
        if day:
            lines.append(f"[{day}]")
        for item in turn_items(turn):
            speaker, text = describe(item)
            lines.append(f"{'user' if speaker == 'you' else speaker}: {text}")
    return "\n".join(lines)


def cut_at_sentence(text: str, chars: int) -> str:
    """``text`` cut to at most ``chars`` characters after its last whole sentence (a word, where none ends)."""
    if len(text) <= chars:
        return text
    ends = [match.end() for match in SENTENCE_END.finditer(text + " ") if match.end() <= chars]
    if ends:
        return text[: ends[-1]]
    return clip(text, chars).removesuffix(" …")


class Summarizer:
    """Keeps one user's unsummarized history short enough to fit the budget."""

    def __init__(self, agent: Agent[None], run_config: RunConfig, budget: int, estimator: TokenEstimator) -> None:
        self.estimator = estimator
        self.run_config = run_config
        self._base = agent
        self.fit(budget)

    def fit(self, budget: int) -> None:
        """Work to a new context budget (the server turned out to hold less than configured)."""
        self.budget = budget
        # A summary gets at most a quarter of the budget, so recent turns keep most of it.
        self.max_summary_tokens = max(50, budget // 4)
        words = int(self.max_summary_tokens * 0.6)
        self.agent = self._base.clone(
            name="memchat-summarizer",
            instructions=SUMMARY_INSTRUCTIONS.format(words=words),
            # Room for the words asked for, and a hard stop for a model that ignores the limit.
            model_settings=self._base.model_settings.resolve(ModelSettings(max_tokens=self.max_summary_tokens * 2)),
        )

    async def fold(self, memory: Memory, room: int | None = None) -> bool:
        """Fold the oldest unsummarized turns into the summary; True if it changed.

        Folds down to half the ``room`` the newest turns have in a request (by default
        the budget), so a summary call happens once every few turns rather than on every turn.
        """
        summary = await memory.summary()
        after = summary.through if summary else 0
        keep_start = await self._keep_from(memory, after, (self.budget if room is None else room) // 2)
        if keep_start is None:
            return False
        chunk: list[Turn] = []
        room = self.budget
        async for turn in memory.turns_forward(after, keep_start):
            cost = self.estimator.item_tokens(turn_items(turn))
            if chunk and cost > room:
                break
            chunk.append(turn)
            room -= cost
        if not chunk:
            return False
        previous = summary.text if summary else "(none yet)"
        days = await memory.days([turn.start for turn in chunk])
        request = f"Summary so far:\n{previous}\n\nNew conversation to fold in:\n{transcript(chunk, days)}"
        result = await Runner.run(self.agent, request, run_config=self.run_config)
        text = self._bounded(str(result.final_output).strip())
        await memory.save_summary(Summary(text, chunk[-1].end))
        return True

    async def _keep_from(self, memory: Memory, after: int, keep_tokens: int) -> int | None:
        """Where the newest turns worth ``keep_tokens`` start, if older unsummarized turns exist."""
        kept = 0
        start: int | None = None
        async for turn in memory.turns_backward(after):
            kept += self.estimator.item_tokens(turn_items(turn))
            if kept > keep_tokens and start is not None:
                return start
            start = turn.start
        return None

    def _bounded(self, text: str) -> str:
        """Cut a summary that ignored its length limit, so the budget holds whatever the model does.

        At its last whole sentence, with no mark: a cut word or an ellipsis would be read, and
        copied, by every later fold.
        """
        return cut_at_sentence(text, int(self.max_summary_tokens * self.estimator.chars_per_token))
