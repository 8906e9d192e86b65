"""Semantic search: messages found by what they mean, through the model server's embeddings.

With ``MEMCHAT_EMBEDDING_MODEL`` set, every message is embedded through the same
server's ``/v1/embeddings`` and its vector kept beside it in the store. A query
is embedded the same way and compared with all of the user's vectors (cosine,
exact, with numpy); recall and ``/search`` rank those hits together with the
full-text ones (see ``search.fuse``).

Embedding never holds a turn up: the query gets a short timeout, and messages
are embedded after their turn, in the background, a batch at a time. What failed
or was cut short (a slow server, a closed program, an older file) is filled in
on a later turn, since the store knows which messages have no vector yet.

Many servers embed one request at a time, so a query sent while a batch is being
embedded would wait for it inside its own timeout: a query first waits for the
batch under way (that wait is not counted), and no new batch is sent while a
query waits.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from config import Settings
from memchat.errors import MemchatError
from memchat.stores.protocol import Memory, VectorMemory
from memchat.stores.search import Hit, item_words
from memchat.stores.vector_index import by_cosine

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from openai import AsyncOpenAI

    from memchat.stores.protocol import Vectors

# Messages embedded per request when filling in, and the most characters of one sent (embedding
# models take a few thousand tokens; what a message is about is in its first pages).
EMBED_BATCH = 64
MAX_CHARS = 4000
# Past this many messages with no vector, a turn says that memchat index embeds them at once.
MANY_MISSING = 1000
# Where a store cannot search its vectors (Redis, PostgreSQL without pgvector), the newest this many
# of a user's are held in memory and searched: 120 MB of 1,536-number vectors, 30 MB of 384-number ones.
HELD_MOST = 20_000
# How far a search by meaning steered toward a message (``Semantic.hits``) leans to it, against the
# query: on LoCoMo with all-MiniLM-L6-v2, 1 gained at 2,000 tokens and lost at 8,000; a half, both.
TOWARD_WEIGHT = 0.5
# How far a message's vector leans to the message before it (see ``in_context``): on LoCoMo, 0.7 and
# 1 found the same at 8,000 tokens (93.0%), 0.7 a little more at 2,000 (80.4% against 79.9%).
CONTEXT_WEIGHT = 0.7


class MemoryWithVectors(Memory, VectorMemory, Protocol):
    """A user's memory in a store that keeps vectors."""


