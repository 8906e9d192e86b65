"""Finding what was said: the words of a message or a question, as every store's index sees them.

Each store keeps a full-text index of every stored message beside the SDK's
tables (SQLite FTS5, PostgreSQL's tsvector). What goes into it, and what a
query asks for, is decided here once: the words of the message, or, when the
memory is encrypted, a keyed hash of each normalised word, so that the index
holds no word of the conversation in plain text (see ``codec.Codec.index_words``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from memchat.items import Item, describe
from memchat.stores.codec import Codec

WORD = re.compile(r"\w+")

# Words that say nothing about what was said: left out of queries, so "what is my sister's name"
# looks for "sister" and "name", not every message with "is" in it.
_STOPWORDS = """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your yours yourself yourselves
    tell told know remember say said please
"""
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Hit:
    """One stored message that matched, with its position, when it was stored, and its rank (lower is better)."""

    position: int
    stored_at: str
    rank: float


def scaled(hits: list[Hit]) -> dict[int, float]:
    """Each hit's score scaled to 1 for the best of ``hits`` and 0 for the worst (1 for every hit when they tie)."""
    if not hits:
        return {}
    best, worst = min(hit.rank for hit in hits), max(hit.rank for hit in hits)
    return {hit.position: (worst - hit.rank) / (worst - best) if worst > best else 1.0 for hit in hits}


def fuse(rankings: list[list[Hit]], limit: int, weights: tuple[float, ...] = ()) -> list[Hit]:
    """Several rankings of hits as one, best first, by the weighted sum of each hit's ``scaled`` scores.

    A full-text score and a cosine cannot be compared, but within one ranking each says
    how far a hit stands between the best and the worst of that ranking; ``weights``
    (1 each by default) say how far each ranking is trusted. A message near the top of
    either list comes early, one high in both first. Scaled scores keep what ranks alone
    lose, how far ahead the best hits are: on LoCoMo, reciprocal rank fusion put every
    evidence turn among its first 120 for 307 of 383 questions, this 323.
    """
    scores: dict[int, float] = {}
    hits: dict[int, Hit] = {}
    for number, ranking in enumerate(rankings):
        weight = weights[number] if number < len(weights) else 1.0
        for position, score in scaled(ranking).items():
            scores[position] = scores.get(position, 0.0) + weight * score
        for hit in ranking:
            if hit.position not in hits or not hits[hit.position].stored_at:
                hits[hit.position] = hit
    chosen = sorted(scores, key=lambda position: (-scores[position], -position))[:limit]
    return [Hit(position, hits[position].stored_at, -scores[position]) for position in chosen]


def words(text: str) -> list[str]:
    """The words of ``text``, case and accents folded (``Émile`` and ``emile`` are one word)."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in folded if not unicodedata.combining(char))
    return WORD.findall(plain)


def query_words(text: str, most: int = 24) -> list[str]:
    """The words worth looking for in ``text``: no stopwords, no repeats, at most ``most``."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            seen.setdefault(word, None)
    return list(seen)[:most]


def item_words(item: Item) -> str:
    """The text of a stored item that the index keeps: what a person would search it by."""
    # A NUL cannot be in PostgreSQL text, and says nothing.
    return describe(item)[1].replace("\x00", " ")


def index_body(codec: Codec, item: Item) -> str:
    """What the index keeps of ``item``: its words, case and accents folded, or, encrypted, their hashes."""
    return " ".join(codec.index_words(words(item_words(item))))


def index_query(codec: Codec, text: str) -> list[str]:
    """The terms to look up for ``text`` (hashed as the index keeps them when encrypted)."""
    return codec.index_words(query_words(text))


def fts_match(terms: list[str]) -> str:
    """An FTS5 query for any of ``terms`` (each quoted: a term is never read as query syntax)."""
    return " OR ".join('"' + term.replace('"', "") + '"' for term in terms)
