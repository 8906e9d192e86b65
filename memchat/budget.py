"""Choosing what history a request carries: the summary plus the newest whole turns that fit.

Tokens are estimated from characters, with no tokenizer to download: the
estimate starts cautious and is calibrated by the token counts the server
reports for each request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .items import Item
from .memory import Memory, Summary, Turn

# Cautious until the server reports real counts: fewer characters a token means more tokens counted.
INITIAL_CHARS_PER_TOKEN = 3.0
MIN_CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN = 1.0, 6.0


class TokenEstimator:
    """Characters-to-tokens, learned from the server's usage reports."""

    def __init__(self, chars_per_token: float = INITIAL_CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token

    def tokens(self, text: str) -> int:
        return int(len(text) / self.chars_per_token) + 1

    def item_tokens(self, items: list[Item]) -> int:
        return sum(self.tokens(json.dumps(item, ensure_ascii=False)) for item in items)

    def calibrate(self, chars_sent: int, tokens_reported: int) -> None:
        """Move toward the ratio the server just reported, staying cautious (never above it)."""
        if tokens_reported <= 0 or chars_sent <= 0:
            return
        seen = chars_sent / tokens_reported
        # Half way each time, but drop at once when the estimate was too optimistic.
        blended = min(seen, (self.chars_per_token + seen) / 2)
        self.chars_per_token = max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN, blended))


@dataclass(frozen=True)
class Context:
    """The history one request carries."""

    summary: Summary | None
    turns: list[Turn]
    # True when older turns, not yet in the summary, were left out for lack of room.
    overflow: bool
    # The tokens the turns had to fit in (the budget given, less the summary).
    room: int = 0

    @property
    def items(self) -> list[Item]:
        return [item for turn in self.turns for item in turn.items]


async def build_context(
    memory: Memory, budget: int, estimator: TokenEstimator, *, before: int | None = None
) -> Context:
    """The summary and the newest whole turns (stored before position ``before``, if given) that fit ``budget``."""
    async with memory.reading():
        return await _newest_that_fit(memory, budget, estimator, before)


async def _newest_that_fit(memory: Memory, budget: int, estimator: TokenEstimator, before: int | None) -> Context:
    summary = await memory.summary()
    remaining = budget - (estimator.tokens(summary.text) if summary else 0)
    turns: list[Turn] = []
    overflow = False
    after = summary.through if summary else 0
    async for turn in memory.turns_backward(after) if before is None else memory.turns_backward(after, before):
        cost = estimator.item_tokens(turn.items)
        if cost > remaining:
            overflow = True
            break
        remaining -= cost
        turns.append(turn)
    turns.reverse()
    return Context(summary, turns, overflow, budget - (estimator.tokens(summary.text) if summary else 0))