class Semantic:
    """One embedding model of the configured server, shared by every conversation of a process."""

    def __init__(self, settings: Settings) -> None:
        assert settings.embedding_model is not None
        from memchat.model.client import build_client

        self.model = settings.embedding_model
        self.server = settings.base_url or "the server"
        self._client: AsyncOpenAI = build_client(settings)
        self._query_timeout = settings.embedding_timeout
        self._failure: str | None = None
        self._notices: list[str] = []
        # Notes on stores that cannot search vectors in place, each said once a process.
        self._told: set[str] = set()
        self._filling: dict[str, asyncio.Task[int]] = {}
        # Set while no query waits: the background fill sends a batch only then.
        self._no_query = asyncio.Event()
        self._no_query.set()
        self._queries = 0
        # Held by the fill while a batch is at the server; a query waits for it before being sent.
        self._batch = asyncio.Lock()
        # Each memory's vectors, kept between searches (they go with the memory object).
        self._held: weakref.WeakKeyDictionary[VectorMemory, HeldVectors] = weakref.WeakKeyDictionary()

    async def hits(
        self, memory: Memory, query: str, limit: int, before: int | None = None, toward: Said | None = None
    ) -> list[Hit]:
        """The ``limit`` stored messages nearest in meaning to ``query``; none if it cannot be embedded in time.

        With ``toward`` (a message found by other means), nearest to the two together: the query and
        that message (with the one before it) are embedded in one request and their vectors added,
        the message's as it is stored, at ``TOWARD_WEIGHT`` (see ``recall.ranked``).
        """
        if not isinstance(memory, VectorMemory):
            return []
        self._queries += 1
        self._no_query.clear()
        prepared = asyncio.ensure_future(memory.prepare_search(self.model))
        # Its failure, if the question is not searched after all, is the next search's to meet.
        prepared.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            # The batch under way, if any, is waited for first, with a timeout of its own.
            async with asyncio.timeout(self._query_timeout):
                async with self._batch:
                    pass
            async with asyncio.timeout(self._query_timeout):
                texts = [query, *(text for text in toward if text)] if toward and toward[0] else [query]
                vector, *beside = await self._embed(texts, quick=True)
            if beside:
                vector = added(vector, in_context(*beside), TOWARD_WEIGHT)
        except TimeoutError:
            self._failed(f"no answer within {self._query_timeout:g} s (MEMCHAT_EMBEDDING_TIMEOUT)")
            return []
        except EmbeddingError as exc:
            self._failed(str(exc))
            return []
        finally:
            self._queries -= 1
            if not self._queries:
                self._no_query.set()
        await prepared
        found = await memory.nearest(self.model, vector, limit, before)
        note = memory.vector_search_note
        if note is not None and note not in self._told:
            self._told.add(note)
            self._notices.append(note)
        if found is not None:
            return found
        return (await self._held_for(memory)).nearest(vector, limit, before)

    async def _held_for(self, memory: VectorMemory) -> HeldVectors:
        """This user's vectors, as held since the last search, with what was written since added."""
        held = self._held.get(memory)
        if held is None:
            held = self._held[memory] = HeldVectors()
            new = await memory.vectors(self.model, most=HELD_MOST)
        else:
            new = await memory.vectors(self.model, held.mark)
            if held.total + len(new.rows) != new.total:
                # Some were deleted or replaced meanwhile: read them all again.
                held = self._held[memory] = HeldVectors()
                new = await memory.vectors(self.model, most=HELD_MOST)
        held.add(new)
        return held

    def fill(self, memory: Memory) -> asyncio.Task[int]:
        """Embed, in the background, this user's messages that have no vector yet (one task per user at a time)."""
        task = self._filling.get(memory.session_id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._fill(memory))
            self._filling[memory.session_id] = task
        return task

    async def embed_all(
        self, memory: Memory, progress: Callable[[int, int], None] | None = None, *, again: bool = False
    ) -> int:
        """Embed every message of this user that has no vector yet, a batch at a time (``memchat index``).

        Stopped and run again, it goes on where it stopped: the store knows what has no vector.
        With ``again``, every message is embedded anew first, oldest first, its vector replaced (one
        made by an older memchat, before vectors leaned to the message before them); stopped, that
        starts over. ``progress(done, total)`` follows it. Returns how many messages it embedded.
        """
        if not isinstance(memory, VectorMemory):
            raise MemchatError("this store keeps no vectors: search by meaning needs SQLite, PostgreSQL or Redis")
        again_done = await self._embed_again(memory, progress) if again else 0
        missing = await memory.unembedded(self.model, 2**31 - 1)
        done = 0
        try:
            for start in range(0, len(missing), EMBED_BATCH):
                done += await self._embed_and_save(memory, missing[start : start + EMBED_BATCH])
                if progress is not None:
                    progress(done, len(missing))
        except EmbeddingError as exc:
            raise self._stopped(exc, done, len(missing), "then run it again to go on from there") from None
        # Nothing left is what lets the next run's start look only at what comes after (SQLite's mark).
        await memory.unembedded(self.model, 1)
        await memory.index_vectors(self.model, progress)
        return again_done + done

    async def _fill(self, memory: Memory) -> int:
        if not isinstance(memory, VectorMemory):
            return 0
        done = 0
        try:
            # Before anything is embedded: the first search then finds its graph open (see SQLite's).
            await memory.prepare_search(self.model)
            # Each look for what has no vector reads the whole history when little is missing (100 ms at
            # 100,000 messages): a look that finds fewer than it asked for found all there was.
            while missing := await memory.unembedded(self.model, MANY_MISSING):
                if not done and len(missing) == MANY_MISSING:
                    self._notices.append(
                        f"{memory.session_id} has more than {MANY_MISSING:,} messages with no vector yet: they are "
                        "embedded in the background as memchat runs, or all at once by memchat index"
                    )
                for start in range(0, len(missing), EMBED_BATCH):
                    done += await self._embed_and_save(memory, missing[start : start + EMBED_BATCH])
                if len(missing) < MANY_MISSING:
                    break
        except (EmbeddingError, MemchatError) as exc:
            self._failed(str(exc))
        return done

    async def _embed_again(self, memory: MemoryWithVectors, progress: Callable[[int, int], None] | None) -> int:
        """Embed every message anew, oldest first, replacing its vector; how many messages."""
        from memchat.stores.base import END

        total = await memory.count()
        done = 0
        batch: list[tuple[int, str]] = []
        # Read once, in order: the text before each message is the one read just before it.
        before: dict[int, str] = {}
        last = ""

        async def send(part: list[tuple[int, str]]) -> None:
            nonlocal done
            done += await self._embed_and_save(memory, part, {at: before.pop(at) for at, _ in part})
            if progress is not None:
                progress(done, max(total, done))

        try:
            async for turn in memory.turns_forward(0, END):
                for at, item in zip(turn.positions, turn.items, strict=True):
                    text = item_words(item).strip()
                    batch.append((at, text))
                    before[at], last = last, text
                while len(batch) >= EMBED_BATCH:
                    await send(batch[:EMBED_BATCH])
                    batch = batch[EMBED_BATCH:]
            if batch:
                await send(batch)
        except EmbeddingError as exc:
            raise self._stopped(exc, done, total, "then run it again (it starts over)") from None
        return done

    def _stopped(self, exc: EmbeddingError, done: int, total: int, then: str) -> MemchatError:
        return MemchatError(
            f"embedding model {self.model!r} of {self.server} failed ({exc}) after {done:,} of {total:,} "
            f"messages: check MEMCHAT_EMBEDDING_MODEL and the server, {then}"
        )

    async def _embed_and_save(
        self, memory: MemoryWithVectors, batch: list[tuple[int, str]], previous: dict[int, str] | None = None
    ) -> int:
        """Embed one batch of (position, text) and keep the vectors; how many messages it covered.

        ``previous`` is the text before each message, where the caller read it already; else it is read.
        Sent only while no question waits, and never beside another batch (see ``hits``).
        """
        if previous is None:
            said = await said_at(memory, [at for at, text in batch if text])
            previous = {at: before for at, (_, before) in said.items()}
        # The message before each is mostly in the batch too: one text more a batch, not twice as many.
        texts = list(dict.fromkeys(each for at, text in batch if text for each in (text, previous.get(at)) if each))
        await self._no_query.wait()
        async with self._batch:
            made = dict(zip(texts, await self._embed(texts, quick=False) if texts else [], strict=True))
        # A message with no text gets an empty vector: it is done, and never matches. Its own vector is of
        # the text the store gave with the batch, the one ``save_vectors`` keeps it beside.
        vectors = [
            (at, text, in_context(made[text], made.get(previous.get(at, ""), b"")) if text else b"")
            for at, text in batch
        ]
        await memory.save_vectors(self.model, vectors)
        return len(batch)

    async def _embed(self, texts: list[str], *, quick: bool) -> list[bytes]:
        import openai

        client = self._client.with_options(max_retries=0) if quick else self._client
        try:
            raw = await client.embeddings.with_raw_response.create(
                model=self.model, input=[text[:MAX_CHARS] for text in texts], encoding_format="float"
            )
            # Read as plain JSON: the client's typed parse of a vector's numbers took longer than the search.
            data = json.loads(raw.http_response.content)["data"]
            vectors = [normalized(item["embedding"]) for item in sorted(data, key=lambda item: item["index"])]
        except openai.APIStatusError as exc:
            raise EmbeddingError(f"the server answered {exc.status_code}: {_short(exc.message)}") from None
        except openai.OpenAIError as exc:
            raise EmbeddingError(_short(str(exc)) or type(exc).__name__) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise EmbeddingError(f"the answer is not a list of embeddings ({_short(str(exc))})") from None
        if len(vectors) != len(texts):
            raise EmbeddingError(f"the server returned {len(vectors)} embeddings for {len(texts)} texts")
        if self._failure is not None:
            self._failure = None
            self._notices.append(f"embeddings from {self.server} work again: recall searches by meaning too")
        return vectors

    def _failed(self, reason: str) -> None:
        if self._failure is None:
            self._notices.append(
                f"embedding model {self.model!r} of {self.server} failed ({reason}): recall goes by words "
                "alone until it works; messages are embedded later"
            )
        self._failure = reason

    def notices(self) -> tuple[str, ...]:
        """What the person should be told since last asked (embeddings failing, or working again)."""
        taken, self._notices = tuple(self._notices), []
        return taken

    async def aclose(self) -> None:
        """Stop embedding, after giving what is under way the same short wait a turn gives a query."""
        pending = [task for task in self._filling.values() if not task.done()]
        if pending:
            # A one-shot run would otherwise never keep the vectors of its own turn.
            await asyncio.wait(pending, timeout=self._query_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.close()


# A message's text and the text of the message before it ("" for the first).
Said = tuple[str, str]


async def said_at(memory: Memory, positions: Sequence[int]) -> dict[int, Said]:
    """The text of each message at ``positions``, with the text of the message before it (gone ones left out)."""
    async with memory.reading():
        stored = await memory.around(positions)
    said: dict[int, Said] = {}
    previous = ""
    for position, _, item in stored:
        text = item_words(item).strip()
        said[position] = (text, previous)
        previous = text
    return {position: said[position] for position in positions if position in said}


def in_context(own: bytes, previous: bytes = b"") -> bytes:
    """A message's vector as stored: its own, plus the message's before it at ``CONTEXT_WEIGHT``.

    A reply means what it answers too: "I'm off to do some taekwondo!" is about martial arts
    beside the question it answers. On LoCoMo with all-MiniLM-L6-v2, 80.4% at 2,000 tokens and
    93.0% at 8,000 this way, 78.9% and 92.7% each message alone. Embedding the two texts as one
    found less (79.6%, 92.7%), cost twice the tokens, and a short reply ("ok") became a copy of
    what it followed; a model that reads only its first 256 tokens would miss a reply after a
    long message.
    """
    return added(own, previous, CONTEXT_WEIGHT) if previous else own


class EmbeddingError(Exception):
    """The server did not give the embeddings asked for."""


def added(first: bytes, second: bytes, weight: float) -> bytes:
    """``first`` plus ``weight`` times ``second`` (two stored vectors), scaled to length 1: what lies between them."""
    import numpy as np

    return normalized(np.frombuffer(first, dtype=np.float32) + weight * np.frombuffer(second, dtype=np.float32))


def normalized(embedding: Sequence[float] | NDArray[np.float32]) -> bytes:
    """A vector as stored: float32, scaled to length 1, so that comparing two is one dot product."""
    import numpy as np

    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or not vector.size:
        raise ValueError("an embedding must be a non-empty list of numbers")
    length = float(np.linalg.norm(vector))
    return (vector / length if length else vector).tobytes()


class HeldVectors:
    """One user's vectors from one model, in one matrix, kept in memory between searches.

    Reading 10,000 vectors from a store takes longer than comparing them: held, a search
    reads only what was written since the last one (see ``Memory.vectors``).
    """

    def __init__(self) -> None:
        import numpy as np

        self.mark = 0
        self.total = 0
        self.positions = np.zeros(0, dtype=np.int64)
        self.days: list[str] = []
        self.matrix: Any = None

    def add(self, new: Vectors) -> None:
        import numpy as np

        size = None if self.matrix is None else self.matrix.shape[1] * 4
        # Empty vectors (messages with no text) never match; one of another size is from another server.
        rows = [row for row in new.rows if row[2] and len(row[2]) == (size or len(row[2]))]
        rows = [row for row in rows if len(row[2]) == len(rows[0][2])]
        if rows:
            block = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(len(rows), -1)
            self.matrix = block if self.matrix is None else np.vstack([self.matrix, block])
            self.positions = np.concatenate([self.positions, np.array([row[0] for row in rows], dtype=np.int64)])
            self.days += [row[1] for row in rows]
        if len(self.positions) > HELD_MOST:
            # The newest messages are kept: what was said long ago is still found by its words.
            keep = np.argsort(self.positions, kind="stable")[-HELD_MOST:]
            keep.sort()
            self.matrix, self.positions = self.matrix[keep], self.positions[keep]
            self.days = [self.days[index] for index in keep.tolist()]
        self.mark = max(self.mark, new.mark)
        self.total = new.total

    def nearest(self, query: bytes, limit: int, before: int | None = None) -> list[Hit]:
        """The ``limit`` vectors most like ``query`` (cosine), best first, of messages before ``before``."""
        return by_cosine(self.matrix, self.positions, self.days, query, limit, before)


def _short(text: str) -> str:
    return " ".join(text.split())[:200]
