"""Choosing what history a request carries: the summary plus the newest whole turns that fit.

Tokens are estimated from the characters a server reads (a message's text, not
the JSON it is stored as), with no tokenizer to download: the estimate starts
cautious and is calibrated by the token count the server reports for the first
request of each turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from memchat.items import Item, as_history, describe
from memchat.stores.protocol import Memory, Summary, Turn

# Cautious until the server reports real counts: fewer characters a token means more tokens counted.
INITIAL_CHARS_PER_TOKEN = 3.0
MIN_CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN = 1.0, 6.0
# What the summary is sent under, in the instructions.
SUMMARY_HEADING = "What you remember from earlier conversations with this user:\n"
# What a server adds around each message (its role and separators), in tokens.
MESSAGE_TOKENS = 4
MESSAGE_KINDS = ("message", "function_call", "function_call_output")


def item_chars(item: Item) -> int:
    """The characters of ``item`` a model reads: the text of a message or a tool step, else its JSON."""
    if "role" in item or item.get("type") in MESSAGE_KINDS:
        return len(describe(item)[1])
    return len(json.dumps(item, ensure_ascii=False))


class TokenEstimator:
    """Characters-to-tokens, learned from the server's usage reports."""

    def __init__(self, chars_per_token: float = INITIAL_CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token

    def tokens(self, text: str) -> int:
        return self.chars_tokens(len(text))

    def chars_tokens(self, chars: int) -> int:
        return int(chars / self.chars_per_token) + 1

    def item_tokens(self, items: list[Item]) -> int:
        return sum(self.chars_tokens(item_chars(item)) + MESSAGE_TOKENS for item in items)

    def calibrate(self, chars_sent: int, messages: int, tokens_reported: int) -> None:
        """Move toward the ratio the server just reported for one request, staying cautious (never above it).

        ``chars_sent`` are the characters it read in ``messages`` messages (see ``item_chars``).
        """
        text_tokens = tokens_reported - MESSAGE_TOKENS * messages
        if text_tokens <= 0 or chars_sent <= 0:
            return
        seen = chars_sent / text_tokens
        # Half way each time, but drop at once when the estimate was too optimistic.
        blended = min(seen, (self.chars_per_token + seen) / 2)
        self.chars_per_token = max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN, blended))


def clip(text: str, chars: int) -> str:
    """``text`` cut to at most ``chars`` characters at a word's end, with "…" where it was cut."""
    if len(text) <= chars:
        return text
    cut = text[: max(0, chars - 2)]
    space = cut.rfind(" ")
    return (cut[:space] if space > chars // 2 else cut).rstrip() + " …"


def spoken_day(stored_at: str) -> str:
    """'2023-05-08 13:56:00' as 'Monday 8 May 2023', the way a model reasons about dates best."""
    try:
        moment = datetime.strptime(stored_at[:10], "%Y-%m-%d")
    except ValueError:
        return stored_at
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def opening_days(turns: list[Turn], days: dict[int, str]) -> list[str]:
    """For each turn, the day it was said (see ``spoken_day``) if it is the first of that day, else ''."""
    opening = []
    last = ""
    for turn in turns:
        day = days.get(turn.start, "")[:10]
        opening.append(spoken_day(day) if day and day != last else "")
        last = day or last
    return opening


def turn_items(turn: Turn) -> list[Item]:
    """What a request carries of a stored turn (see ``items.as_history``)."""
    return as_history(turn.items)


@dataclass(frozen=True)
class Context:
    """The history one request carries."""

    summary: Summary | None
    turns: list[Turn]
    # True when the turns no summary holds are more than the whole room could carry.
    overflow: bool
    # The tokens the turns had to fit in (the budget given, less the summary).
    room: int = 0
    # The estimated tokens of the summary and the turns together.
    tokens: int = 0
    # When each turn was said, by its start, where the store keeps it ('YYYY-MM-DD HH:MM:SS').
    days: dict[int, str] = field(default_factory=dict)
    # True when older turns were left out for the share the turns were given (``turn_room``).
    capped: bool = False

    @property
    def items(self) -> list[Item]:
        return [item for turn in self.turns for item in turn_items(turn)]


async def build_context(
    memory: Memory, budget: int, estimator: TokenEstimator, *, before: int | None = None, turn_room: int | None = None
) -> Context:
    """The summary and the newest whole turns (stored before position ``before``, if given) that fit ``budget``.

    With ``turn_room``, the turns take at most that many tokens (the rest of the budget is left to recall).
    """
    async with memory.reading():
        return await _newest_that_fit(memory, budget, estimator, before, turn_room)


async def _newest_that_fit(
    memory: Memory, budget: int, estimator: TokenEstimator, before: int | None, turn_room: int | None
) -> Context:
    summary = await memory.summary()
    summary_tokens = estimator.tokens(SUMMARY_HEADING + summary.text) if summary else 0
    room = budget - summary_tokens
    cap = room if turn_room is None else min(room, turn_room)
    turns: list[Turn] = []
    costs: list[int] = []
    used = unsummarized = 0
    full = overflow = False
    after = summary.through if summary else 0
    async for turn in memory.turns_backward(after) if before is None else memory.turns_backward(after, before):
        cost = estimator.item_tokens(turn_items(turn))
        unsummarized += cost
        if unsummarized > room:
            # More than the whole room holds is in no summary: time to fold (see ``summary``).
            overflow = True
            break
        if not full and used + cost <= cap:
            used += cost
            costs.append(cost)
            turns.append(turn)
        else:
            # The newest turns' share is full: read on only to learn whether the rest overflows.
            full = True
    turns.reverse()
    costs.reverse()
    days = await memory.days([turn.start for turn in turns]) if turns else {}
    # Each day's first message is sent with the day before it: the oldest turns make room for those lines.
    while turns and used + day_tokens(turns, days, estimator) > cap:
        turns.pop(0)
        used -= costs.pop(0)
        full = True
    used += day_tokens(turns, days, estimator)
    return Context(summary, turns, overflow, room, summary_tokens + used, days, full)


def day_tokens(turns: list[Turn], days: dict[int, str], estimator: TokenEstimator) -> int:
    """The tokens of the day lines the turns are sent with (see ``opening_days``)."""
    return sum(estimator.tokens(f"[{day}]\n") for day in opening_days(turns, days) if day)
