"""Recall: the older messages that bear on the new one, brought back into the request.

A request carries the summary and the newest turns; what the summary dropped would
be gone for the model. So before each turn the user's whole history is searched
with the new message, by words (see ``search``) and, where embeddings are on, by
meaning (see ``semantic``), the two rankings fused. Each match comes back as an
excerpt: the matching message with the messages beside it in its exchange (the
question it answers, the answer it got), dated. Excerpts are packed best first
into the room the request has left, so a question that joins several parts of
the past gets several, and are shown oldest first in the instructions, so any
model can use them, tools or not.

``/search`` and ``/forget`` work on whole exchanges instead (``matching``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from memchat.context.budget import MESSAGE_TOKENS, TokenEstimator, clip, spoken_day
from memchat.items import Item, describe
from memchat.stores.base import END
from memchat.stores.protocol import Memory, Turn
from memchat.stores.search import Hit, fuse, scaled

if TYPE_CHECKING:
    from memchat.context.semantic import Semantic

# Matches looked at: one per this many tokens of room (a short excerpt's size), within these bounds.
TOKENS_PER_CANDIDATE = 25
MIN_CANDIDATES, MAX_CANDIDATES = 12, 300
# The matching message is cut past this many tokens (what it is about is in its first lines), the
# messages beside it past fewer: they give who asked what, the match gives the answer. A reply of a
# few sentences still comes whole: cut at 80, the end of a long reply beside a match was lost, and on
# LoCoMo with it the evidence of 4 questions in 383 at 8,000 tokens by words.
MATCH_TOKENS, NEIGHBOUR_TOKENS = 300, 150
# What the messages beside a match are worth, against the match: those of the best match come
# before every match scoring less than half as well. Whole exchanges for every match
# crowded out matches ranked 9 to 16 at 2,000 tokens; matches alone lost the answer beside them.
NEIGHBOUR_WORTH = 0.5
# The message after a match that asks something is its answer: worth more than the neighbours of
# other matches. After a match that asks nothing, the next message mostly reacts to it and the one
# before holds what it replies to. On LoCoMo, of the evidence next to a match and not itself one, 49
# followed a match that asked, 15 one that did not (28% of messages ask something).
ANSWER_WORTH, AFTER_WORTH = 0.7, 0.3
# How far a ranking by meaning is trusted against one by words when the two are fused: a small
# embedding model ranks conversation worse than the words do (on LoCoMo, all-MiniLM-L6-v2 alone
# found the evidence for 33% of questions where BM25 found 56%), yet it finds what shares no word.
# Of scaled scores summed 0.6 to 0.4 (see ``fuse``), 0.3 and 0.5 kept fewer evidence turns.
WORDS_WEIGHT, MEANING_WEIGHT = 0.6, 0.4

HEADING = (
    "Earlier messages with this user, recalled from your memory because they may bear on the new message "
    "(oldest first, under the day they were said; '…' marks a gap; the conversation that follows is more recent):"
)


@dataclass(frozen=True)
class Line:
    """One recalled message, as the model reads it."""

    position: int
    speaker: str
    text: str
    # False when the message was cut to fit.
    whole: bool


@dataclass(frozen=True)
class Excerpt:
    """Messages of one exchange recalled together, with when they were said ('' where the store keeps no time)."""

    stored_at: str
    lines: tuple[Line, ...]

    @property
    def end(self) -> int:
        return self.lines[-1].position

    def tokens(self, estimator: TokenEstimator) -> int:
        # Its lines, and the line above it: a day or a gap.
        return sum(_line_tokens(estimator, line) for line in self.lines) + MESSAGE_TOKENS


@dataclass(frozen=True)
class Recalled:
    """Excerpts chosen for one request, oldest first, and the tokens they take."""

    excerpts: tuple[Excerpt, ...] = ()
    tokens: int = 0

    @property
    def positions(self) -> frozenset[int]:
        """The messages it carries whole."""
        return frozenset(line.position for excerpt in self.excerpts for line in excerpt.lines if line.whole)

    @property
    def text(self) -> str:
        """How they are shown to the model."""
        return HEADING + "\n" + shown(self.excerpts)

    def older_than(self, position: int, estimator: TokenEstimator) -> Recalled:
        """Only the excerpts that end before ``position`` (a wider window now holds the rest)."""
        kept = tuple(excerpt for excerpt in self.excerpts if excerpt.end < position)
        return Recalled(kept, sum(excerpt.tokens(estimator) for excerpt in kept))


def shown(excerpts: tuple[Excerpt, ...]) -> str:
    lines: list[str] = []
    day = None
    for excerpt in excerpts:
        heading = spoken_day(excerpt.stored_at) if excerpt.stored_at else "date unknown"
        if heading != day:
            lines.append(f"[{heading}]")
            day = heading
        elif lines:
            lines.append("…")
        lines += [f"{line.speaker}: {line.text}" for line in excerpt.lines]
    return "\n".join(lines)


async def ranked(memory: Memory, query: str, wanted: int, before: int, semantic: Semantic | None = None) -> list[Hit]:
    """The stored messages before ``before`` that best match ``query``, best first: by words, and by meaning."""
    by_words = await memory.search(query, wanted, before=before)
    if semantic is None:
        return by_words
    # Meaning is looked for near the question and the best match by words together: what that match
    # is about, in other words than the question's. On LoCoMo, 78.6% at 2,000 tokens and 91.9% at
    # 8,000 this way, 77.5% and 91.4% by the question alone; steered toward the best matches by
    # meaning instead, fewer evidence turns ranked high (it only finds more of what it found).
    from memchat.context.semantic import said_at

    best = (await said_at(memory, [by_words[0].position])).get(by_words[0].position) if by_words else None
    by_meaning = await semantic.hits(memory, query, wanted, before, toward=best)
    return fuse([by_words, by_meaning], wanted * 2, (WORDS_WEIGHT, MEANING_WEIGHT))


async def recall(
    memory: Memory,
    query: str,
    room: int,
    estimator: TokenEstimator,
    *,
    older_than: int = END,
    semantic: Semantic | None = None,
    leave_out: frozenset[int] = frozenset(),
) -> Recalled:
    """The excerpts that best match ``query``, stored before ``older_than``, within ``room`` tokens.

    Each match comes with the message before and after it; messages at ``leave_out``
    positions (already in the request) are not brought again.
    """
    if room <= MESSAGE_TOKENS:  # not even the line above an excerpt fits
        return Recalled()
    # What the request holds already is among the best matches: look past it.
    wanted = max(MIN_CANDIDATES, min(MAX_CANDIDATES, room // TOKENS_PER_CANDIDATE)) + len(leave_out)
    hits = [hit for hit in await ranked(memory, query, wanted, older_than, semantic) if hit.position not in leave_out]
    async with memory.reading():
        stored = {position: (at, item) for position, at, item in await memory.around([hit.position for hit in hits])}
    order = sorted(stored)
    index = {position: n for n, position in enumerate(order)}
    matched = {hit.position for hit in hits}

    def joined(n: int) -> bool:
        # Whether the messages at order[n] and order[n + 1] follow each other in the memory: known only
        # beside a match, whose neighbours the store gave; two neighbours may have a gap between them.
        return n + 1 < len(order) and (order[n] in matched or order[n + 1] in matched)

    # A match is worth its score, scaled to 1 for the best and 0 for the worst; the messages beside it
    # a share of that, so they come before weaker matches but after stronger ones. By place alone
    # (1 / rank) a third match as good as the first was worth a third of it, less than the first's
    # neighbours: on LoCoMo at 2,000 tokens 75.7% with meaning against 77.5% by scores.
    worth: dict[int, float] = {}
    scores = scaled(hits)
    for hit in hits:
        if hit.position not in index:
            continue
        n = index[hit.position]
        after = ANSWER_WORTH if "?" in describe(stored[hit.position][1])[1] else AFTER_WORTH
        for m, weight in ((n, 1.0), (n - 1, NEIGHBOUR_WORTH), (n + 1, after)):
            if 0 <= m < len(order):
                worth[order[m]] = max(worth.get(order[m], 0.0), weight * scores[hit.position])
    lines: dict[int, Line] = {}
    chosen: set[int] = set()  # by index in ``order``
    used = 0
    for position in sorted(worth, key=lambda position: -worth[position]):
        if position in leave_out or position >= older_than:
            continue
        line = _line(position, stored[position][1], matched=position in matched)
        if line is None:
            continue
        # An excerpt has a line above it (a day or a gap): a line next to none chosen opens one,
        # a line between two joins them into one.
        n = index[position]
        joins = (n - 1 in chosen and joined(n - 1)) + (n + 1 in chosen and joined(n))
        cost = _line_tokens(estimator, line) + MESSAGE_TOKENS * (1 - joins)
        if used + cost > room:
            continue
        lines[position] = line
        chosen.add(n)
        used += cost
    excerpts: list[Excerpt] = []
    run: list[Line] = []
    for position in sorted(lines):
        if run and not (index[position] == index[run[-1].position] + 1 and joined(index[run[-1].position])):
            excerpts.append(Excerpt(stored[run[0].position][0], tuple(run)))
            run = []
        run.append(lines[position])
    if run:
        excerpts.append(Excerpt(stored[run[0].position][0], tuple(run)))
    return Recalled(tuple(excerpts), sum(excerpt.tokens(estimator) for excerpt in excerpts))


def _line(position: int, item: Item, *, matched: bool) -> Line | None:
    """A message as recalled: the match cut past ``MATCH_TOKENS``, a neighbour past ``NEIGHBOUR_TOKENS``.

    What a tool returned counts as a message (an MCP server's result may be the answer), except what
    ``search_memory`` returned: older messages again, which recall brings by themselves.
    """
    if item.get("role") in ("user", "assistant"):
        speaker, text = describe(item)
    elif item.get("type") == "function_call_output" and not str(item.get("output", "")).startswith(HEADING):
        speaker, text = "tool", str(item.get("output", ""))
    else:
        return None
    if not text.strip():
        return None
    cut = clip(text, (MATCH_TOKENS if matched else NEIGHBOUR_TOKENS) * 4)
    return Line(position, "user" if speaker == "you" else speaker, cut, cut == text)


def _line_tokens(estimator: TokenEstimator, line: Line) -> int:
    return estimator.tokens(f"{line.speaker}: {line.text}")


async def exchanges(
    memory: Memory, query: str, hits: int, before: int | None = None, semantic: Semantic | None = None
) -> list[tuple[str, Turn]]:
    """The whole exchanges holding the best ``hits`` matches for ``query``, best first, with when each was stored."""
    found: dict[int, tuple[str, Turn]] = {}
    best = await ranked(memory, query, hits, END if before is None else before, semantic)
    async with memory.reading():
        for hit in best:
            turn = await memory.turn_at(hit.position)
            if turn is not None and turn.start not in found:
                found[turn.start] = (hit.stored_at, turn)
    return list(found.values())


async def matching(memory: Memory, query: str, most: int, semantic: Semantic | None = None) -> list[tuple[str, Turn]]:
    """At most ``most`` whole exchanges that match ``query``, best first, each with the minute it was stored."""
    found = await exchanges(memory, query, most * 2, semantic=semantic)
    return [(stored_at[:16], turn) for stored_at, turn in found[:most]]
