"""Recall: older exchanges that match the new message, brought back into the request.

A request carries the summary and the newest turns that fit the budget; what
the summary dropped would be gone for the model. So before each turn the
user's whole history is searched with the new message (see ``search``), and
the best-matching older exchanges that are not already in the request come
with it: whole exchanges, dated, within a share of the budget, marked as
recalled memory in the instructions, so any model can use them, tools or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .budget import TokenEstimator
from .items import describe
from .memory import Memory, Turn
from .search import fuse

if TYPE_CHECKING:
    from .semantic import Semantic

# The share of the budget recalled exchanges may take, and how many matches are looked at.
RECALL_SHARE = 4
RECALL_HITS = 12


@dataclass(frozen=True)
class Recalled:
    """Older exchanges chosen for one request, oldest first, each with the day it was stored."""

    turns: tuple[tuple[str, Turn], ...] = ()
    tokens: int = 0

    @property
    def text(self) -> str:
        """How they are shown to the model."""
        return (
            "Earlier exchanges with this user, recalled from your memory because they match the new message "
            "(oldest first, with the day they happened; the conversation that follows is more recent):\n"
            + dated(list(self.turns))
        )


def dated(exchanges: list[tuple[str, Turn]]) -> str:
    """Exchanges as the model reads them: each under the day it happened."""
    lines = []
    for day, turn in exchanges:
        lines.append(f"[{day or 'date unknown'}]")
        for item in turn.items:
            speaker, text = describe(item)
            if text:
                lines.append(f"{'user' if speaker == 'you' else speaker}: {text}")
    return "\n".join(lines)


async def exchanges(
    memory: Memory, query: str, hits: int, before: int | None = None, semantic: Semantic | None = None
) -> list[tuple[str, Turn]]:
    """The whole exchanges holding the best ``hits`` matches for ``query``, best first, with when each was stored.

    Matches are by words, and with ``semantic`` by meaning too, the two rankings fused.
    """
    ranked = await memory.search(query, hits, before=before)
    if semantic is not None:
        ranked = fuse([ranked, await semantic.hits(memory, query, hits, before)], hits)
    found: dict[int, tuple[str, Turn]] = {}
    async with memory.reading():
        for hit in ranked:
            turn = await memory.turn_at(hit.position)
            if turn is not None and turn.start not in found:
                found[turn.start] = (hit.stored_at, turn)
    return list(found.values())


async def matching(memory: Memory, query: str, most: int, semantic: Semantic | None = None) -> list[tuple[str, Turn]]:
    """At most ``most`` exchanges that match ``query``, best first, each with the minute it was stored."""
    found = await exchanges(memory, query, most * 2, semantic=semantic)
    return [(stored_at[:16], turn) for stored_at, turn in found[:most]]


def exchange_tokens(estimator: TokenEstimator, day: str, turn: Turn) -> int:
    """What one recalled exchange adds to a request: its items, its date line, and the line breaks."""
    return estimator.item_tokens(turn.items) + estimator.tokens(day) + 2


async def recall(
    memory: Memory,
    text: str,
    share: int,
    estimator: TokenEstimator,
    older_than: int,
    before: int | None = None,
    semantic: Semantic | None = None,
) -> Recalled:
    """The best-matching whole exchanges stored before position ``older_than``, within ``share`` tokens."""
    chosen: dict[int, tuple[str, Turn]] = {}
    used = 0
    limit = min(older_than, before) if before else older_than
    for stored_at, turn in await exchanges(memory, text, RECALL_HITS, before=limit, semantic=semantic):
        day = stored_at[:10]
        cost = exchange_tokens(estimator, day, turn)
        if turn.end >= older_than or used + cost > share:
            continue
        chosen[turn.start] = (day, turn)
        used += cost
    return Recalled(tuple(chosen[start] for start in sorted(chosen)), used)
