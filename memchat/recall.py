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

from .budget import TokenEstimator
from .items import describe
from .memory import Memory, Turn

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


async def matching(memory: Memory, query: str, most: int) -> list[tuple[str, Turn]]:
    """The whole exchanges whose messages match ``query``, best first, each with when it was stored."""
    exchanges: dict[int, tuple[str, Turn]] = {}
    for hit in await memory.search(query, most * 2):
        turn = await memory.turn_at(hit.position)
        if turn is not None and turn.start not in exchanges:
            exchanges[turn.start] = (hit.stored_at[:16], turn)
    return list(exchanges.values())[:most]


async def recall(
    memory: Memory, text: str, share: int, estimator: TokenEstimator, older_than: int, before: int | None = None
) -> Recalled:
    """The best-matching whole exchanges stored before position ``older_than``, within ``share`` tokens."""
    hits = await memory.search(text, RECALL_HITS, before=min(older_than, before) if before else older_than)
    chosen: dict[int, tuple[str, Turn]] = {}
    used = 0
    for hit in hits:
        turn = await memory.turn_at(hit.position)
        if turn is None or turn.start in chosen or turn.end >= older_than:
            continue
        cost = estimator.item_tokens(turn.items) + estimator.tokens(hit.stored_at[:10]) + 2
        if used + cost > share:
            continue
        chosen[turn.start] = (hit.stored_at[:10], turn)
        used += cost
    return Recalled(tuple(chosen[start] for start in sorted(chosen)), used)
