"""A graph of one user's vector bits in a file beside the SQLite database: a long history searched without reading it all.

Scanning every vector's bits (``vector_index``) reads 192 MB at a million 1,536-number vectors,
200 ms and more. A graph (HNSW, by usearch) finds the closest bits by walking a few thousand of
them. It is mapped from its file, not read into the process: the pages a search walks are the
system's file cache, shared by every process on the machine.

The graph is a copy; the database stays the record. It covers a user's vectors up to one write
number; those written after it are scanned as before, until there are ``TAIL_MOST`` of them and
``memchat index`` extends it. Vectors deleted since (/forget, /undo) stay in the graph and are
dropped when the candidates are read back from the database. A graph file gone missing or
unreadable costs a scan of everything, until ``memchat index`` makes it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# A graph is made once this many of a user's vectors are outside one: below it, scanning their bits
# takes at most about 10 ms.
TAIL_MOST = 50_000
# Closest bits taken from the graph (and how widely it looks: HNSW's "ef"); the best of them, with
# the scanned ones, are ranked exactly.
CANDIDATES = 1000
# The graph's shape (HNSW's "M" and "efConstruction"): on the benchmark's million 1,536-number
# vectors, recall of the true nearest 10 was 91% with 16 and 64, 96% with 32 and 128.
CONNECTIVITY = 32
EXPANSION_ADD = 128


def folder(database: Path) -> Path:
    """Where the graphs of a database file live: beside it, as its -wal and -shm files do."""
    return database.with_name(database.name + "-graphs")


def file_name(user: str, model: str, size: int, through: int) -> str:
    """A new graph's file: named by a digest, so no user id is in a file name, what it covers, and a token.

    The token keeps two processes extending one graph at once from writing one file.
    """
    digest = hashlib.sha256(f"{user}\0{model}\0{size}".encode()).hexdigest()[:24]
    return f"{digest}-{through}-{secrets.token_hex(4)}.usearch"


class Graphs:
    """The graphs of one database, each opened (mapped) once a process and kept open."""

    def __init__(self, database: Path) -> None:
        self.folder = folder(database)
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def readable(self, name: str) -> bool:
        return self._opened(name) is not None

    def closest(self, name: str, bits: Any, wanted: int = CANDIDATES) -> tuple[Any, Any] | None:
        """(write numbers, Hamming distances) of the ``wanted`` entries of graph ``name`` closest to ``bits``.

        None if the graph cannot be read (its file deleted or damaged): the caller scans instead.
        """
        import numpy as np

        graph = self._opened(name)
        if graph is None:
            return None
        found = graph.search(bits, min(wanted, len(graph)))
        return np.asarray(found.keys, dtype=np.int64), np.asarray(found.distances, dtype=np.int64)

    def size(self, name: str) -> int:
        """How many entries graph ``name`` holds, deleted ones too; 0 if it cannot be read."""
        graph = self._opened(name)
        return 0 if graph is None else len(graph)

    def _opened(self, name: str) -> Any:
        # Opened under the lock: a search that comes while the run's start is opening a graph waits for
        # that opening rather than walking the file a second time.
        with self._lock:
            if name not in self._open:
                from usearch.index import Index

                try:
                    self._open[name] = Index.restore(str(self.folder / name), view=True, expansion_search=CANDIDATES)
                except (OSError, RuntimeError, ValueError):
                    self._open[name] = None
            return self._open[name]

    def extended(
        self,
        name: str | None,
        chunks: Iterable[tuple[Any, Any]],
        new_name: str,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write graph ``new_name``: graph ``name`` (or none) with the (write numbers, bits) of ``chunks`` added.

        ``progress(added)`` follows it (a million entries take minutes on two cores).
        How many entries were added. The old graph is read whole to be extended (about 470 MB at a
        million entries), then written under a new name, so a process searching the old one goes on.
        """
        from usearch.compiled import MetricKind, ScalarKind
        from usearch.index import Index

        graph = None
        if name is not None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                graph = Index.restore(str(self.folder / name))
        added = 0
        for keys, bits in chunks:
            if graph is None:
                graph = Index(
                    ndim=bits.shape[1] * 8,
                    metric=MetricKind.Hamming,
                    dtype=ScalarKind.B1,
                    connectivity=CONNECTIVITY,
                    expansion_add=EXPANSION_ADD,
                )
            if len(keys):
                graph.add(keys, bits, threads=os.cpu_count() or 1)
                added += len(keys)
                if progress is not None:
                    progress(added)
        if graph is None:
            return 0
        # Readable by its owner only, as the database is: bits say something of what was said.
        self.folder.mkdir(mode=0o700, exist_ok=True)
        handle, part = tempfile.mkstemp(dir=self.folder, suffix=".part")
        os.close(handle)
        try:
            graph.save(part)
            os.replace(part, self.folder / new_name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
        return added

    def remove(self, name: str) -> None:
        """Delete graph ``name``'s file; a process still searching it keeps its mapping until it closes."""
        with self._lock:
            self._open.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / name).unlink()
